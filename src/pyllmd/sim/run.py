"""Composition root of the simulator: builds each rank's objects and runs the listeners.

`pyllmd sim` and `llm-d-inference-sim` call `run` once the config is loaded. Each
rank is the decision core (`engine.Engine`, with its text, KV-cache and latency
models) inside the shell (`server`: the completion flow, HTTP and gRPC surfaces,
metrics, KV-event publisher, TLS and the port multiplexer).

Data parallel (spec §10.4): `--data-parallel-size N` runs N full ranks in one
process on `port` .. `port + N - 1`, each with its own engine, queue, metrics, KV
cache and KV-event publisher (own sequence numbers). Beyond upstream, each rank
draws from its own random stream (seed + rank; upstream's ranks all repeat one
stream) and its events carry its own rank (upstream: always 0).

Shutdown (SIGTERM or SIGINT), bounded by `--shutdown-timeout` (a pyllmd
extension; upstream waits for every stream): the listeners stop accepting,
new completion requests get 503, and the requests in flight (REST and gRPC)
may finish until the timeout. Those still running then end with an error
(`serving.CompletionService.abort_in_flight`) and the process exits about a
second later. A second signal ends the wait at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web

from pyllmd.core.clock import Clock, RealClock
from pyllmd.core.errors import ConfigError
from pyllmd.core.heap import freeze_heap
from pyllmd.core.metricset import CollectorFamily, Family
from pyllmd.core.tokenize import Tokenizer, load_tokenizer
from pyllmd.sim.batchspec import EngineSpec, build_engine_spec
from pyllmd.sim.config import SimConfig
from pyllmd.sim.dataset.lookup import Dataset
from pyllmd.sim.dataset.store import DatasetStore
from pyllmd.sim.engine import Engine
from pyllmd.sim.engine.kvcache import EventSink, KVCache
from pyllmd.sim.engine.textgen import RandomText
from pyllmd.sim.server.batchloop import BatchLoop, KVEvents
from pyllmd.sim.server.grpcapi import serve_grpc
from pyllmd.sim.server.http import SimHTTP
from pyllmd.sim.server.kvevents import KVEventPublisher, PublisherError, event_rank, topic
from pyllmd.sim.server.metrics import SimMetrics
from pyllmd.sim.server.portmux import PortMux
from pyllmd.sim.server.serving import ABORT_WRITE_TIMEOUT, CompletionService
from pyllmd.sim.server.tls import TLSSetupError, server_ssl_context

log = logging.getLogger(__name__)

# Cancel a handler when its client disconnects, as vLLM aborts such requests:
# a queued request leaves the queue and a running one frees its worker.
RUNNER_OPTIONS: dict[str, Any] = {"handler_cancellation": True, "access_log": None}
# After the drain, the time aiohttp gives any other handler before cancelling it.
CLOSE_GRACE = 1.0


SERVICE = web.AppKey("completion-service", CompletionService)


class StartupError(Exception):
    """The server could not start (e.g. the port is taken); the message is one line."""


def build_app(
    cfg: SimConfig,
    port: int,
    clock: Clock,
    tokenizer: Tokenizer,
    sink: EventSink | None = None,
    rank: int = 0,
) -> web.Application:
    """One rank: its own engine, KV cache (events go to `sink`), metrics and random stream."""
    rng = random.Random(cfg.seed + rank)
    metrics = SimMetrics(cfg, clock.wall)
    if isinstance(sink, KVEventPublisher):
        metrics.registry.add(sink.dropped_family(cfg.display_model))
    batch_mode = cfg.latency_calculator == "batch"  # the batch engine has its own KV blocks
    kv = (
        KVCache(cfg.kv_cache_size, cfg.block_size, cfg.hash_seed, sink=sink)
        if cfg.enable_kvcache and not batch_mode
        else None
    )
    text = random_text(cfg, tokenizer)  # opens --dataset-path (ConfigError)
    engine = Engine(cfg, rng, text, kv)
    events = sink if cfg.enable_kvcache else None
    batch = batch_loop(cfg, clock, metrics, events) if batch_mode else None
    service = CompletionService(cfg, port, clock, rng, engine, metrics, tokenizer, batch)
    app = SimHTTP(cfg, clock, metrics, tokenizer, service).app()
    app[SERVICE] = service

    async def close_dataset(_app: web.Application) -> None:
        text.close()

    app.on_cleanup.append(close_dataset)
    if batch is not None:

        async def stop_batch(_app: web.Application) -> None:
            await batch.close()

        app.on_cleanup.append(stop_batch)
    return app


TRANSFER_SETTINGS = (
    "kv_cache_transfer_latency",
    "kv_cache_transfer_latency_std_dev",
    "kv_cache_transfer_time_per_token",
    "kv_cache_transfer_time_std_dev",
)
"""The `--kv-cache-transfer-*` settings: when one is given, it times a P/D KV transfer."""


def batch_engine_spec(cfg: SimConfig) -> EngineSpec:
    """The batch model of this pod, built as `pyllmd simulate` builds a variant's pods
    (ConfigError, one line, when it cannot run: unknown accelerator, model too large...)."""
    given = cfg.model_fields_set
    return build_engine_spec(cfg, "kv_cache_size" in given, "max_waiting_queue_length" in given)


def batch_loop(
    cfg: SimConfig, clock: Clock, metrics: SimMetrics, sink: EventSink | None = None
) -> BatchLoop:
    """The rank's step loop over the batch engine; KV usage is published after each step,
    KV events (when `sink` is given) as blocks fill and are reused."""
    spec = batch_engine_spec(cfg)
    events = KVEvents(sink, spec.scheduler.block_size, cfg.hash_seed) if sink is not None else None
    loop = BatchLoop(
        spec.scheduler,
        spec.step.time,
        clock,
        spec.profile.first_token_s,
        spec.profile.last_token_s,
        events=events,
    )
    if spec.transfer is not None and not cfg.model_fields_set.intersection(TRANSFER_SETTINGS):
        loop.transfer_s = spec.transfer.seconds  # P/D: KV bytes over the GPU's network
    model = cfg.display_model
    info = metrics.registry.families["vllm:cache_config_info"]  # the engine's block count
    info.remove(str(cfg.block_size), str(cfg.kv_cache_size))
    info.gauge(str(cfg.block_size), str(spec.scheduler.num_blocks)).set(1)
    metrics.registry.add(
        CollectorFamily(
            "vllm:num_preemptions_total",
            "counter",
            "Cumulative number of preemptions from the engine.",
            ("model_name",),
            lambda: [((model,), float(loop.engine.preemptions))],
        )
    )
    iterations = metrics.registry.add(
        Family(
            "vllm:iteration_tokens_total",
            "histogram",
            "Number of tokens per engine step.",
            ("model_name",),
            ITERATION_TOKEN_BUCKETS,
        )
    ).histogram(model)

    def on_step(_engine: object) -> None:
        metrics.set_kv_usage(loop.kv_usage)
        iterations.observe(loop.last_tokens)

    loop.on_step = on_step
    loop.on_loras = metrics.lora_info  # vllm:lora_requests_info, as the other calculators
    return loop


# vLLM v1's buckets of vllm:iteration_tokens_total
ITERATION_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


def random_text(cfg: SimConfig, tokenizer: Tokenizer) -> RandomText:
    """The sentence pool, plus the `--dataset-path` file in random mode (ConfigError if
    the file is unusable, naming the flag as upstream does)."""
    if cfg.mode == "echo" or not cfg.dataset_path:
        return RandomText(tokenizer)
    try:
        store = DatasetStore.open(cfg.dataset_path, cfg.dataset_table_name, cfg.dataset_in_memory)
    except ConfigError as e:
        raise ConfigError(f"--dataset-path: {e}") from None
    return RandomText(tokenizer, Dataset(store))


async def serve(cfg: SimConfig, host: str, stop: asyncio.Event | None = None) -> None:
    """Listen on `port + rank` for every data-parallel rank until `stop` is set or a signal."""
    clock = RealClock()
    tokenizer = load_tokenizer(cfg.model, cfg.tokenizers_cache_dir)  # local files only
    stop = stop or asyncio.Event()
    force = asyncio.Event()  # a second signal: stop draining
    _on_signals(stop, force)
    try:
        tls = server_ssl_context(cfg)
    except TLSSetupError as e:
        raise StartupError(str(e)) from None
    ranks = _Ranks()
    try:
        # Every rank's port is bound before any private gRPC port is chosen, so the
        # kernel cannot hand a later rank's port to an earlier rank's gRPC server.
        for rank in range(cfg.data_parallel_size):
            ranks.socks.append(_bind(host, cfg.port + rank))
        for rank in range(cfg.data_parallel_size):
            await ranks.start(cfg, host, rank, clock, tokenizer, tls)
        freeze_heap()  # start-up objects never die: keep them out of every collection
        await stop.wait()
        await drain(cfg.shutdown_timeout, ranks.services, ranks.muxes, ranks.grpc_servers, force)
    finally:
        await ranks.close()


def _on_signals(stop: asyncio.Event, force: asyncio.Event) -> None:
    """SIGINT / SIGTERM set `stop`; a second one sets `force` too."""

    def on_signal() -> None:
        if stop.is_set():
            force.set()
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)


@dataclass
class _Ranks:
    """The listening parts of every rank, kept for the drain and the close."""

    runners: list[web.AppRunner] = field(default_factory=list)
    muxes: list[PortMux] = field(default_factory=list)
    grpc_servers: list[grpc.aio.Server] = field(default_factory=list)
    publishers: list[KVEventPublisher] = field(default_factory=list)
    services: list[CompletionService] = field(default_factory=list)
    socks: list[socket.socket] = field(default_factory=list)

    async def start(
        self,
        cfg: SimConfig,
        host: str,
        rank: int,
        clock: Clock,
        tokenizer: Tokenizer,
        tls: ssl.SSLContext | None,
    ) -> None:
        """Build rank `rank` and serve it on its socket (bound beforehand)."""
        port = cfg.port + rank
        publisher = await start_publisher(cfg, rank, clock)
        if publisher is not None:
            self.publishers.append(publisher)
        app = build_app(cfg, port, clock, tokenizer, publisher, rank)
        self.services.append(app[SERVICE])
        runner = web.AppRunner(app, shutdown_timeout=CLOSE_GRACE, **RUNNER_OPTIONS)
        await runner.setup()
        self.runners.append(runner)
        grpc_server, grpc_port = await serve_grpc(app[SERVICE], clock)
        self.grpc_servers.append(grpc_server)
        self.muxes.append(_mux(self.socks[rank], runner, tls, grpc_port))
        label = event_rank(cfg.data_parallel_size, cfg.data_parallel_rank, rank)
        scheme = "https" if tls is not None else "http"
        log.info("listening host=%s port=%d scheme=%s rank=%d", host, port, scheme, label)

    async def close(self) -> None:
        """Listeners first; then the KV events of the last requests are flushed (bounded)."""
        for mux in self.muxes:
            await mux.close()
        for runner in self.runners:
            await runner.cleanup()
        for server in self.grpc_servers:
            await server.stop(None)
        for sock in self.socks:  # those no mux took over (start-up failed part-way)
            sock.close()
        await asyncio.gather(*(p.close() for p in self.publishers))


def abort_message(timeout: float) -> str:
    """The error of a request the shutdown ended (HTTP 503)."""
    return f"the server shut down before the request finished (--shutdown-timeout {timeout:g}s)"


async def drain(
    timeout: float,
    services: list[CompletionService],
    muxes: list[PortMux],
    grpc_servers: list[grpc.aio.Server],
    force: asyncio.Event,
) -> None:
    """Let the requests in flight finish for at most `timeout` s (or until `force`), then
    end the rest with an error; new connections are refused and new requests get 503."""
    for mux in muxes:
        await mux.stop_accepting()
    for service in services:
        service.start_drain()
    grpc_stops = [asyncio.create_task(server.stop(timeout)) for server in grpc_servers]
    busy = sum(s.in_flight for s in services)
    log.info("shutting down: %d requests in flight, waiting at most %gs", busy, timeout)
    idle = asyncio.ensure_future(asyncio.gather(*(s.wait_idle() for s in services)))
    forced = asyncio.ensure_future(force.wait())
    await asyncio.wait((idle, forced), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    forced.cancel()
    if not idle.done():
        ended = sum(s.abort_in_flight(abort_message(timeout)) for s in services)
        log.warning("shutting down: ended %d unfinished requests with an error", ended)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ABORT_WRITE_TIMEOUT + CLOSE_GRACE):
                await asyncio.shield(idle)
    idle.cancel()
    if force.is_set():
        for server in grpc_servers:
            await server.stop(None)
    await asyncio.gather(*grpc_stops, return_exceptions=True)


async def start_publisher(cfg: SimConfig, rank: int, clock: Clock) -> KVEventPublisher | None:
    """The rank's KV-event publisher, connected; None when events are not published."""
    if not cfg.enable_kvcache or not cfg.zmq_endpoint:
        return None
    publisher = KVEventPublisher(
        cfg.zmq_endpoint,
        topic(cfg.ip, cfg.model),
        event_rank(cfg.data_parallel_size, cfg.data_parallel_rank, rank),
        cfg.event_batch_size,
        clock,
        connect_attempts=cfg.zmq_max_connect_attempts,
    )
    try:
        await publisher.start()
    except PublisherError as e:
        raise StartupError(str(e)) from None
    return publisher


def _bind(host: str, port: int) -> socket.socket:
    """A listening IPv4 socket; a failure is a one-line StartupError naming the flag."""
    try:
        socket.getaddrinfo(host or None, port, socket.AF_INET, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:  # not an IPv4 address or resolvable name
        reason = e.strerror if isinstance(e, socket.gaierror) else str(e)
        raise StartupError(f"--host: cannot listen on '{host}': {reason}") from None
    try:
        return socket.create_server((host, port), backlog=4096)
    except OSError as e:  # in use, or a privileged port
        raise StartupError(f"--port: cannot listen on {host}:{port}: {e.strerror or e}") from None


def _mux(
    sock: socket.socket, runner: web.AppRunner, tls: ssl.SSLContext | None, grpc_port: int
) -> PortMux:
    """REST (over `tls` when set) and cleartext gRPC on one port, as upstream (spec §2.1)."""
    assert runner.server is not None  # set up
    mux = PortMux(sock, runner.server, ("127.0.0.1", grpc_port), tls)
    mux.start()
    return mux


def run(cfg: SimConfig, host: str) -> None:
    """Run the simulator in the foreground (uvloop when available)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(cfg, host))
    else:
        uvloop.run(serve(cfg, host))
