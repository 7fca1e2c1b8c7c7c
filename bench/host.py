"""The line every benchmark report starts with: when it ran, and on what."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime


def last_run(now: datetime | None = None) -> str:
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Last run: {when}; {os.cpu_count()} cores (nproc), {platform.machine()}, "
        f"Python {platform.python_version()}."
    )
