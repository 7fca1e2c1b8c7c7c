"""The autoscaler's metrics source: a real simulator, scraped by a real Prometheus on https."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import aiohttp
import pytest

from pyllmd.autoscaler.collect.collector import CollectionResult
from pyllmd.autoscaler.collect.prometheus import (
    PrometheusClient,
    PrometheusMetricsSource,
    PrometheusOptions,
)
from pyllmd.autoscaler.decide.model import ModelGroup, VariantState
from tests.e2e.harness import PrometheusServer, SimProcess

pytestmark = pytest.mark.e2e

MODEL, NS, POD, VA = "e2e/model", "llm-d-e2e", "sim-decode-0", "sim-decode"


async def hold_requests(base_url: str, n: int) -> list[asyncio.Task[None]]:
    """Start `n` completions that stay in flight (long TTFT) until cancelled."""

    async def one(session: aiohttp.ClientSession) -> None:
        body = {"model": MODEL, "prompt": "a prompt long enough to fill a block " * 4}
        async with session.post(f"{base_url}/v1/completions", json=body) as resp:
            await resp.read()

    session = aiohttp.ClientSession()
    tasks = [asyncio.create_task(one(session)) for _ in range(n)]
    closer = asyncio.create_task(_close_after(session, tasks))
    return [*tasks, closer]


async def _close_after(session: aiohttp.ClientSession, tasks: list[asyncio.Task[None]]) -> None:
    try:
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await session.close()


async def test_collects_simulator_kv_and_queue_through_https_prometheus(
    start_sim: Callable[..., SimProcess],
    prometheus: Callable[..., PrometheusServer],
) -> None:
    sim = start_sim(
        "--model", MODEL, "--max-num-seqs", "1", "--time-to-first-token", "60s",
        "--enable-kvcache", "--kv-cache-size", "16", "--zmq-endpoint", "",
        env={"POD_IP": "127.0.0.1"},
    )  # fmt: skip
    target = sim.base_url.removeprefix("http://")
    prom = prometheus([target], tls=True, target_labels={target: {"namespace": NS, "pod": POD}})
    assert prom.url.startswith("https://") and prom.ca_file is not None
    tasks = await hold_requests(sim.base_url, 3)  # one running, two waiting
    group = ModelGroup(MODEL, NS, (VariantState(VA, NS, MODEL, accelerator="H100", cost=5.0),))
    opts = PrometheusOptions(base_url=prom.url, ca_cert_path=str(prom.ca_file))
    result: CollectionResult | None = None
    try:
        async with PrometheusClient(opts) as client:
            await client.validate_connectivity()
            source = PrometheusMetricsSource(client)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                result = await source.collect(group, {POD: VA})
                # wait for the collection that shows both the queue and the running request's
                # blocks (one smoke run collected the queue of 2 with no block yet)
                if (
                    result.status == "ok"
                    and result.replicas[0].queue_length == 2
                    and result.replicas[0].kv_usage > 0
                ):
                    break
                await asyncio.sleep(0.25)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
    assert result is not None and result.status == "ok", result
    (replica,) = result.replicas
    assert (replica.pod, replica.variant, replica.namespace) == (POD, VA, NS)
    assert (replica.accelerator, replica.cost, replica.queue_length) == ("H100", 5.0, 2)
    assert 0 < replica.kv_usage <= 1
