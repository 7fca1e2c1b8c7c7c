"""Stopping child processes politely: SIGTERM, then SIGKILL after a grace period."""

from __future__ import annotations

import asyncio
import contextlib


async def terminate(proc: asyncio.subprocess.Process | None, grace: float = 10.0) -> None:
    """Terminate `proc` (if still running), killing it when it outlives `grace` seconds."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout=grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
