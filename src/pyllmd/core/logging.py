"""Logging: klog's flags as the commands declare them, and the set-up the entry points do.

stdlib logging, key=value lines, klog-style verbosity. Only the entry points
(`core/entry.py`) call `setup`; library modules just use `logging.getLogger(__name__)`.
Verbosity follows upstream's `-v`: 1 warning, 2 info (default), 4 debug, 5 trace.

klog's `-v`/`--v` is declared here once (`verbosity`) and included by every command
that has it, each with its own help text; the simulator also accepts klog's other Go
flags (`klog_flags`), which have no effect.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pyllmd.core.flags import FlagKind, FlagSpec
from pyllmd.core.settings.fields import UNSET, setting

__all__ = [
    "KLOG_V_HELP",
    "TRACE",
    "klog_flags",
    "level_for_verbosity",
    "setup",
    "verbosity",
]

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

KLOG_V_HELP = "log verbosity: 1 warning, 2 info, 4 debug, 5 trace"


def verbosity(
    help: str,
    *,
    default: int = 2,
    shorthand: bool = True,
    flag_default: object = UNSET,
    env: str = "",
    key: str = "",
    group: str = "",
    alias: str | None = None,
) -> Any:
    """klog's verbosity flag, `-v N`/`--v N` (an int), as a settings-model field."""
    return setting(
        default,
        help,
        flag="v",
        kind=FlagKind.INT,
        shorthand="v" if shorthand else "",
        flag_default=flag_default,
        env=(env,) if env else (),
        key=key,
        group=group,
        alias=alias,
    )


_B, _S, _I = FlagKind.BOOL, FlagKind.STRING, FlagKind.INT
_KLOG_OTHERS: tuple[FlagSpec, ...] = (
    FlagSpec("add_dir_header", _B, False, "klog: put the source directory in log headers"),
    FlagSpec("alsologtostderr", _B, False, "klog: copy file logs to stderr"),
    FlagSpec("log_backtrace_at", _S, ":0", "klog: print a stack trace at file:line"),
    FlagSpec("log_dir", _S, "", "klog: directory for log files"),
    FlagSpec("log_file", _S, "", "klog: log file path"),
    FlagSpec("log_file_max_size", _I, 1800, "klog: log file size limit in MB"),
    FlagSpec("logtostderr", _B, True, "klog: log to stderr rather than files"),
    FlagSpec("one_output", _B, False, "klog: write each entry to one severity file only"),
    FlagSpec("skip_headers", _B, False, "klog: omit entry headers"),
    FlagSpec("skip_log_headers", _B, False, "klog: omit log file headers"),
    FlagSpec("stderrthreshold", _S, "2", "klog: lowest severity copied to stderr"),
    FlagSpec("vmodule", _S, "", "klog: per-file verbosity, pattern=N,..."),
)


def klog_flags(default_v: int = 2, *, with_v: bool = True) -> tuple[FlagSpec, ...]:
    """klog's Go flags as pflag exposes them, sorted by name (accepted; only `v` is
    used). `with_v=False` leaves out `v`, for a command whose model declares it."""
    flags = _KLOG_OTHERS
    if with_v:
        v = FlagSpec("v", FlagKind.INT, default_v, KLOG_V_HELP, shorthand="v")
        flags = (*flags, v)
    return tuple(sorted(flags, key=lambda s: s.name))


def level_for_verbosity(v: int) -> int:
    """The stdlib level that shows what klog shows at `-v v`."""
    if v >= 5:
        return TRACE
    if v >= 4:
        return logging.DEBUG
    if v >= 2:
        return logging.INFO
    return logging.WARNING


def setup(v: int = 2) -> None:
    """Configure the root logger once, on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level_for_verbosity(v))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
