"""Typed request bodies (completions, LoRA adapters), parsed strictly like Go's JSON decoder.

Strict pydantic models mirror upstream's Go structs: a field of the wrong JSON
type is a parse error (Go does not coerce `"5"` to 5), `null` leaves a field
unset, unknown fields are ignored. Parse errors become the 400 reply
`Failed to read and parse request body, <reason>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError

from pyllmd.core.errors import LlmdError
from pyllmd.sim.api.tools import parse_tool_choice, validate_tools
from pyllmd.sim.engine.logprobs import MAX_LOGPROBS
from pyllmd.sim.engine.toolcalls import FunctionDef, ToolChoice

PARSE_ERROR_PREFIX = "Failed to read and parse request body, "


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class StreamOptions(_Body):
    """`stream_options`: only `include_usage` is read."""

    include_usage: bool | None = None


class KVTransferParams(_Body):
    """P/D parameters; only the two booleans change behaviour.

    The other fields are accepted whatever their JSON type (upstream wants strings
    for block ids, but a vLLM prefiller hands the decoder integers).
    """

    do_remote_decode: bool | None = None
    do_remote_prefill: bool | None = None
    remote_engine_id: Any = None
    remote_block_ids: Any = None
    remote_host: Any = None
    remote_port: Any = None
    tp_size: Any = None


class ImageURL(_Body):
    """`image_url` content block payload: parsed and ignored (no image tokens)."""

    url: str | None = None


class ContentBlock(_Body):
    """One block of an array-valued message `content`."""

    type: str | None = None
    text: str | None = None
    image_url: ImageURL | None = None


class Message(_Body):
    """A chat message; roles are not part of the prompt text (no chat template)."""

    role: str | None = None
    content: str | list[ContentBlock] | None = None
    tool_calls: list[Any] | None = None

    def text(self) -> str:
        """Plain text of the message: the string, or every text block followed by a space."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "".join(f"{b.text or ''} " for b in self.content if b.type == "text")


@dataclass(slots=True)
class Facts:
    """What the completion flow reads of a request body, read in one go (`facts()`):
    every attribute read of a pydantic model goes through its `__getattr__` hook,
    which costs more than the read itself, and the flow needs a dozen."""

    model: str | None
    prompt: str
    """The text that is tokenized as the prompt."""
    stream: bool
    include_usage: bool
    """A streamed response ends with a usage chunk."""
    max_tokens: int | None
    """The completion-token limit the request asks for, if any."""
    ignore_eos: bool
    remote_prefill: bool
    """This instance acts as the decode node of a P/D pair."""
    remote_decode: bool
    """This instance acts as the prefill node of a P/D pair."""
    cache_hit_threshold: float | None
    logprobs: int | None
    """How many alternatives per token the reply's logprobs list; None: no logprobs."""


def _facts(
    fields: dict[str, Any], prompt: str, max_tokens: int | None, logprobs: int | None
) -> Facts:
    """The facts common to both request kinds, from the model's field values."""
    options, kv = fields["stream_options"], fields["kv_transfer_params"]
    return Facts(
        fields["model"],
        prompt,
        bool(fields["stream"]),
        bool(options is not None and options.include_usage),
        max_tokens,
        bool(fields["ignore_eos"]),
        bool(kv is not None and kv.do_remote_prefill),
        bool(kv is not None and kv.do_remote_decode),
        fields["cache_hit_threshold"],
        logprobs,
    )


class _Completion(_Body):
    model: str | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    ignore_eos: bool | None = None
    kv_transfer_params: KVTransferParams | None = None
    cache_hit_threshold: float | None = None

    def facts(self) -> Facts:
        """The values the completion flow uses, read once."""
        raise NotImplementedError


class ToolFunction(_Body):
    """A tool's `function`; upstream reads only these three keys."""

    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Body):
    """One entry of `tools`; its `type` is not checked (vLLM knows only functions)."""

    type: str | None = None
    function: ToolFunction | None = None

    def definition(self) -> FunctionDef:
        """The function as the tool-call code sees it."""
        f = self.function or ToolFunction()
        return FunctionDef(f.name or "", f.description or "", f.parameters)


def _tool_choice(value: Any) -> ToolChoice:
    return parse_tool_choice(value)


