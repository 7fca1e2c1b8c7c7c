"""The request's tools and `tool_choice`, checked and read (spec §8.1, §8.2).

The tool definitions are checked with the `jsonschema` library against a schema
built here from the spec's rules; a bad one is upstream's 400 `Tool validation
failed: ...`. What passes is handed to the engine's tool-call generator
(`pyllmd.sim.engine.toolcalls`) as `FunctionDef`s and a `ToolChoice`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from pyllmd.core.errors import LlmdError
from pyllmd.sim.engine.toolcalls import FunctionDef, ToolChoice

MAX_SCHEMA_DEPTH = 64
"""Deeper `parameters` are refused (400): a hostile body must not exhaust the stack."""

# --- §8.1 validation -------------------------------------------------------------

_SCALAR_TYPES = ("string", "number", "integer", "boolean")
_CONTAINER_TYPES = ("null", "object", "array")


def _when_type(name: str, then: dict[str, Any]) -> dict[str, Any]:
    return {"if": {"properties": {"type": {"const": name}}}, "then": then}


_PARAM: dict[str, Any] = {
    "type": "object",
    "required": ["type"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": [*_SCALAR_TYPES, *_CONTAINER_TYPES]},
        "description": {"type": "string"},
        "enum": {"type": "array", "items": {"type": list(_SCALAR_TYPES)}},
        "properties": {"type": "object", "additionalProperties": {"$ref": "#/$defs/param"}},
        "items": {
            "anyOf": [
                {"$ref": "#/$defs/param"},
                {"type": "array", "items": {"$ref": "#/$defs/param"}},
            ]
        },
        "required": {"type": "array", "items": {"type": "string"}},
        "additionalProperties": {"type": "boolean"},
        "minItems": {"type": "integer", "minimum": 0},
        "maxItems": {"type": "integer", "minimum": 0},
    },
    "allOf": [
        # enum values have the parameter's own type; containers and null take no enum
        *(_when_type(t, {"properties": {"enum": {"items": {"type": t}}}}) for t in _SCALAR_TYPES),
        *(_when_type(t, {"not": {"required": ["enum"]}}) for t in _CONTAINER_TYPES),
        _when_type("array", {"required": ["items"]}),
        _when_type("object", {"required": ["properties"]}),
    ],
}

TOOL_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["name", "description", "parameters"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "parameters": {"$ref": "#/$defs/param"},
    },
    "$defs": {"param": _PARAM},
}
"""What one tool's `function` must look like (spec §8.1)."""

_VALIDATOR = Draft202012Validator(TOOL_SCHEMA)


def validate_tools(tools: Sequence[FunctionDef]) -> None:
    """Raise the 400 `Tool validation failed: ...` for the first invalid tool."""
    for tool in tools:
        if _depth(tool.parameters) > MAX_SCHEMA_DEPTH:
            raise LlmdError(
                400,
                f"Tool validation failed: parameters are nested deeper than {MAX_SCHEMA_DEPTH} "
                "levels",
            )
        error = best_match(_VALIDATOR.iter_errors(tool.as_document()))
        if error is not None:
            where = "/" + "/".join(str(p) for p in error.absolute_path)
            raise LlmdError(400, f"Tool validation failed: at '{where}': {error.message}")


def _depth(value: object, level: int = 0) -> int:
    if level > MAX_SCHEMA_DEPTH:
        return level
    if isinstance(value, Mapping):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level


# --- §8.2 tool_choice ------------------------------------------------------------


def parse_tool_choice(value: object) -> ToolChoice:
    """Read a JSON `tool_choice`; ValueError (a 400 parse error) for unknown object types.

    Any string is accepted (others act as "auto"); `custom` and `allowed_tools` objects
    also act as "auto"; JSON null is refused like an object without a type, as upstream.
    """
    if isinstance(value, str):
        return ToolChoice(value if value in ("none", "required") else "auto")
    if not isinstance(value, dict):
        if value is None:
            raise ValueError("unknown ToolChoice type: ")
        raise ValueError("tool_choice must be a string or an object")
    kind = value.get("type")
    kind = kind if isinstance(kind, str) else ""
    if kind == "function":
        function = value.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if name is not None and not isinstance(name, str):
            raise ValueError("tool_choice function name must be a string")
        return ToolChoice("function", name or "")
    if kind in ("custom", "allowed_tools"):
        return ToolChoice("auto")
    raise ValueError(f"unknown ToolChoice type: {kind}")
