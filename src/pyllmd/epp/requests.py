"""What the EPP reads from and writes into request and response bodies (spec §2.3, §2.5).

Pure functions over bytes, headers and JSON values; the ext_proc servicer
(`extproc/servicer.py`) is the only caller that does I/O. Request validation is written
here by hand because upstream's checks are a handful of field tests with
specific messages that no OpenAI schema library reproduces.

Deviation from upstream: when the target model equals the body's `model`, the
client's body bytes are forwarded untouched instead of being re-serialised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from pyllmd.epp.scheduling.types import LLMRequest

BODY_CHUNK = 62000  # largest body piece in one streamed mutation (upstream's limit)

MODEL_REWRITE_HEADER = "x-gateway-model-name-rewrite"
OBJECTIVE_HEADER = "x-gateway-inference-objective"
FAIRNESS_HEADER = "x-gateway-inference-fairness-id"
DESTINATION_HEADER = "x-gateway-destination-endpoint"
SUBSET_HEADER = "x-gateway-destination-endpoint-subset"
SERVED_HEADER = "x-gateway-destination-endpoint-served"
REQUEST_ID_HEADER = "x-request-id"
SYSTEM_OWNED_HEADERS = frozenset(
    {
        FAIRNESS_HEADER,
        OBJECTIVE_HEADER,
        MODEL_REWRITE_HEADER,
        SUBSET_HEADER,
        DESTINATION_HEADER,
        SERVED_HEADER,
        "content-length",
    }
)

# Internal error codes (upstream `errutil`) and their HTTP statuses.
BAD_REQUEST = "BadRequest"
BAD_CONFIGURATION = "BadConfiguration"
RESOURCE_EXHAUSTED = "InferencePoolResourceExhausted"
INTERNAL = "Internal"
SERVICE_UNAVAILABLE = "ServiceUnavailable"
ERROR_STATUS = {
    BAD_REQUEST: 400,
    BAD_CONFIGURATION: 404,
    RESOURCE_EXHAUSTED: 429,
    INTERNAL: 500,
    SERVICE_UNAVAILABLE: 503,
}

COMPLETIONS = "completions"
CHAT_COMPLETIONS = "chat-completions"
RESPONSES = "responses"
CONVERSATIONS = "conversations"
_API_BY_PATH = (  # substring tests, in upstream's order
    ("/v1/conversations", CONVERSATIONS),
    ("/v1/responses", RESPONSES),
    ("/v1/chat/completions", CHAT_COMPLETIONS),
    ("/v1/completions", COMPLETIONS),
)
_PATH_HEADERS = (":path", "x-original-path", "x-forwarded-path")


class EppError(Exception):
    """An error answered to the client as an immediate response (spec §2.5)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"inference gateway: {code} - {message}")
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        """HTTP status of the immediate response (500 for an unknown code)."""
        return ERROR_STATUS.get(self.code, 500)

    @property
    def body(self) -> bytes:
        """The immediate response body: `inference gateway: <Code> - <Msg>`."""
        return str(self).encode()


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A validated request body and what the EPP derived from it."""

    body: dict[str, Any]
    incoming_model: str
    target_model: str
    api: str


def api_type(headers: Mapping[str, str]) -> str:
    """The API a request targets, from its path header (default: completions)."""
    path = next((headers[h] for h in _PATH_HEADERS if headers.get(h)), "/v1/completions")
    for needle, api in _API_BY_PATH:
        if needle in path:
            return api
    return COMPLETIONS


def parse_request(raw: bytes, headers: Mapping[str, str]) -> ParsedRequest:
    """Parse and validate a request body; raises `EppError` (400) as upstream does."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise EppError(BAD_REQUEST, "Error unmarshaling request body")
    model = body.get("model")
    if not isinstance(model, str):
        raise EppError(BAD_REQUEST, "model not found in request body")
    target = headers.get(MODEL_REWRITE_HEADER) or model
    api = api_type(headers)
    problem = validation_error(api, body)
    if problem is not None:
        inner = EppError(BAD_REQUEST, problem)
        raise EppError(BAD_REQUEST, f"failed to extract request data: {inner}")
    return ParsedRequest(body=body, incoming_model=model, target_model=target, api=api)


def scheduling_request(
    parsed: ParsedRequest, headers: Mapping[str, str], request_id: str, priority: int = 0
) -> LLMRequest:
    """The scheduler's request for a parsed one (after any model rewrite)."""
    return LLMRequest(
        request_id=request_id,
        incoming_model=parsed.incoming_model,
        target_model=parsed.target_model,
        api=parsed.api,
        body=parsed.body,
        headers=dict(headers),
        priority=priority,
    )


def validation_error(api: str, body: Mapping[str, Any]) -> str | None:
    """Upstream's message for an invalid body of `api`, or None when it is valid.

    Upstream decodes the body into a typed struct per API and answers every
    failure, a field of the wrong type included, with that API's one message;
    `_TYPED_FIELDS` restates the structs' field types (JSON null is always
    accepted, as Go's decoder leaves the zero value). Field names are matched
    exactly (Go's decoder also accepts other capitalisations).
    """
    fields = _TYPED_FIELDS.get(api, _TYPED_FIELDS[COMPLETIONS])
    typed = all(check(body[name]) for name, check in fields.items() if name in body)
    if api == CHAT_COMPLETIONS:
        if not typed or not body.get("messages"):
            return "invalid chat completions request: must have valid messages field"
    elif api == RESPONSES:
        if not typed or body.get("input") is None:
            return "invalid responses request: must have input field"
    elif api == CONVERSATIONS:
        if not typed or not body.get("items"):
            return "invalid conversations request: must have items field"
    elif not typed or not body.get("prompt"):
        return "invalid completions request: must have prompt field"
    return None


