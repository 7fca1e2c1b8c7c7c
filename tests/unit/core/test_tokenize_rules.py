"""The simple tokenizer's boundaries (simulator spec §12.1): what /tokenize and usage count."""

from __future__ import annotations

import pytest

from pyllmd.core.tokenize import SimpleTokenizer

TOK = SimpleTokenizer()


def test_whitespace_belongs_to_the_preceding_token_and_leading_is_dropped() -> None:
    assert TOK.tokens("  a \t\n\f\rb") == ["a \t\n\f\r", "b"]


def test_vertical_tab_and_unicode_spaces_are_not_whitespace() -> None:
    # \v and U+00A0 are dropped as unmatched characters, not glued to the token.
    assert TOK.tokens("a\vb\u00a0c") == ["a", "b", "c"]


def test_unmatched_and_non_ascii_characters_are_dropped() -> None:
    assert TOK.tokens("it's `x` | caf\u00e9") == ["it", "s ", "x", "caf"]


def test_underscore_alone_wins_over_word_run() -> None:
    assert TOK.tokens("_ab a_b") == ["_", "ab ", "a_b"]


@pytest.mark.parametrize("ch", list('{}:,-.?!;@#$%^&*()+~/\\><[]="'))
def test_each_punctuation_character_is_its_own_token(ch: str) -> None:
    assert TOK.tokens(f"a{ch}b") == ["a", ch, "b"]


def test_digits_are_word_characters() -> None:
    assert TOK.tokens("abc123 4.5") == ["abc123 ", "4", ".", "5"]


def test_empty_text_has_no_tokens() -> None:
    assert TOK.encode("") == ([], [])
    assert TOK.count("") == 0


def test_joining_tokens_reproduces_text_without_leading_space() -> None:
    text = "Hello, world! How are you?  Fine."
    assert "".join(TOK.tokens(text)) == text
