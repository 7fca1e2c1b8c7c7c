"""Logging set-up for the entry points: stdlib logging, key=value lines, klog-style verbosity.

Only the CLI calls `setup`; library modules just use `logging.getLogger(__name__)`.
Verbosity follows upstream's `-v`: 1 warning, 2 info (default), 4 debug, 5 trace.
"""

from __future__ import annotations

import logging
import sys

TRACE = 5
logging.addLevelName(TRACE, "TRACE")


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
