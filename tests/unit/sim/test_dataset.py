"""Dataset keys and the §10.2 selection rules, as pure functions with a seeded random."""

from __future__ import annotations

import hashlib
import random
import struct

import pytest

from pyllmd.sim.dataset.lookup import (
    DatasetError,
    content_text,
    decode_gen_tokens,
    fit,
    pick_fallback,
    pick_match,
    prompt_key,
    render_chat,
)


def picks(fn: object, *args: object, n: int = 200) -> set[int]:
    """Every result of `fn(rng, *args)` over many seeds."""
    assert callable(fn)
    return {fn(random.Random(seed), *args) for seed in range(n)}


def test_prompt_key_is_sha256_of_little_endian_uint32_ids() -> None:
    ids = [1, 0xFFFFFFFF, 256]
    raw = b"\x01\x00\x00\x00" + b"\xff\xff\xff\xff" + b"\x00\x01\x00\x00"
    assert prompt_key(ids) == hashlib.sha256(raw).digest()
    assert prompt_key([]) == hashlib.sha256(b"").digest()
    assert prompt_key(iter(ids)) == hashlib.sha256(struct.pack("<3I", *ids)).digest()


def test_render_chat_is_the_tools_template() -> None:
    turns = [("user", "q1"), ("assistant", "a1"), ("user", "q2")]
    assert render_chat(turns) == "### user:\nq1\n### assistant:\na1\n### user:\nq2\n"


def test_content_text_joins_text_blocks_and_skips_images() -> None:
    blocks = [
        {"type": "text", "text": "a"},
        {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "b"},
    ]
    assert content_text(blocks) == "a\nb"
    assert content_text("plain") == "plain"
    assert content_text(None) == ""


# ------------------------------------------------------------ matched rows


def test_match_without_ignore_eos_prefers_rows_that_fit() -> None:
    lengths = [3, 9, 5, 12]
    assert picks(pick_match, lengths, 5, False) == {0, 2}


def test_match_without_ignore_eos_takes_a_longer_row_when_none_fits() -> None:
    assert picks(pick_match, [9, 12], 5, False) == {0, 1}


def test_match_with_ignore_eos_prefers_exact_length() -> None:
    assert picks(pick_match, [3, 5, 9, 5], 5, True) == {1, 3}


def test_match_with_ignore_eos_then_longer_then_shorter() -> None:
    assert picks(pick_match, [3, 9, 12], 5, True) == {1, 2}
    assert picks(pick_match, [3, 4], 5, True) == {0, 1}


# ------------------------------------------------------------ no match


def test_fallback_takes_a_row_of_at_most_the_limit() -> None:
    sorted_lengths = [1, 2, 5, 7, 9]
    assert picks(pick_fallback, sorted_lengths, 5, False) == {0, 1, 2}


def test_fallback_with_ignore_eos_takes_exact_length_rows() -> None:
    assert picks(pick_fallback, [1, 5, 5, 9], 5, True) == {1, 2}


def test_fallback_takes_any_row_when_none_qualifies() -> None:
    assert picks(pick_fallback, [7, 9], 5, False) == {0, 1}
    assert picks(pick_fallback, [1, 9], 5, True) == {0, 1}


def test_fallback_on_an_empty_dataset_is_none() -> None:
    assert pick_fallback(random.Random(0), [], 5, False) is None


# ------------------------------------------------------------ fitting


def pad(n: int) -> list[str]:
    return ["p"] * n


def test_fit_cuts_long_rows_and_reports_length() -> None:
    assert fit(list("abcdef"), 3, False, pad) == (["a", "b", "c"], "length")


def test_fit_keeps_short_rows_with_stop() -> None:
    assert fit(list("ab"), 3, False, pad) == (["a", "b"], "stop")


def test_fit_exact_length_is_length() -> None:
    assert fit(list("abc"), 3, False, pad) == (["a", "b", "c"], "length")


def test_fit_pads_with_ignore_eos() -> None:
    assert fit(list("ab"), 4, True, pad) == (["a", "b", "p", "p"], "length")


def test_fit_to_zero_room_is_empty_length() -> None:
    assert fit(list("ab"), 0, False, pad) == ([], "length")


# ------------------------------------------------------------ stored tokens


def test_gen_tokens_decode_accepts_any_key_case() -> None:
    assert decode_gen_tokens('{"Tokens":[1,2],"Strings":["a","b"]}') == ["a", "b"]
    assert decode_gen_tokens('{"tokens":[1,2],"strings":["a","b"]}') == ["a", "b"]


def test_gen_tokens_length_follows_ids_then_strings() -> None:
    assert decode_gen_tokens('{"Tokens":[1,2,3],"Strings":["a"]}') == ["a", "", ""]
    assert decode_gen_tokens('{"Strings":["a","b"]}') == ["a", "b"]
    assert decode_gen_tokens('{"Tokens":[1],"Strings":["a","b"]}') == ["a"]


@pytest.mark.parametrize(
    "raw",
    ['{"Tokens": [1]', "[1, 2]", '{"Strings": "ab"}', '{"Strings": [1]}'],
)
def test_bad_gen_tokens_raise_dataset_error(raw: str) -> None:
    with pytest.raises(DatasetError):
        decode_gen_tokens(raw)
