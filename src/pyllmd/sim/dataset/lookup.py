"""Responses from a dataset of recorded conversations (random mode, spec §10.2).

A dataset row maps a prompt key to one recorded response. The key is the SHA-256
of the prompt's token ids, each as a 4-byte little-endian uint32 (`prompt_key`).
Which text is tokenized for the key:

* text completions: the `prompt`, as upstream;
* chat completions: first `render_chat` of the messages, `### <role>:\\n<content>\\n`
  per message, which is exactly what `pyllmd dataset` (and upstream's dataset tool)
  writes; then, if no row has that key, upstream's own chat key (the space-joined
  message texts), so datasets keyed either way are hit. Upstream tries only the
  second key, so rows written by its tool are never hit by chat requests.

The selection rules (`pick_match`, `pick_fallback`, `fit`) are pure functions of
the candidate lengths and an injected `random.Random`; `Dataset` wires them to a
`RowStore`, the SQLite file of `store.DatasetStore` when the simulator runs.
"""

from __future__ import annotations

import hashlib
import random
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import orjson

from pyllmd.core.errors import LlmdError
from pyllmd.core.tokenize import Tokenizer

EMPTY_MESSAGE = "Dataset is empty"


class DatasetError(Exception):
    """A row could not be read or decoded (answered with a 500)."""


class RowStore(Protocol):
    """The opened dataset file as the rules read it (`store.DatasetStore`)."""

    @property
    def lengths(self) -> Sequence[int]:
        """Response lengths of every row, ascending (the order `row_at` counts in)."""
        ...

    def rows_for(self, key: bytes) -> list[str]:
        """`gen_tokens` of every row whose prompt hash is `key`; DatasetError if unreadable."""
        ...

    def row_at(self, position: int) -> str:
        """`gen_tokens` of the row at `position` in length order; DatasetError if unreadable."""
        ...

    def close(self) -> None:
        """Release the file."""
        ...


class ChatMessage(Protocol):
    """What the key needs of a chat message (the request model's `Message`)."""

    @property
    def role(self) -> str | None: ...

    @property
    def content(self) -> object: ...


def prompt_key(ids: Iterable[int]) -> bytes:
    """SHA-256 over the token ids, each packed as a little-endian uint32."""
    ids = list(ids)
    return hashlib.sha256(struct.pack(f"<{len(ids)}I", *ids)).digest()


def content_text(content: object) -> str:
    """A message's text: the string itself, or its text blocks joined by newlines
    (as vLLM joins text parts); other blocks (images) contribute nothing."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts: list[str] = []
    for block in content:
        if isinstance(block, dict):
            kind, text = block.get("type"), block.get("text")
        else:
            kind, text = getattr(block, "type", None), getattr(block, "text", None)
        if kind == "text" and isinstance(text, str):
            texts.append(text)
    return "\n".join(texts)


def render_chat(turns: Iterable[tuple[str, str]]) -> str:
    """The prompt text a chat is keyed by: `### <role>:\\n<content>\\n` per (role, content)."""
    return "".join(f"### {role}:\n{content}\n" for role, content in turns)


def chat_key(tokenizer: Tokenizer, messages: Iterable[ChatMessage]) -> bytes:
    """The dataset key of a chat request: its messages rendered, tokenized and hashed."""
    text = render_chat((m.role or "", content_text(m.content)) for m in messages)
    return prompt_key(tokenizer.encode(text)[0])


# ---------------------------------------------------------------- selection rules


def pick_match(rng: random.Random, lengths: Sequence[int], limit: int, ignore_eos: bool) -> int:
    """Index of the row to answer with among rows whose key matched (`lengths` non-empty).

    With `ignore_eos` the preference is: exactly `limit` tokens, else longer (to be
    cut), else shorter (to be padded). Without: at most `limit`, else longer.
    """
    pools: tuple[list[int], ...]
    if ignore_eos:
        pools = (
            [i for i, n in enumerate(lengths) if n == limit],
            [i for i, n in enumerate(lengths) if n > limit],
            [i for i, n in enumerate(lengths) if n < limit],
        )
    else:
        pools = (
            [i for i, n in enumerate(lengths) if n <= limit],
            [i for i, n in enumerate(lengths) if n > limit],
        )
    pool = next(p for p in pools if p)
    return pool[rng.randrange(len(pool))]


def pick_fallback(
    rng: random.Random, sorted_lengths: Sequence[int], limit: int, ignore_eos: bool
) -> int | None:
    """Position (in the length-sorted index) of a random row when no key matched.

    A row of exactly `limit` tokens (`ignore_eos`) or of at most `limit`; if there is
    none, any row; None when the dataset is empty.
    """
    lo = bisect_left(sorted_lengths, limit) if ignore_eos else 0
    hi = bisect_right(sorted_lengths, limit)
    if lo >= hi:
        lo, hi = 0, len(sorted_lengths)
    if lo >= hi:
        return None
    return rng.randrange(lo, hi)


def fit(
    tokens: list[str], limit: int, ignore_eos: bool, pad: Callable[[int], list[str]]
) -> tuple[list[str], str]:
    """Cut a response to `limit` tokens, or pad it to `limit` when `ignore_eos`.

    The finish reason is "length" exactly when the result has `limit` tokens.
    """
    if len(tokens) > limit:
        tokens = tokens[:limit]
    elif ignore_eos and len(tokens) < limit:
        tokens = tokens + pad(limit - len(tokens))
    return tokens, "length" if len(tokens) == limit else "stop"


def decode_gen_tokens(raw: str | bytes) -> list[str]:
    """Token strings of a `gen_tokens` value, `{"Tokens": [ids], "Strings": [texts]}`.

    Keys match case-insensitively (as Go's decoder does). The length is the number
    of ids, else of strings (upstream's rule); missing strings are empty.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise DatasetError(f"gen_tokens is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise DatasetError("gen_tokens is not a JSON object")
    fields = {str(k).lower(): v for k, v in obj.items()}
    ids, strings = fields.get("tokens") or [], fields.get("strings") or []
    if not isinstance(ids, list) or not isinstance(strings, list):
        raise DatasetError("gen_tokens Tokens and Strings must be arrays")
    if not all(isinstance(s, str) for s in strings):
        raise DatasetError("gen_tokens Strings must be strings")
    n = len(ids) or len(strings)
    return strings[:n] + [""] * (n - len(strings))


class Dataset:
    """The response rules of §10.2 over one opened dataset file."""

    def __init__(self, store: RowStore) -> None:
        self.store = store

    def respond(
        self, rng: random.Random, keys: Iterable[bytes], limit: int, ignore_eos: bool
    ) -> list[str]:
        """Token strings of the chosen row, before `fit` (500 error if none or unreadable)."""
        try:
            for key in keys:
                rows = [decode_gen_tokens(r) for r in self.store.rows_for(key)]
                if rows:
                    return rows[pick_match(rng, [len(r) for r in rows], limit, ignore_eos)]
            position = pick_fallback(rng, self.store.lengths, limit, ignore_eos)
            if position is None:
                raise LlmdError(500, EMPTY_MESSAGE)
            return decode_gen_tokens(self.store.row_at(position))
        except (DatasetError, OSError) as e:
            raise LlmdError(500, f"failed to read the dataset: {e}") from None

    def close(self) -> None:
        """Release the file (and its lock)."""
        self.store.close()
