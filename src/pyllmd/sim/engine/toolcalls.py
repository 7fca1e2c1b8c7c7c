"""Simulated tool calls of chat completions (spec §8): the tools, the choice, the arguments.

Pure: randomness comes from the caller's `random.Random`, tokenization from a
passed-in function. Checking the request's tool definitions (§8.1, with
`jsonschema`) and reading its `tool_choice` are request validation and live
with the request models (`pyllmd.sim.api.tools`); this module generates the
calls of a reply from what they produced.

`go_json` is written by hand because the arguments string must be byte-equal to
what Go's `encoding/json` writes (sorted keys, `<`, `>`, `&`, U+2028/9 escaped,
floats in ECMAScript form: `5` not `5.0`, `1e+21`, `1e-7`); neither the stdlib
`json` nor orjson can be told to format floats that way.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

STRING_VALUES: tuple[str, ...] = (
    "testing",
    "hello",
    "Boston",
    "sunny",
    "temperature",
    "cloudy",
    "question",
    "Yorick",
    "silence",
    "lifetime",
)
"""The fixed pool a `string` parameter's value is drawn from (upstream's values)."""

TOOL_CALL_ID_PREFIX = "chatcmpl-tool-"
TOKENS_PER_CALL = 3
"""Completion tokens a call costs beyond its arguments (name, id and type, as upstream counts)."""

MAX_GENERATED_VALUES = 10_000
"""Cap on generated argument values per request: a huge `minItems` must not stall the server."""


@dataclass(frozen=True, slots=True)
class FunctionDef:
    """One tool of the request: its `function` object."""

    name: str = ""
    description: str = ""
    parameters: Mapping[str, Any] | None = None

    def as_document(self) -> dict[str, Any]:
        """The object upstream validates: an empty `parameters` is dropped, as Go's omitempty."""
        doc: dict[str, Any] = {"name": self.name}
        if self.parameters:
            doc["parameters"] = self.parameters
        doc["description"] = self.description
        return doc


# --- §8.2 tool_choice ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """`tool_choice`: "none", "auto", "required", or a named function (`mode` "function")."""

    mode: str = "auto"
    name: str = ""


# --- §8.3 arguments ----------------------------------------------------------------


class ToolError(Exception):
    """Tool calls cannot be generated; the shell turns it into upstream's 500."""


