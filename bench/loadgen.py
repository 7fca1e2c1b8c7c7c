"""A small load generator: closed-loop requests/s (aiohttp) and SSE stream timing.

Written here because the tools that fit (wrk, hey) cannot time SSE events one
by one, and the LLM load generators (inference-perf, guidellm) need a tokenizer
download or Python 3.12 (see docs/developer-guide/benchmarks.md). The stream
reader is a bare asyncio protocol that counts ``data:`` events in raw reads and
never parses JSON, so that it stays much cheaper than the server it measures.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

import aiohttp

DONE = b"data: [DONE]"
STREAM_TIMEOUT = 60.0  # seconds; bounds a stream the server never ends


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
    """Outcome of running ``concurrency`` SSE streams at once for a while."""

    concurrency: int
    gaps: list[float] = field(default_factory=list)  # seconds between token events
    streams: int = 0
    errors: int = 0
    min_open: int = 0
    ttfts: list[float] = field(default_factory=list)  # seconds, request sent -> first event

    def itl_ms(self, q: float) -> float:
        return percentile(self.gaps, q) * 1000

    def ttft_ms(self, q: float) -> float:
        return percentile(self.ttfts, q) * 1000


@dataclass
class _Window:
    start: float
    end: float

    def __contains__(self, t: float) -> bool:
        return self.start <= t <= self.end


class _StreamProtocol(asyncio.Protocol):
    """One streaming request on its own connection, read in ``data_received``.

    A plain protocol callback per TCP read costs a few microseconds, where an
    aiohttp response iterator costs a coroutine wake-up per chunk; at thousands
    of streams that difference decides whether the client or the server is
    measured. Token events are counted as ``data: `` prefixes (a 5-byte carry
    catches one split across reads); chunked-encoding size lines never match.
    The time from sending the request to the first event is recorded as TTFT
    (every event is a token for text completions: there is no role chunk).
    """

    def __init__(self, request: bytes, window: _Window, run: StreamRun, open_now: list[int]):
        self.request = request
        self.window = window
        self.run = run
        self.open_now = open_now
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.status = 0
        self.carry = b""
        self.last: float | None = None
        self.sent = 0.0
        self.finished = False
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, so no isinstance check
        self.transport = cast(asyncio.WriteTransport, transport)
        self.sent = time.monotonic()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.status:
            self.status = int(data[9:12]) if data.startswith(b"HTTP/1.") else -1
            if self.status != 200:
                self._finish()
                return
            self.open_now[0] += 1
        buf = self.carry + data
        self.carry = buf[-5:]
        events = buf.count(b"data: ") - buf.count(DONE)
        for _ in range(events):
            if now in self.window:
                if self.last is None:
                    self.run.ttfts.append(now - self.sent)
                else:
                    self.run.gaps.append(now - self.last)
            self.last = now
        if DONE in buf:
            self.finished = True
            self._finish()

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.status == 200:
            self.open_now[0] -= 1
        if not self.done.done():
            self.done.set_result(None)


async def _one_stream(
    host: str, port: int, request: bytes, window: _Window, run: StreamRun, open_now: list[int]
) -> None:
    """Run one stream to its end; count it, or count an error."""
    loop = asyncio.get_running_loop()
    proto = _StreamProtocol(request, window, run, open_now)
    try:
        await loop.create_connection(lambda: proto, host, port)
        await asyncio.wait_for(proto.done, STREAM_TIMEOUT)
    except (OSError, TimeoutError):
        proto._finish()
        run.errors += 1
        return
    if proto.status == 200 and proto.finished:
        run.streams += 1
    else:
        run.errors += 1


def _post_request(url: str, body: dict[str, object]) -> tuple[str, int, bytes]:
    """Host, port and the raw HTTP/1.1 request bytes of a JSON POST."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    payload = json.dumps(body).encode()
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    return host, port, head.encode() + payload


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
    host, port, request = _post_request(url, body)
    run = StreamRun(concurrency)
    open_now = [0]
    begin = time.monotonic()
    window = _Window(begin + ramp + settle, begin + ramp + settle + measure)

    async def worker(delay: float) -> None:
        await asyncio.sleep(delay)
        await _one_stream(host, port, request, window, run, open_now)

    tasks = [asyncio.create_task(worker(ramp * i / concurrency)) for i in range(concurrency)]
    await asyncio.sleep(max(0.0, window.start - time.monotonic()))
    samples: list[int] = []
    while time.monotonic() < window.end:
        samples.append(open_now[0])
        await asyncio.sleep(0.1)
    run.min_open = min(samples, default=0)
    await asyncio.gather(*tasks)
    return run


async def repeat_streams(
    url: str, body: dict[str, object], concurrency: int, warmup: float, duration: float
) -> StreamRun:
    """A closed loop of ``concurrency`` workers, each running one stream after another.

    Workers start new streams until ``warmup + duration`` seconds have passed;
    TTFTs and gaps are recorded only for events inside the last ``duration``
    seconds of that span, so the first (cold) streams do not count.
    """
    host, port, request = _post_request(url, body)
    run = StreamRun(concurrency)
    open_now = [0]
    begin = time.monotonic()
    window = _Window(begin + warmup, begin + warmup + duration)

    async def worker() -> None:
        while time.monotonic() < window.end:
            await _one_stream(host, port, request, window, run, open_now)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return run
