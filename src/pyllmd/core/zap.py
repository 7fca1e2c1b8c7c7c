"""controller-runtime's zap flags (`--zap-log-level`, ...): the values Go binaries accept.

The EPP and the P/D sidecar both bind these flags (`zap.Options.BindFlags`);
pflag rejects a value outside each flag's set while parsing, with the texts
below. pyllmd keeps its own log format, so apart from the level they are
validated and otherwise have no effect.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pyllmd.core.gosyntax import quote_go

__all__ = ["ZAP_CHOICES", "zap_error", "zap_verbosity"]

# flag -> (what its error calls a value, accepted values (case-insensitive))
ZAP_CHOICES: dict[str, tuple[str, frozenset[str]]] = {
    "zap-log-level": ("log level", frozenset({"debug", "info", "error", "panic"})),
    "zap-encoder": ("encoder value", frozenset({"json", "console"})),
    "zap-stacktrace-level": ("stacktrace level", frozenset({"info", "error", "panic"})),
    "zap-time-encoding": (
        "time-encoding value",
        frozenset({"epoch", "millis", "nano", "nanos", "iso8601", "rfc3339", "rfc3339nano"}),
    ),
}
_LEVEL_VERBOSITY = {"debug": 4, "info": 2, "error": 1, "panic": 1}


def zap_error(values: Mapping[str, object]) -> str | None:
    """pflag's error for the first zap flag in `values` with a value outside its set."""
    for name, (what, choices) in ZAP_CHOICES.items():
        value = values.get(name)
        if not isinstance(value, str):
            continue
        ok = value.lower() in choices
        if name == "zap-log-level" and not ok:  # an integer > 0 is a debug depth
            ok = re.fullmatch(r"[+-]?[0-9]+", value) is not None and int(value) > 0
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
