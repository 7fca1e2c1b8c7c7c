"""Clock protocol with a real (asyncio) and a virtual (event heap) implementation.

Decision code never reads the wall clock: it is handed a `Clock`. Servers use
`RealClock`; tests and discrete-event runs use `VirtualClock`, where time only
moves when every task is waiting on it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time source plus wall time, with an awaitable sleep."""

    def now(self) -> float:
        """Monotonic seconds, for measuring durations."""
        ...

    def wall(self) -> float:
        """Unix seconds, for timestamps shown to users."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` (non-positive values yield once)."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Wait until `now() >= deadline`; keeps token streams free of drift."""
        ...


class RealClock:
    """Clock backed by the running event loop's monotonic time."""

    def __init__(self) -> None:
        self._offset = time.time() - time.monotonic()

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.monotonic() + self._offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.monotonic()
        await asyncio.sleep(delay if delay > 0 else 0)


class VirtualClock:
    """Clock whose time advances only when `advance()` (or `run_until_idle()`) is called.

    Sleepers park on a heap of deadlines; advancing wakes them in deadline order.
    """

    def __init__(self, start: float = 0.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + max(0.0, seconds))

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (deadline, next(self._seq), fut))
        await fut

    def next_deadline(self) -> float | None:
        """The earliest pending wake-up, if any."""
        while self._heap and self._heap[0][2].cancelled():
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, waking every sleeper due on the way, in order."""
        target = self._now + seconds
        while True:
            await _settle()
            nxt = self.next_deadline()
            if nxt is None or nxt > target:
                break
            self._now = nxt
            while self._heap and self._heap[0][0] <= self._now:
                _, _, fut = heapq.heappop(self._heap)
                if not fut.done():
                    fut.set_result(None)
        self._now = target
        await _settle()


async def _settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


class SteppingClock(VirtualClock):
    """Virtual clock whose sleeps return at once, moving time forward by the sleep.

    With one request in flight, the time a client sees elapse equals the sum of
    the server's sleeps, so latency formulas can be checked exactly and fast.
    """

    async def sleep_until(self, deadline: float) -> None:
        if deadline > self._now:
            self._now = deadline
        await asyncio.sleep(0)
