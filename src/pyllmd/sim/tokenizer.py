"""The simulator's built-in tokenizer (upstream's "simple" tokenizer, spec §12.1).

A token is one punctuation character or one run of ASCII word characters, plus the
whitespace that follows it; anything else is dropped. Its id is the FNV-1a 32-bit
hash of its UTF-8 bytes. Unlike upstream we never ask huggingface.co at start-up:
the tokenizer choice must not depend on the network.

FNV-1a-32 is written by hand: no stdlib or well-kept package provides it, and it is
four lines. Ids of repeated token strings are memoised, since prompts repeat words.
"""

from __future__ import annotations

import re
from functools import lru_cache

FNV32_OFFSET = 0x811C9DC5
FNV32_PRIME = 0x01000193
_MASK32 = 0xFFFFFFFF

# Same alternatives, in the same order, as upstream (order matters: leftmost-first,
# so "_x" yields "_" then "x"). `\w` and `\s` are spelled out because Python's are
# Unicode-aware and include \v; upstream's (Go RE2) are ASCII-only and exclude \v.
_TOKEN_RE = re.compile(
    r"""(?:\{|\}|:|,|-|\.|\?|!|;|@|\#|\$|%|\^|&|\*|\(|\)|\+|-|_|~|/|\\|>|<|\[|\]|=|"|[0-9A-Za-z_]+)"""
    r"[\t\n\f\r ]*"
)


def fnv1a_32(data: bytes) -> int:
    """FNV-1a 32-bit hash of `data`."""
    h = FNV32_OFFSET
    for byte in data:
        h = ((h ^ byte) * FNV32_PRIME) & _MASK32
    return h


@lru_cache(maxsize=65536)
def token_id(token: str) -> int:
    """Id of one token string (FNV-1a-32 of its UTF-8 bytes, trailing whitespace included)."""
    return fnv1a_32(token.encode("utf-8"))


class SimpleTokenizer:
    """Stateless regex tokenizer; one shared instance is enough."""

    def encode(self, text: str) -> tuple[list[int], list[str]]:
        """Token ids and token strings (each with its trailing whitespace) of `text`."""
        strs = self.tokens(text)
        return [token_id(s) for s in strs], strs

    def tokens(self, text: str) -> list[str]:
        """Only the token strings of `text`."""
        return _TOKEN_RE.findall(text)  # no capturing group: whole matches

    def count(self, text: str) -> int:
        """Number of tokens in `text`, without computing ids."""
        return len(_TOKEN_RE.findall(text))
