"""Plugin registry keyed by upstream type string, and Go-style parameter decoding.

Factories decode their `parameters` the way Go's `encoding/json` fills a
struct: keys match field names case-insensitively, unknown keys are ignored,
`null` keeps the default, and only a type mismatch fails (with Go's wording).
Hand-written because no library reproduces those rules and error texts, which
users see in start-up errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pyllmd.epp.scheduling.interfaces import Plugin

# Extension-point role names, as used in plugin-duration metrics labels.
ROLE_FILTER = "Filter"
ROLE_SCORER = "Scorer"
ROLE_PICKER = "Picker"
ROLE_PROFILE_HANDLER = "ProfileHandler"
ROLE_PRE_REQUEST = "PreRequest"
ROLE_RESPONSE_RECEIVED = "ResponseReceived"
ROLE_RESPONSE_COMPLETE = "ResponseComplete"


class ParamError(ValueError):
    """A plugin parameter could not be decoded (Go `json.Unmarshal` wording)."""


@dataclass
class Handle:
    """What a factory may see: the plugins declared before it, by name, in order."""

    plugins: dict[str, Plugin] = field(default_factory=dict)

    def plugin(self, name: str) -> Plugin | None:
        """The plugin instantiated under `name`, if any."""
        return self.plugins.get(name)


Factory = Callable[[str, Any, Handle], Plugin]


class Registry:
    """Factories by upstream plugin type string."""

    def __init__(self) -> None:
        self._factories: dict[str, Factory] = {}

    def register(self, type_name: str, factory: Factory) -> None:
        """Adds a factory; registering a type twice is a programming error."""
        if type_name in self._factories:
            raise ValueError(f"plugin type {type_name!r} registered twice")
        self._factories[type_name] = factory

    def get(self, type_name: str) -> Factory | None:
        """The factory of `type_name`, or None when not registered."""
        return self._factories.get(type_name)

    def types(self) -> list[str]:
        """All registered type strings, in registration order."""
        return list(self._factories)


def roles(plugin: object) -> set[str]:
    """Which extension points a plugin implements (duck-typed, like Go interfaces)."""
    found: set[str] = set()
    if callable(getattr(plugin, "filter", None)):
        found.add(ROLE_FILTER)
    if callable(getattr(plugin, "score", None)):
        found.add(ROLE_SCORER)
    if callable(getattr(plugin, "pick", None)):
        found.add(ROLE_PICKER)
    if callable(getattr(plugin, "pick_profiles", None)) and callable(
        getattr(plugin, "process_results", None)
    ):
        found.add(ROLE_PROFILE_HANDLER)
    if callable(getattr(plugin, "pre_request", None)):
        found.add(ROLE_PRE_REQUEST)
    if callable(getattr(plugin, "response_received", None)):
        found.add(ROLE_RESPONSE_RECEIVED)
    if callable(getattr(plugin, "response_complete", None)):
        found.add(ROLE_RESPONSE_COMPLETE)
    return found


def json_kind(value: object) -> str:
    """The JSON kind Go names in unmarshal errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


class Params:
    """Non-strict view of a plugin's raw `parameters` (None when not given)."""

    def __init__(self, raw: Any, struct: str) -> None:
        self.struct = struct
        if raw is None:
            self._items: dict[str, Any] = {}
            return
        if not isinstance(raw, dict):
            raise ParamError(
                f"json: cannot unmarshal {json_kind(raw)} into Go value of type {struct}"
            )
        self._items = dict(raw)

    @property
    def given(self) -> bool:
        """True when any parameter key was given."""
        return bool(self._items)

    def _lookup(self, key: str) -> Any:
        # Go prefers an exact match, else the last case-insensitive one wins.
        if key in self._items:
            return self._items[key]
        value: Any = None
        for k, v in self._items.items():
            if k.lower() == key.lower():
                value = v
        return value

    def _mismatch(self, key: str, value: object, go_type: str) -> ParamError:
        kind = json_kind(value)
        shown = f"number {value}" if kind == "number" and go_type == "int" else kind
        return ParamError(
            f"json: cannot unmarshal {shown} into Go struct field {self.struct}.{key} "
            f"of type {go_type}"
        )

    def get_int(self, key: str, default: int) -> int:
        """An integer field (a number with a fraction is a mismatch, as in Go)."""
        value = self._lookup(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._mismatch(key, value, "int")
        if isinstance(value, float) and not value.is_integer():
            raise self._mismatch(key, value, "int")
        return int(value)

    def get_float(self, key: str, default: float) -> float:
        """A float64 field."""
        value = self._lookup(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._mismatch(key, value, "float64")
        return float(value)

    def get_bool(self, key: str, default: bool) -> bool:
        """A bool field."""
        value = self._lookup(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._mismatch(key, value, "bool")
        return value

    def get_str(self, key: str, default: str) -> str:
        """A string field."""
        value = self._lookup(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self._mismatch(key, value, "string")
        return value

    def get_str_list(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        """A []string field."""
        value = self._lookup(key)
        if value is None:
            return default
        if not isinstance(value, list):
            raise self._mismatch(key, value, "[]string")
        for item in value:
            if item is not None and not isinstance(item, str):
                raise self._mismatch(key, item, "string")
        return tuple(item or "" for item in value)

    def get_str_map(self, key: str) -> dict[str, str]:
        """A map[string]string field."""
        value = self._lookup(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._mismatch(key, value, "map[string]string")
        out: dict[str, str] = {}
        for k, v in value.items():
            if v is not None and not isinstance(v, str):
                raise self._mismatch(key, v, "string")
            out[str(k)] = v or ""
        return out

    def get_objects(self, key: str) -> list[Mapping[str, Any]]:
        """A slice-of-struct field, items returned raw for nested decoding."""
        value = self._lookup(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._mismatch(key, value, "[]struct")
        for item in value:
            if item is not None and not isinstance(item, dict):
                raise self._mismatch(key, item, "struct")
        return [item or {} for item in value]
