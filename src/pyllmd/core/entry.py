"""The opening every command shares: parse → `--help`/`--version` → one error line and
exit 1 → logging → run.

Each entry point passes its loader (argv and environment to a validated settings
model, raising HelpRequested, VersionRequested or ConfigError) and what to run with
the result; the texts users see are the same for every command:

* `--help`/`-h`: the usage text on stdout (after the command's description, if any), exit 0;
* `--version`: `pyllmd <version>` on stdout, exit 0;
* a bad flag, variable or file: `<prog>: error: <one line>` on stderr, exit 1 (the
  line's control characters escaped, so a quoted value cannot break it);
* otherwise logging is set up at the loaded verbosity and the command runs; errors
  of the kinds the command names in `errors` are reported the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from pyllmd import __version__
from pyllmd.core import logging as pylog
from pyllmd.core.errors import ConfigError, one_line
from pyllmd.core.flags import HelpRequested, VersionRequested

__all__ = ["error_line", "run_command", "version_text"]

T = TypeVar("T")


def version_text() -> str:
    """What `--version` prints, for every command."""
    return f"pyllmd {__version__}"


def error_line(prog: str, error: BaseException, escape: Callable[[str], str] = one_line) -> None:
    """Print `<prog>: error: <one line>` on stderr (`escape` keeps it one line)."""
    print(f"{prog}: error: {escape(str(error))}", file=sys.stderr)


def run_command(
    prog: str,
    load: Callable[[], T],
    run: Callable[[T], int],
    *,
    verbosity: Callable[[T], int] | None = None,
    description: str = "",
    errors: tuple[type[Exception], ...] = (),
    escape: Callable[[str], str] = one_line,
) -> int:
    """Load the settings, answer `--help`/`--version`/errors, set up logging, run.

    `verbosity`: the klog-style level of the loaded settings (None: logging is left
    as it is, for a command that logs nothing of its own). `errors`: exceptions of
    `run` reported as one error line with exit status 1. `escape`: how an error's
    control characters are escaped (the autoscaler keeps its own notation).
    """
    try:
        loaded = load()
    except HelpRequested as h:
        print(description + h.usage, end="" if h.usage.endswith("\n") else "\n")
        return 0
    except VersionRequested:
        print(version_text())
        return 0
    except ConfigError as e:
        error_line(prog, e, escape)
        return 1
    if verbosity is not None:
        pylog.setup(verbosity(loaded))
    try:
        return run(loaded)
    except errors as e:
        error_line(prog, e, escape)
        return 1
