"""In-process simulator fixtures: the real aiohttp app on a loopback socket, real clients."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pyllmd.core.clock import Clock, RealClock, SteppingClock
from pyllmd.core.tokenize import SimpleTokenizer
from pyllmd.sim.config import SimConfig, load_config
from pyllmd.sim.engine.kvcache import EventSink
from pyllmd.sim.run import RUNNER_OPTIONS, build_app


@dataclass
class Sim:
    """A running in-process simulator and clients pointed at it."""

    cfg: SimConfig
    clock: Clock
    server: TestServer
    http: aiohttp.ClientSession
    client: openai.AsyncOpenAI

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def metrics(self) -> str:
        async with self.http.get(self.url + "/metrics") as r:
            return await r.text()

    async def post(self, path: str, body: object, **kw: object) -> aiohttp.ClientResponse:
        resp = await self.http.post(self.url + path, json=body, **kw)  # type: ignore[arg-type]
        await resp.read()
        return resp


SimFactory = Callable[..., Awaitable[Sim]]


@pytest.fixture
async def start_sim() -> AsyncIterator[SimFactory]:
    """Factory: `await start_sim("--mode", "echo", env={...}, clock=...)` → Sim."""
    started: list[Sim] = []

    async def factory(
        *args: str,
        env: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        sink: EventSink | None = None,
    ) -> Sim:
        argv = ["--model", "m", "--seed", "7", *args]
        cfg = load_config(argv, dict(env or {}), 0).config
        clk = clock or SteppingClock()
        server = TestServer(
            build_app(cfg, cfg.port, clk, SimpleTokenizer(), sink),
            host="127.0.0.1",
            **RUNNER_OPTIONS,
        )
        await server.start_server()
        http = aiohttp.ClientSession()
        base = str(server.make_url("/v1"))
        client = openai.AsyncOpenAI(base_url=base, api_key="none", max_retries=0)
        sim = Sim(cfg, clk, server, http, client)
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        await sim.client.close()
        await sim.http.close()
        await sim.server.close()


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, or None if absent."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


@contextlib.contextmanager
def serve_in_thread(args: Sequence[str] = ()) -> Iterator[str]:
    """A real-time simulator on a loopback port, in its own thread and loop, for sync clients."""
    cfg = load_config(["--model", "m", *args], {}, 0).config
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(
        build_app(cfg, cfg.port, RealClock(), SimpleTokenizer()), **RUNNER_OPTIONS
    )
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.run_until_complete(runner.cleanup())
        loop.close()
