"""Shared tokenizers: the simple one matches the simulator's; local Hugging Face files are found
and run offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from pyllmd.core.errors import ConfigError
from pyllmd.core.tokenize import (
    HFTokenizer,
    SimpleTokenizer,
    discover_tokenizers,
    find_tokenizer_file,
    fnv1a_32,
    hub_model_name,
    load_tokenizer,
)

TOK = SimpleTokenizer()


def test_hello_world_is_four_tokens_with_trailing_whitespace() -> None:
    ids, strs = TOK.encode("Hello, world!")
    assert strs == ["Hello", ", ", "world", "!"]
    assert ids == [fnv1a_32(s.encode()) for s in strs]
    assert TOK.count("Hello, world!") == 4
    assert TOK.ids("Hello, world!") == ids == TOK.ids("Hello, world!", add_special_tokens=False)


def test_ids_are_the_same_whether_memoised_or_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyllmd.core import tokenize

    text = "known words first, then zq_never_seen_before and 42 more ; tokens"
    expected = [fnv1a_32(s.encode()) for s in TOK.tokens(text)]
    monkeypatch.setattr(tokenize, "_IDS", {})
    assert TOK.ids(text) == expected  # all new
    assert TOK.ids(text) == expected  # all memoised
    assert TOK.ids(text + " fresh") == [*expected[:-1], fnv1a_32(b"tokens "), fnv1a_32(b"fresh")]
    # the memo is bounded: a miss that would pass the bound starts it afresh
    monkeypatch.setattr(tokenize, "_IDS_MAX", 4)
    longer = text + " brand"
    assert TOK.ids(longer) == [*expected[:-1], fnv1a_32(b"tokens "), fnv1a_32(b"brand")]
    assert set(tokenize._IDS) == set(TOK.tokens(longer))
    assert tokenize.token_id("one") == fnv1a_32(b"one")


def test_fnv1a_32_known_values() -> None:
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("  a \t\n\f\rb", ["a \t\n\f\r", "b"]),
        ("a\vb\u00a0c", ["a", "b", "c"]),
        ("it's `x` | caf\u00e9", ["it", "s ", "x", "caf"]),
        ("_ab a_b", ["_", "ab ", "a_b"]),
        ("abc123 4.5", ["abc123 ", "4", ".", "5"]),
        ("", []),
    ],
)
def test_token_boundaries_match_the_simulator_vectors(text: str, tokens: list[str]) -> None:
    assert TOK.tokens(text) == tokens


def _write_tokenizer(directory: Path, with_bos: bool = True) -> Path:
    """A tiny word-level tokenizer.json, built offline, that adds a BOS token."""
    vocab = {"[UNK]": 0, "<s>": 1, "hello": 2, "world": 3, "again": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if with_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", 1)]
        )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokenizer.json"
    tok.save(str(path))
    return path


def test_hf_tokenizer_special_tokens_on_request(tmp_path: Path) -> None:
    tok = HFTokenizer(_write_tokenizer(tmp_path))
    assert tok.ids("hello world") == [1, 2, 3]
    assert tok.ids("hello world", add_special_tokens=False) == [2, 3]
    ids, strs = tok.encode("hello again")
    assert ids == [1, 2, 4]
    assert strs == ["", "hello", "again"]  # offsets: the special token covers no text
    assert tok.count("hello nope") == 3


def test_a_broken_tokenizer_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_text(json.dumps({"not": "a tokenizer"}))
    with pytest.raises(ConfigError, match="cannot load tokenizer"):
        HFTokenizer(bad)


def test_find_tokenizer_file_in_a_hub_cache_prefers_refs_main(tmp_path: Path) -> None:
    repo = tmp_path / "models--org--name"
    _write_tokenizer(repo / "snapshots" / "old")
    pinned = _write_tokenizer(repo / "snapshots" / "abc")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc\n")
    assert find_tokenizer_file("org/name", str(tmp_path)) == pinned
    assert find_tokenizer_file("org/other", str(tmp_path)) is None
    direct = _write_tokenizer(tmp_path / "plain" / "model")
    assert find_tokenizer_file("plain/model", str(tmp_path)) == direct
    assert find_tokenizer_file(str(tmp_path / "plain" / "model"), "") == direct


def test_discovery_names_models_like_upstream(tmp_path: Path) -> None:
    a = _write_tokenizer(tmp_path / "llama-7b")
    b = _write_tokenizer(tmp_path / "Qwen" / "Qwen3")
    c = _write_tokenizer(tmp_path / "hub" / "models--meta-llama--Llama-3" / "snapshots" / "r1")
    found = discover_tokenizers(str(tmp_path))
    assert found == {"llama-7b": a, "Qwen/Qwen3": b, "meta-llama/Llama-3": c}
    assert discover_tokenizers(str(tmp_path / "missing")) == {}
    assert hub_model_name("models--gpt2") == "gpt2"
    assert hub_model_name("gpt2") is None


def test_loaders_never_invent_a_tokenizer(tmp_path: Path) -> None:
    assert isinstance(load_tokenizer("org/absent", str(tmp_path)), SimpleTokenizer)
    _write_tokenizer(tmp_path / "x")
    assert isinstance(load_tokenizer("x", str(tmp_path)), HFTokenizer)