class ToolConfig(Protocol):
    """The `--*-tool-call-*` options of the simulator's config (`SimConfig` has them)."""

    @property
    def min_tool_call_integer_param(self) -> int: ...
    @property
    def max_tool_call_integer_param(self) -> int: ...
    @property
    def min_tool_call_number_param(self) -> float: ...
    @property
    def max_tool_call_number_param(self) -> float: ...
    @property
    def min_tool_call_array_param_length(self) -> int: ...
    @property
    def max_tool_call_array_param_length(self) -> int: ...
    @property
    def tool_call_not_required_param_probability(self) -> int: ...
    @property
    def object_tool_call_not_required_field_probability(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ToolLimits:
    """The `--*-tool-call-*` options."""

    min_int: int = 0
    max_int: int = 100
    min_number: float = 0.0
    max_number: float = 100.0
    min_array: int = 1
    max_array: int = 5
    param_probability: int = 50
    field_probability: int = 50

    @classmethod
    def from_config(cls, cfg: ToolConfig) -> ToolLimits:
        """Pick the tool-call options out of the simulator config."""
        return cls(
            cfg.min_tool_call_integer_param,
            cfg.max_tool_call_integer_param,
            cfg.min_tool_call_number_param,
            cfg.max_tool_call_number_param,
            cfg.min_tool_call_array_param_length,
            cfg.max_tool_call_array_param_length,
            cfg.tool_call_not_required_param_probability,
            cfg.object_tool_call_not_required_field_probability,
        )


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One generated call; `tokens` are the tokenizer's tokens of `arguments`."""

    id: str
    name: str
    arguments: str
    tokens: tuple[str, ...]


def completion_tokens(calls: Sequence[ToolCall]) -> int:
    """Usage of a tool-call reply: 3 per call plus its argument tokens."""
    return sum(TOKENS_PER_CALL + len(c.tokens) for c in calls)


def make_tool_calls(
    tools: Sequence[FunctionDef],
    choice: ToolChoice,
    limits: ToolLimits,
    rng: random.Random,
    tokenize: Callable[[str], list[str]],
) -> list[ToolCall]:
    """The calls of one reply (may be empty: then the reply is text).

    Call `tools is not None and choice.mode != "none"` only. Raises ToolError.
    """
    if choice.mode == "function":
        found = next((t for t in tools if t.name == choice.name), None)
        if found is None:
            raise ToolError(
                f"tool with name '{choice.name}' requested in tool_choice but not found in the "
                "tools list"
            )
        tools, least = (found,), 1
    else:
        least = 1 if choice.mode == "required" else 0
    if not tools:
        raise ToolError("no tools available to create tool calls")
    count = rng.randint(least, len(tools)) if len(tools) > least else least
    gen = _ArgumentGenerator(limits, rng)
    calls = []
    for _ in range(count):
        tool = tools[rng.randrange(len(tools))] if len(tools) > 1 else tools[0]
        arguments = go_json(gen.arguments(tool.parameters or {}))
        digits = "".join(str(rng.randint(0, 9)) for _ in range(10))
        calls.append(
            ToolCall(TOOL_CALL_ID_PREFIX + digits, tool.name, arguments, tuple(tokenize(arguments)))
        )
    return calls


class _ArgumentGenerator:
    """Random values that satisfy a parameter schema, within the configured limits."""

    def __init__(self, limits: ToolLimits, rng: random.Random) -> None:
        self.limits = limits
        self.rng = rng
        self.budget = MAX_GENERATED_VALUES

    def arguments(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        return self._fields(parameters, self.limits.param_probability)

    def _fields(self, schema: Mapping[str, Any], probability: int) -> dict[str, Any]:
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        required = schema.get("required")
        needed = set(required) if isinstance(required, list) else set()
        out: dict[str, Any] = {}
        for name, prop in properties.items():
            if name not in needed and not self.rng.random() < probability / 100:
                continue
            out[name] = self._value(prop if isinstance(prop, Mapping) else {})
        return out

    def _value(self, schema: Mapping[str, Any]) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise ToolError(f"tool arguments would exceed {MAX_GENERATED_VALUES} values")
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return _as_go_number(enum[self.rng.randrange(len(enum))])
        kind = schema.get("type")
        lim = self.limits
        if kind == "string":
            return STRING_VALUES[self.rng.randrange(len(STRING_VALUES))]
        if kind == "integer":
            return self.rng.randint(lim.min_int, lim.max_int)
        if kind == "number":
            return self.rng.random() * (lim.max_number - lim.min_number) + lim.min_number
        if kind == "boolean":
            return self.rng.randint(0, 1) == 1
        if kind == "array":
            return self._array(schema)
        if kind == "object":
            return self._fields(schema, lim.field_probability)
        raise ToolError(f"tool parameters of type {kind} are not supported")

    def _array(self, schema: Mapping[str, Any]) -> list[Any]:
        least = _int(schema.get("minItems"), self.limits.min_array)
        most = _int(schema.get("maxItems"), self.limits.max_array)
        if least > most:
            raise ToolError(f"minItems ({least}) is greater than maxItems({most})")
        if least > self.budget:
            raise ToolError(f"tool arguments would exceed {MAX_GENERATED_VALUES} values")
        items = schema.get("items")
        length = self.rng.randint(least, most)
        if isinstance(items, list):  # a tuple of item schemas: one value for each
            return [self._value(i if isinstance(i, Mapping) else {}) for i in items]
        item = items if isinstance(items, Mapping) else {}
        return [self._value(item) for _ in range(length)]


def _int(value: object, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return int(value)


def _as_go_number(value: object) -> object:
    """Enum numbers become floats, as Go decodes every JSON number into float64."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise ToolError(f"enum value {value} is out of range") from None
    return value


# --- §8.4 argument encoding ---------------------------------------------------------


def go_json(value: object) -> str:
    """Compact JSON as Go's encoding/json writes it (see the module docstring)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return _go_string(value)
    if isinstance(value, Mapping):
        items = sorted((str(k), v) for k, v in value.items())
        return "{" + ",".join(f"{_go_string(k)}:{go_json(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    raise ToolError(f"unsupported value of type {type(value).__name__}")


_HTML_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _go_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).translate(_HTML_ESCAPES)


def _go_float(x: float) -> str:
    if not math.isfinite(x):
        raise ToolError(f"unsupported value: {x}")
    shortest = repr(x)
    magnitude = abs(x)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        mantissa, exponent = shortest.split("e")
        if exponent.startswith("-0"):
            exponent = "-" + exponent[2:]
        return f"{mantissa}e{exponent}"
    text = format(Decimal(shortest), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
