"""OpenAI response bodies and SSE chunks, in upstream's key order.

Streams are hot (one chunk per token), so each stream builds its constant
chunk prefix once and only serialises the token text per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"

FINISH_REASONS: tuple[str, ...] = (
    "stop",
    "length",
    "tool_calls",
    "remote_decode",
    "cache_threshold",
)
"""Every `finish_reason` the simulator reports (also the `request_success_total` labels)."""

# vLLM's P/D reply from a prefill node (upstream's placeholder values).
REMOTE_DECODE_PARAMS: dict[str, Any] = {
    "do_remote_decode": False,
    "do_remote_prefill": True,
    "remote_engine_id": "DUMMY_ID",
    "remote_block_ids": ["DUMMY_ID"],
    "remote_host": "DUMMY",
    "remote_port": 1234,
    "tp_size": 1,
}


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one response; `cached_tokens` is None when KV caching is off."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The `usage` object."""
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if self.cached_tokens is not None:
            out["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return out


def completion_body(
    *,
    chat: bool,
    request_id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str,
    usage: Usage,
) -> bytes:
    """A whole non-streaming chat or text completion response."""
    if chat:
        choice: dict[str, Any] = {
            "index": 0,
            "finish_reason": finish_reason,
            "message": {"role": "assistant", "content": text},
        }
    else:
        choice = {"index": 0, "finish_reason": finish_reason, "text": text}
    body = {
        "id": ("chatcmpl-" if chat else "cmpl-") + request_id,
        "created": created,
        "model": model,
        "usage": usage.to_json(),
        "object": "chat.completion" if chat else "text_completion",
        "kv_transfer_params": REMOTE_DECODE_PARAMS if finish_reason == "remote_decode" else None,
        "choices": [choice],
    }
    return orjson.dumps(body)


class ChunkWriter:
    """Builds the SSE events of one stream; the constant prefix is serialised once."""

    def __init__(self, *, chat: bool, request_id: str, created: int, model: str) -> None:
        self.chat = chat
        obj = "chat.completion.chunk" if chat else "text_completion"
        head = {
            "id": ("chatcmpl-" if chat else "cmpl-") + request_id,
            "created": created,
            "model": model,
        }
        self._head = orjson.dumps(head)[:-1]  # without the closing brace
        self._obj = orjson.dumps(obj)
        self._content_prefix = (
            b"data: "
            + self._head
            + b',"usage":null,"object":'
            + self._obj
            + b',"kv_transfer_params":null,"choices":[{"index":0,"finish_reason":'
        )

    def role(self) -> bytes:
        """The chat stream's first chunk: the assistant role with empty content."""
        return self._content_prefix + b'null,"delta":{"role":"assistant","content":""}}]}\n\n'

    def token(self, text: str, finish_reason: str | None = None) -> bytes:
        """One token's chunk, optionally carrying the finish reason."""
        reason = b"null" if finish_reason is None else orjson.dumps(finish_reason)
        if self.chat:
            tail = b',"delta":{"content":' + orjson.dumps(text) + b"}}]}\n\n"
        else:
            tail = b',"text":' + orjson.dumps(text) + b"}]}\n\n"
        return self._content_prefix + reason + tail

    def usage(self, usage: Usage) -> bytes:
        """The final usage chunk (`stream_options.include_usage`)."""
        return (
            b"data: "
            + self._head
            + b',"usage":'
            + orjson.dumps(usage.to_json())
            + b',"object":'
            + self._obj
            + b',"kv_transfer_params":null,"choices":[]}\n\n'
        )
