"""Shared plugin plumbing: the type/name pair and parameter decoding."""

from __future__ import annotations

from typing import Any

from pyllmd.epp.scheduling.registry import Params


class PluginBase:
    """Every plugin carries its upstream type string and its configured name."""

    TYPE = ""

    def __init__(self, name: str = "") -> None:
        self.type_name = self.TYPE
        self.name = name or self.TYPE

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def params(raw: Any, struct: str) -> Params:
    """Non-strict view of a plugin's `parameters`; `struct` names it in errors."""
    return Params(raw, struct)