# ---------------------------------------------------------------- Go decoding rules
# Each check tells whether Go's encoding/json decodes a JSON value into one field type.

Check = Callable[[object], bool]


def _string(value: object) -> bool:
    return value is None or isinstance(value, str)


def _bool(value: object) -> bool:
    return value is None or isinstance(value, bool)


def _slice(value: object) -> bool:  # []interface{}
    return value is None or isinstance(value, list)


def _map(value: object) -> bool:  # map[string]interface{}
    return value is None or isinstance(value, dict)


def _any(_value: object) -> bool:  # interface{}
    return True


def _struct(**fields: Check) -> Check:
    """A struct: an object whose known fields decode (unknown keys are ignored)."""

    def check(value: object) -> bool:
        if value is None:
            return True
        if not isinstance(value, dict):
            return False
        return all(rule(value[name]) for name, rule in fields.items() if name in value)

    return check


def _slice_of(item: Check) -> Check:
    def check(value: object) -> bool:
        return value is None or (isinstance(value, list) and all(item(v) for v in value))

    return check


_CONTENT_BLOCK = _struct(
    type=_string,  # any block type: upstream checks none
    text=_string,
    image_url=_struct(url=_string),
    input_audio=_struct(data=_string, format=_string),
    video_url=_struct(url=_string),
)


def _content(value: object) -> bool:
    """Message content: a string or a list of content blocks (upstream's custom decoder)."""
    return value is None or isinstance(value, str) or _slice_of(_CONTENT_BLOCK)(value)


_TYPED_FIELDS: dict[str, dict[str, Check]] = {
    COMPLETIONS: {"prompt": _string, "cache_salt": _string},
    CHAT_COMPLETIONS: {
        "messages": _slice_of(_struct(role=_string, content=_content)),
        "tools": _slice,
        "documents": _slice,
        "chat_template": _string,
        "return_assistant_tokens_mask": _bool,
        "continue_final_message": _bool,
        "add_generation_prompt": _bool,
        "chat_template_kwargs": _map,
        "cache_salt": _string,
    },
    RESPONSES: {"input": _any, "instructions": _any, "tools": _any, "cache_salt": _string},
    CONVERSATIONS: {
        "items": _slice_of(_struct(type=_string, role=_string, content=_any)),
        "metadata": _map,
        "cache_salt": _string,
    },
}


def forwarded_body(raw: bytes, parsed: ParsedRequest) -> bytes:
    """The body sent upstream: the client's bytes when `model` is unchanged, else re-serialised.

    Re-serialisation sorts keys, as Go's encoder does for a map.
    """
    if parsed.target_model == parsed.incoming_model:
        return raw
    body = dict(parsed.body)
    body["model"] = parsed.target_model
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def body_chunks(data: bytes, size: int = BODY_CHUNK) -> Iterator[tuple[bytes, bool]]:
    """Split `data` into (chunk, end_of_stream) pieces of at most `size` bytes; b"" → one chunk."""
    if not data:
        yield b"", True
        return
    for start in range(0, len(data), size):
        yield data[start : start + size], start + size >= len(data)


def forwarded_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Request (or response) headers re-emitted in `set_headers`: all but the system-owned."""
    return {k: v for k, v in headers.items() if k.lower() not in SYSTEM_OWNED_HEADERS}


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts a model server reported for one response."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def extract_usage(response: Mapping[str, Any]) -> Usage | None:
    """The `usage` of a response object (names depend on `object`, spec §2.3), or None."""
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return None
    obj = response.get("object")
    obj = obj if isinstance(obj, str) else ""
    if obj.startswith(("response", "conversation")):
        prompt, completion = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
    elif obj in ("chat.completion", "chat.completion.chunk", "text_completion"):
        prompt, completion = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    else:
        prompt = _int(usage.get("input_tokens")) or _int(usage.get("prompt_tokens"))
        completion = _int(usage.get("output_tokens")) or _int(usage.get("completion_tokens"))
    details = usage.get("prompt_token_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return Usage(prompt, completion, _int(usage.get("total_tokens")), cached)


class SseUsage:
    """Follows an SSE response chunk by chunk: the last usage seen and whether `[DONE]` came.

    Better than upstream: a `data:` line split across two chunks is joined
    before parsing instead of being skipped.
    """

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.done = False
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        """Consume one response body chunk."""
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line.rstrip(b"\r"))

    def finish(self) -> None:
        """End of stream: parse a last line that had no newline."""
        if self._partial:
            self._line(self._partial.rstrip(b"\r"))
            self._partial = b""

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data: "):
            return
        payload = line[len(b"data: ") :].strip()
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if isinstance(event, dict):
            usage = extract_usage(event)
            if usage is not None and usage.total_tokens > 0:
                self.usage = usage


def json_usage(body: bytes) -> tuple[Usage | None, bool]:
    """(usage, parsed) of a complete non-streaming response body."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, False
    if not isinstance(value, dict):
        return None, True
    return extract_usage(value), True