class ChatCompletionRequest(_Completion):
    """`POST /v1/chat/completions` body."""

    messages: list[Message] | None = None
    max_completion_tokens: int | None = None
    tools: list[Tool] | None = None
    tool_choice: Annotated[ToolChoice | None, PlainValidator(_tool_choice)] = None
    logprobs: bool | None = None
    top_logprobs: int | None = None

    def facts(self) -> Facts:
        """`max_completion_tokens` wins over `max_tokens`; logprobs: `top_logprobs`
        alternatives (1 when absent) when `logprobs` is true; the prompt is every
        message's text, joined by spaces (no chat template)."""
        f = self.__dict__
        limit = f["max_completion_tokens"]
        if limit is None:
            limit = f["max_tokens"]
        top = f["top_logprobs"]
        logprobs = None if not f["logprobs"] else (1 if top is None else top)
        prompt = " ".join(m.text() for m in f["messages"] or ()).strip()
        return _facts(f, prompt, limit, logprobs)

    @property
    def function_defs(self) -> tuple[FunctionDef, ...] | None:
        """The request's tools (None when `tools` is absent or null)."""
        if self.tools is None:
            return None
        return tuple(t.definition() for t in self.tools)

    @property
    def choice(self) -> ToolChoice:
        """The parsed `tool_choice` ("auto" when absent)."""
        return self.tool_choice or ToolChoice()


class TextCompletionRequest(_Completion):
    """`POST /v1/completions` body: `prompt` must be a string."""

    prompt: str | None = None
    logprobs: int | None = None

    def facts(self) -> Facts:
        """Logprobs only for `logprobs` > 0."""
        f = self.__dict__
        logprobs = f["logprobs"]
        if logprobs is not None and logprobs <= 0:
            logprobs = None
        return _facts(f, f["prompt"] or "", f["max_tokens"], logprobs)


def parse_body(kind: type[_Completion], raw: bytes) -> _Completion:
    """Parse a request body or raise the 400 parse error."""
    try:  # the validator itself: model_validate_json adds a Python frame per request
        body: _Completion = kind.__pydantic_validator__.validate_json(raw)
        return body
    except ValidationError as e:
        raise LlmdError(400, PARSE_ERROR_PREFIX + describe_validation_error(e)) from None


def describe_validation_error(e: ValidationError) -> str:
    """One short line for the first problem: which field, and what was wrong."""
    err = e.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err["loc"] if not _is_union_tag(p))
    msg = str(err["msg"])
    if err["type"] == "json_invalid":
        return f"invalid JSON: {err.get('ctx', {}).get('error', msg)}"
    if err["type"] == "value_error":  # our own validators: keep the text as written
        msg = str(err.get("ctx", {}).get("error", msg))
    else:
        msg = msg.lower()
    if not loc:
        return f"request body: {msg}"
    return f"field '{loc}': {msg}"


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and (part.startswith(("list[", "dict[")) or part in _TAGS)


_TAGS = {"str", "int", "float", "bool", "function-after", "ContentBlock"}


def validate_request(req: _Completion, facts: Facts) -> None:
    """Upstream's request validation after the model check (400s), in upstream's order.

    The logprobs bound is ours: upstream crashes on a negative `top_logprobs` and
    builds any number of alternatives.
    """
    chat = isinstance(req, ChatCompletionRequest)
    if isinstance(req, ChatCompletionRequest):
        tools = req.function_defs
        if tools:
            validate_tools(tools)
    max_tokens = facts.max_tokens
    if max_tokens is not None and max_tokens <= 0:
        raise LlmdError(400, "Max completion tokens and max tokens should be positive")
    if facts.remote_decode and facts.stream:
        raise LlmdError(400, "Prefill does not support streaming")
    if facts.ignore_eos and max_tokens is None:
        raise LlmdError(
            400,
            "Ignore_eos is true but max_completion_tokens (or max_tokens) is not set",
        )
    count = facts.logprobs
    if count is not None and not 0 <= count <= MAX_LOGPROBS:
        field = "top_logprobs" if chat else "logprobs"
        raise LlmdError(400, f"{field} must be between 0 and {MAX_LOGPROBS}, got {count}")


# ---------------------------------------------------------------- LoRA adapters


class LoadLoraRequest(BaseModel):
    """`POST /v1/load_lora_adapter` body; `null` fields stay empty, as Go decodes them."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    lora_name: str | None = None
    lora_path: str | None = None


class UnloadLoraRequest(BaseModel):
    """`POST /v1/unload_lora_adapter` body."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    lora_name: str | None = None


def parse_lora_name(raw: bytes, *, load: bool) -> str:
    """The adapter name of a (un)load body; 400 with upstream's text when it does not parse.

    Upstream does not validate further: a body without `lora_name` names the
    adapter `""`, and a JSON `null` body is an empty request.
    """
    kind: type[LoadLoraRequest] | type[UnloadLoraRequest] = (
        LoadLoraRequest if load else UnloadLoraRequest
    )
    if raw.strip() == b"null":
        return ""
    try:
        req = kind.model_validate_json(raw)
    except ValidationError as e:
        verb = "load" if load else "unload"
        raise LlmdError(
            400,
            f"failed to read and parse {verb} lora request body, " + describe_validation_error(e),
        ) from None
    return req.lora_name or ""
