"""A small closed-loop HTTP load generator on aiohttp.

Written here because the tools that fit (wrk, hey) cannot read SSE streams
token by token, and the LLM load generators (inference-perf, guidellm) need a
tokenizer download or Python 3.12 (see docs/developer-guide/benchmarks.md).
The client only counts ``data:`` events in raw reads, never parses JSON, so
that it stays cheaper than the server it measures.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field

import aiohttp

DONE = b"data: [DONE]"


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest-rank rule; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def _session(limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, force_close=False, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


@dataclass
class Throughput:
    """Outcome of a fixed-duration closed-loop run."""

    ok: int
    errors: int
    seconds: float

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


async def throughput(
    url: str, body: dict[str, object], concurrency: int, warmup: float, duration: float
) -> Throughput:
    """Requests/s of ``concurrency`` workers posting ``body`` back to back."""
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    counts = {"ok": 0, "errors": 0}
    measuring = False

    async def worker(session: aiohttp.ClientSession, stop_at: float) -> None:
        while time.monotonic() < stop_at:
            try:
                async with session.post(url, data=payload, headers=headers) as resp:
                    await resp.read()
                    good = resp.status == 200
            except aiohttp.ClientError:
                good = False
            if measuring:
                counts["ok" if good else "errors"] += 1

    async with _session(concurrency) as session:
        start = time.monotonic()
        stop_at = start + warmup + duration
        tasks = [asyncio.create_task(worker(session, stop_at)) for _ in range(concurrency)]
        await asyncio.sleep(warmup)
        measuring, began = True, time.monotonic()
        await asyncio.sleep(max(0.0, stop_at - began))
        measuring, ended = False, time.monotonic()
        await asyncio.gather(*tasks)
    return Throughput(counts["ok"], counts["errors"], ended - began)


@dataclass
class StreamRun:
    """Outcome of holding ``concurrency`` SSE streams open for a while."""

    concurrency: int
    gaps: list[float] = field(default_factory=list)  # seconds between token events
    streams: int = 0
    errors: int = 0
    min_open: int = 0

    def itl_ms(self, q: float) -> float:
        return percentile(self.gaps, q) * 1000


@dataclass
class _Window:
    start: float
    end: float

    def __contains__(self, t: float) -> bool:
        return self.start <= t <= self.end


async def _one_stream(
    session: aiohttp.ClientSession,
    url: str,
    payload: bytes,
    window: _Window,
    run: StreamRun,
    open_now: list[int],
) -> None:
    """Read one stream, recording the gap before every token event after the first.

    ``open_now[0]`` counts streams whose response headers have arrived and
    whose body has not ended.
    """
    last: float | None = None
    async with session.post(
        url, data=payload, headers={"Content-Type": "application/json"}
    ) as resp:
        if resp.status != 200:
            await resp.read()
            raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
        open_now[0] += 1
        try:
            async for chunk in resp.content.iter_any():
                now = time.monotonic()
                events = chunk.count(b"data: ") - chunk.count(DONE)
                for _ in range(events):
                    if last is not None and now in window:
                        run.gaps.append(now - last)
                    last = now
        finally:
            open_now[0] -= 1
    run.streams += 1


async def hold_streams(
    url: str,
    body: dict[str, object],
    concurrency: int,
    ramp: float,
    settle: float,
    measure: float,
) -> StreamRun:
    """Open ``concurrency`` streams, spread over ``ramp`` seconds, and read them.

    ``body`` must ask for streams long enough to last past the window (the
    caller sizes ``max_tokens``), so every stream stays open through it. Gaps
    are recorded only inside the window, which starts ``settle`` seconds after
    the last stream was opened, so connection set-up does not count.
    """
    payload = json.dumps(body).encode()
    run = StreamRun(concurrency)
    open_now = [0]
    begin = time.monotonic()
    window = _Window(begin + ramp + settle, begin + ramp + settle + measure)

    async def worker(session: aiohttp.ClientSession, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await _one_stream(session, url, payload, window, run, open_now)
        except (TimeoutError, aiohttp.ClientError):
            run.errors += 1

    async with _session(concurrency) as session:
        tasks = [
            asyncio.create_task(worker(session, ramp * i / concurrency)) for i in range(concurrency)
        ]
        await asyncio.sleep(max(0.0, window.start - time.monotonic()))
        samples: list[int] = []
        while time.monotonic() < window.end:
            samples.append(open_now[0])
            await asyncio.sleep(0.1)
        run.min_open = min(samples, default=0)
        await asyncio.gather(*tasks)
    return run
