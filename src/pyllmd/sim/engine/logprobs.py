"""Synthetic log probabilities (spec §2.8): the shape vLLM returns, values from a formula.

The value of the token at position `p` and of its `j`-th alternative is
`-1.0 - 0.1·(p mod 3) - 0.5·j`; alternative `j` of token `t` is the string `t_j`.
Streamed chunks use the token's real position in the response (upstream uses
`created % 1000` for every token), so the streamed pieces put together equal the
non-streaming result for the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MAX_LOGPROBS = 20
"""Largest `top_logprobs` (chat) or `logprobs` (text) accepted, as vLLM's default."""


def logprob(position: int, alternative: int = 0) -> float:
    """The synthetic log probability of a token (alternative 0) or one of its alternatives."""
    return -1.0 - (position % 3) * 0.1 - alternative * 0.5


def _alternatives(token: str, count: int) -> list[str]:
    """The token itself, then `<token>_1` ... up to `count` strings."""
    return [token] + [f"{token}_{j}" for j in range(1, count)]


def chat_entry(token: str, position: int, top: int) -> dict[str, Any]:
    """One `logprobs.content[]` entry; `top_logprobs` is left out when `top` is 0."""
    entry: dict[str, Any] = {
        "token": token,
        "logprob": logprob(position),
        "bytes": list(token.encode()),
    }
    if top > 0:
        entry["top_logprobs"] = [
            {"token": alt, "logprob": logprob(position, j), "bytes": list(alt.encode())}
            for j, alt in enumerate(_alternatives(token, top))
        ]
    return entry


def chat_logprobs(tokens: Sequence[str], top: int, start: int = 0) -> dict[str, Any]:
    """A chat choice's `logprobs` for `tokens` that begin at position `start`."""
    return {"content": [chat_entry(t, start + i, top) for i, t in enumerate(tokens)]}


def text_logprobs(
    tokens: Sequence[str], count: int, start: int = 0, offset: int = 0
) -> dict[str, Any]:
    """A text choice's `logprobs`; `offset` is the byte offset of the first token in the text.

    The `top_logprobs` maps have sorted keys, as Go writes maps.
    """
    token_logprobs: list[float] = []
    top: list[dict[str, float]] = []
    offsets: list[int] = []
    for i, token in enumerate(tokens):
        position = start + i
        token_logprobs.append(logprob(position))
        alts = {alt: logprob(position, j) for j, alt in enumerate(_alternatives(token, count))}
        top.append(dict(sorted(alts.items())))
        offsets.append(offset)
        offset += len(token.encode())
    return {
        "tokens": list(tokens),
        "token_logprobs": token_logprobs,
        "top_logprobs": top,
        "text_offset": offsets,
    }
