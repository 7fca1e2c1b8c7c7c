"""controller-runtime's zap flags (`--zap-log-level`, ...), declared once for every
command that binds them, and the values each Go binary accepts.

The EPP and the P/D sidecar (built on GIE's controller-runtime) and the autoscaler
(WVA's) bind these flags with `zap.Options.BindFlags`; pflag rejects a value outside
each flag's set while parsing, with the texts below. The two binaries accept
different level names (`FLAVOUR_GIE`, `FLAVOUR_WVA`). pyllmd keeps its own log
format, so apart from the level they are validated and otherwise have no effect.

A command's model includes a zap flag with `zap_setting(name, help)`: the flag's
name, type and default are declared here, the help text (worded per command) there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyllmd.core.flags import FlagKind
from pyllmd.core.gosyntax import quote_go
from pyllmd.core.settings.fields import setting

__all__ = [
    "FLAVOUR_GIE",
    "FLAVOUR_WVA",
    "ZAP_CHOICES",
    "ZAP_FLAGS",
    "ZapFlavour",
    "zap_error",
    "zap_setting",
    "zap_verbosity",
]

# flag -> (value type, default)
ZAP_FLAGS: dict[str, tuple[FlagKind, object]] = {
    "zap-devel": (FlagKind.BOOL, True),
    "zap-encoder": (FlagKind.STRING, ""),
    "zap-log-level": (FlagKind.STRING, ""),
    "zap-stacktrace-level": (FlagKind.STRING, ""),
    "zap-time-encoding": (FlagKind.STRING, ""),
}


def zap_setting(name: str, help: str, rule: str = "") -> Any:
    """A settings-model field for the zap flag `name` (docs group "zap")."""
    kind, default = ZAP_FLAGS[name]
    return setting(default, help, flag=name, kind=kind, group="zap", rule=rule)


@dataclass(frozen=True)
class ZapFlavour:
    """The values one Go binary's zap flags accept.

    `choices`: flag -> (what its error calls a value, accepted values, case-insensitive);
    `level_integer`: the pattern of an integer `--zap-log-level` (a debug depth > 0).
    """

    choices: Mapping[str, tuple[str, frozenset[str]]]
    level_integer: str


_LEVELS_WVA = frozenset(
    {"debug", "-1", "info", "0", "warn", "error", "2", "dpanic", "panic", "fatal"}
)

FLAVOUR_GIE = ZapFlavour(
    {
        "zap-log-level": ("log level", frozenset({"debug", "info", "error", "panic"})),
        "zap-encoder": ("encoder value", frozenset({"json", "console"})),
        "zap-stacktrace-level": ("stacktrace level", frozenset({"info", "error", "panic"})),
        "zap-time-encoding": (
            "time-encoding value",
            frozenset({"epoch", "millis", "nano", "nanos", "iso8601", "rfc3339", "rfc3339nano"}),
        ),
    },
    r"[+-]?[0-9]+",
)
FLAVOUR_WVA = ZapFlavour(
    {
        "zap-log-level": ("log level", _LEVELS_WVA),
        "zap-encoder": ("encoder value", frozenset({"json", "console"})),
        "zap-stacktrace-level": ("stacktrace level", _LEVELS_WVA),
        "zap-time-encoding": (
            "time-encoding value",
            frozenset({"rfc3339nano", "rfc3339", "iso8601", "millis", "nanos", "epoch"}),
        ),
    },
    r"\d+",  # Unicode decimal digits, as int() reads them
)
ZAP_CHOICES = FLAVOUR_GIE.choices
_LEVEL_VERBOSITY = {"debug": 4, "info": 2, "error": 1, "panic": 1}


def zap_error(values: Mapping[str, object], flavour: ZapFlavour = FLAVOUR_GIE) -> str | None:
    """pflag's error for the first zap flag in `values` (flag name -> given value) with a
    value outside its set."""
    for name, (what, choices) in flavour.choices.items():
        value = values.get(name)
        if not isinstance(value, str):
            continue
        ok = value.lower() in choices
        if name == "zap-log-level" and not ok:  # an integer > 0 is a debug depth
            ok = re.fullmatch(flavour.level_integer, value) is not None and int(value) > 0
        if not ok:
            return (
                f"invalid argument {quote_go(value)} for {quote_go('--' + name)} flag: "
                f"invalid {what} {quote_go(value)}"
            )
    return None


def zap_verbosity(level: str, default: int) -> int:
    """The klog-style verbosity a valid `--zap-log-level` sets; `default` when it is empty."""
    if not level:
        return default
    return _LEVEL_VERBOSITY.get(level.lower()) or int(level)
