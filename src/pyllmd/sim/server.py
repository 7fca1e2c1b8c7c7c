"""Composition root of the simulator: builds each rank's objects and runs the listeners."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import signal
from typing import Any

from aiohttp import web

from pyllmd.core.clock import Clock, RealClock
from pyllmd.sim.config import SimConfig
from pyllmd.sim.engine import Engine
from pyllmd.sim.http import SimHTTP
from pyllmd.sim.kvcache import EventSink, KVCache
from pyllmd.sim.metrics import SimMetrics
from pyllmd.sim.serving import CompletionService
from pyllmd.sim.textgen import RandomText
from pyllmd.sim.tokenizer import SimpleTokenizer

log = logging.getLogger(__name__)

# Cancel a handler when its client disconnects, as vLLM aborts such requests:
# a queued request leaves the queue and a running one frees its worker.
RUNNER_OPTIONS: dict[str, Any] = {"handler_cancellation": True, "access_log": None}


class StartupError(Exception):
    """The server could not start (e.g. the port is taken); the message is one line."""


def build_app(
    cfg: SimConfig,
    port: int,
    clock: Clock,
    tokenizer: SimpleTokenizer,
    sink: EventSink | None = None,
) -> web.Application:
    """One rank: its own engine, KV cache (events go to `sink`), metrics and random stream."""
    rng = random.Random(cfg.seed)
    metrics = SimMetrics(cfg, clock.wall)
    kv = (
        KVCache(cfg.kv_cache_size, cfg.block_size, cfg.hash_seed, sink=sink)
        if cfg.enable_kvcache
        else None
    )
    engine = Engine(cfg, rng, RandomText(tokenizer), kv)
    service = CompletionService(cfg, port, clock, rng, engine, metrics, tokenizer)
    return SimHTTP(cfg, clock, metrics, tokenizer, service).app()


async def serve(cfg: SimConfig, host: str, stop: asyncio.Event | None = None) -> None:
    """Listen on `port + rank` for every data-parallel rank until `stop` is set or a signal."""
    clock = RealClock()
    tokenizer = SimpleTokenizer()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    runners: list[web.AppRunner] = []
    try:
        for rank in range(cfg.data_parallel_size):
            port = cfg.port + rank
            runner = web.AppRunner(build_app(cfg, port, clock, tokenizer), **RUNNER_OPTIONS)
            await runner.setup()
            runners.append(runner)
            try:
                await web.TCPSite(runner, host, port, backlog=4096).start()
            except OSError as e:
                raise StartupError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
            log.info("listening host=%s port=%d rank=%d", host, port, rank)
        gc.collect()
        gc.freeze()  # start-up objects never die: keep them out of every collection
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()


def run(cfg: SimConfig, host: str) -> None:
    """Run the simulator in the foreground (uvloop when available)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(cfg, host))
    else:
        uvloop.run(serve(cfg, host))
