"""Response length, finish reason and text of random and echo modes (spec §2.5)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from pyllmd.core.tokenize import SimpleTokenizer
from pyllmd.sim.engine.textgen import (
    SENTENCES,
    RandomText,
    completion_length,
    echo_tokens,
    histogram_length,
    randbelow,
)

TOK = SimpleTokenizer()


def test_sentence_pool_shape() -> None:
    assert len(SENTENCES) == 11
    assert all(8 <= len(s.split()) <= 30 for s in SENTENCES)
    assert any("<" in s and ">" in s and "&" in s for s in SENTENCES)
    assert len(set(SENTENCES)) == 11


@pytest.mark.parametrize("max_tokens", [1, 2, 6, 7, 10, 50, 101, 102, 200, 4096])
def test_histogram_length_within_one_and_max(max_tokens: int) -> None:
    rng = random.Random(1)
    lengths = [histogram_length(rng, max_tokens) for _ in range(2000)]
    assert min(lengths) >= 1
    assert max(lengths) == max_tokens


def test_histogram_length_of_zero_or_one_is_itself() -> None:
    rng = random.Random(0)
    assert histogram_length(rng, 1) == 1
    assert histogram_length(rng, 0) == 0


def test_sim_acc_16_max_tokens_one_is_length() -> None:
    assert completion_length(random.Random(3), 1, False, 1024, 5) == (1, "length")


def test_sim_acc_17_ignore_eos_gives_exactly_max_tokens() -> None:
    rng = random.Random(4)
    assert all(completion_length(rng, 37, True, 1024, 5) == (37, "length") for _ in range(50))


def test_sim_acc_18_histogram_shares_for_200() -> None:
    rng = random.Random(42)
    n = 20000
    results = [completion_length(rng, 200, False, 1024, 5) for _ in range(n)]
    lengths = Counter(length for length, _ in results)
    share = {
        "1-60": sum(c for v, c in lengths.items() if 1 <= v <= 60) / n,
        "61-180": sum(c for v, c in lengths.items() if 61 <= v <= 180) / n,
        "181-199": sum(c for v, c in lengths.items() if 181 <= v <= 199) / n,
        "200": lengths[200] / n,
    }
    assert set(lengths) <= set(range(1, 201))
    assert share["1-60"] == pytest.approx(0.70, abs=0.02)
    assert share["61-180"] == pytest.approx(0.05, abs=0.01)
    assert share["181-199"] == pytest.approx(0.10, abs=0.015)
    assert share["200"] == pytest.approx(0.15, abs=0.015)
    assert all((reason == "length") == (length == 200) for length, reason in results)


def test_histogram_small_max_uses_five_equal_buckets() -> None:
    rng = random.Random(5)
    # M = 11: bucket width 2 -> [1,2],[3,4],[5,6],[7,8],[9,10]; 11 only via the last branch.
    lengths = Counter(histogram_length(rng, 11) for _ in range(20000))
    assert set(lengths) == set(range(1, 12))
    assert lengths[11] / 20000 == pytest.approx(0.15, abs=0.015)
    assert (lengths[7] + lengths[8]) / 20000 == pytest.approx(0.05, abs=0.01)


def test_sim_acc_19_no_max_tokens_mean_about_40() -> None:
    rng = random.Random(7)
    lengths = [completion_length(rng, None, False, 1024, 10)[0] for _ in range(5000)]
    assert min(lengths) >= 1
    assert sum(lengths) / len(lengths) == pytest.approx(40, abs=3)


def test_no_max_tokens_respects_context_room_and_reports_length_at_limit() -> None:
    rng = random.Random(8)
    results = [completion_length(rng, None, False, 30, 10) for _ in range(2000)]
    assert all(1 <= length <= 20 for length, _ in results)
    assert all((reason == "length") == (length == 20) for length, reason in results)


def test_no_room_left_returns_zero_length_instead_of_looping() -> None:
    rng = random.Random(9)
    assert completion_length(rng, None, False, 10, 10) == (0, "length")
    assert completion_length(rng, None, False, 10, 50) == (0, "length")


def test_room_of_one_token_terminates() -> None:
    assert completion_length(random.Random(10), None, False, 11, 10) == (1, "length")


@pytest.mark.parametrize("n", [0, 1, 5, 20, 150, 1000])
def test_random_text_has_exactly_n_tokens(n: int) -> None:
    gen = RandomText(TOK)
    tokens = gen.tokens(random.Random(n), n)
    assert len(tokens) == n
    # The text re-tokenizes to the same count, so usage matches what a client counts.
    assert TOK.count("".join(tokens)) == n


def test_random_text_is_made_of_pool_sentences() -> None:
    text = "".join(RandomText(TOK).tokens(random.Random(11), 300))
    assert text.split(" ")[0] in {s.split(" ")[0] for s in SENTENCES}
    assert any(s in text for s in SENTENCES)


def test_random_text_is_deterministic_for_a_seed() -> None:
    gen = RandomText(TOK)
    assert gen.tokens(random.Random(12), 80) == gen.tokens(random.Random(12), 80)


def test_sim_acc_13_echo_stop() -> None:
    _, strs = TOK.encode("Hello, world!")
    tokens, finish = echo_tokens(strs, None)
    assert "".join(tokens) == "Hello, world!"
    assert finish == "stop"
    assert echo_tokens(strs, 5) == (strs, "stop")


def test_sim_acc_14_echo_length_without_truncation() -> None:
    _, strs = TOK.encode("Hello, world!")
    tokens, finish = echo_tokens(strs, 2)
    assert "".join(tokens) == "Hello, world!"
    assert finish == "length"
    assert echo_tokens(strs, 4) == (strs, "length")


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 11, 60, 100, 1023, 1024, 2**31 + 5])
def test_randbelow_draws_the_same_stream_as_randrange(n: int) -> None:
    """Seeded runs keep their texts: the shortcut is randrange's own algorithm."""
    ours, stdlib = random.Random(n), random.Random(n)
    assert [randbelow(ours, n) for _ in range(500)] == [stdlib.randrange(n) for _ in range(500)]
    assert ours.random() == stdlib.random()
