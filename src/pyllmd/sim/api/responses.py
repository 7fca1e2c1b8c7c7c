"""OpenAI response bodies and SSE chunks, in upstream's key order.

Streams are hot (one chunk per token), so each stream builds its constant
chunk prefix once and only serialises the token text per chunk.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from pyllmd.sim.engine.logprobs import chat_logprobs, text_logprobs
from pyllmd.sim.engine.toolcalls import ToolCall

DONE = b"data: [DONE]\n\n"

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


@dataclass(slots=True)
class Usage:
    """Token counts of one response; `cached_tokens` is None when KV caching is off
    (not frozen, though never changed: a frozen dataclass costs three times as much
    to build, and one is built per response)."""

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


def tool_call_json(call: ToolCall, index: int) -> dict[str, Any]:
    """One entry of `message.tool_calls` (upstream's key order).

    Upstream also leaks an internal `TokenizedArguments` key here; we leave it out.
    """
    return {
        "function": {"name": call.name, "arguments": call.arguments},
        "id": call.id,
        "type": "function",
        "index": index,
    }


def completion_body(
    *,
    chat: bool,
    request_id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str,
    usage: Usage,
    tool_calls: Sequence[ToolCall] = (),
    logprobs: dict[str, Any] | None = None,
) -> bytes:
    """A whole non-streaming chat or text completion response.

    A tool-call reply has empty `content` and `tool_calls`; `logprobs` is added when given.
    """
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if tool_calls:
            message["tool_calls"] = [tool_call_json(c, i) for i, c in enumerate(tool_calls)]
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason, "message": message}
    else:
        choice = {"index": 0, "finish_reason": finish_reason, "text": text}
    if logprobs is not None:
        choice["logprobs"] = logprobs
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

    def token(
        self, text: str, finish_reason: str | None = None, logprobs: dict[str, Any] | None = None
    ) -> bytes:
        """One token's chunk, optionally carrying the finish reason and the token's logprobs."""
        reason = b"null" if finish_reason is None else orjson.dumps(finish_reason)
        if self.chat:
            tail = b',"delta":{"content":' + orjson.dumps(text) + b"}"
        else:
            tail = b',"text":' + orjson.dumps(text)
        if logprobs is not None:
            tail += b',"logprobs":' + orjson.dumps(logprobs)
        return self._content_prefix + reason + tail + b"}]}\n\n"

    def tokens(
        self, tokens: Sequence[str], on_last: str | None, logprobs: int | None
    ) -> Iterator[bytes]:
        """The chunks of a text reply, one per token; the last carries `on_last`.

        Logprobs use each token's real position (and, for text, its byte offset).
        """
        last = len(tokens) - 1
        if logprobs is None:
            for i, tok in enumerate(tokens):
                yield self.token(tok, on_last if i == last else None)
            return
        offset = 0
        for i, tok in enumerate(tokens):
            if self.chat:
                lp = chat_logprobs((tok,), logprobs, i)
            else:
                lp = text_logprobs((tok,), logprobs, i, offset)
                offset += len(tok.encode())
            yield self.token(tok, on_last if i == last else None, lp)

    def tool_calls(self, calls: Sequence[ToolCall], finish_reason: str) -> Iterator[bytes]:
        """The chunks of a tool-call reply: one per argument token, calls in order.

        Only the very last chunk carries the finish reason (upstream repeats it at the
        end of every call, which stops clients that read until the first finish reason).
        """
        for k, call in enumerate(calls):
            tokens = call.tokens or ("",)
            last = len(tokens) - 1
            final = k == len(calls) - 1
            for i, tok in enumerate(tokens):
                reason = finish_reason if final and i == last else None
                yield self.tool_call(call, k, tok, i == 0, reason)

    def tool_call(
        self, call: ToolCall, index: int, token: str, first: bool, finish_reason: str | None
    ) -> bytes:
        """One argument token of a tool call.

        As in OpenAI's and vLLM's streams, only a call's first chunk carries its id, type
        and name, so clients that concatenate the deltas rebuild the call (upstream repeats
        the id in every chunk, which such clients glue together).
        """
        delta: dict[str, Any] = {"function": {"arguments": token}, "index": index}
        if first:
            delta = {
                "function": {"name": call.name, "arguments": token},
                "id": call.id,
                "type": "function",
                "index": index,
            }
        reason = b"null" if finish_reason is None else orjson.dumps(finish_reason)
        body = orjson.dumps({"content": "", "tool_calls": [delta]})
        return self._content_prefix + reason + b',"delta":' + body + b"}]}\n\n"

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
