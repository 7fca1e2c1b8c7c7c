"""Flow control (spec §8, acceptance 63) through a real Envoy, `pyllmd epp` and simulators.

InferencePool mode against the in-process fake API server: InferenceObjective
`chat` gives priority 10, requests without an objective get 0. The pool first
targets a simulator that reports a waiting queue of 10 (`--fake-metrics`),
above `queueDepthThreshold` 1, so every request waits in the EPP (the
ext_proc stream is simply not answered) and the queue-size gauge rises. Then
the pool is switched to a real simulator with one running slot: the EPP
releases requests one at a time as that server drains, highest band first and
first come, first served within a band, and the gauge returns to 0. A second
EPP with a small `maxBytes` and a 2 s TTL shows the 429 and 503 answers, and
that a client giving up takes its request out of the queue.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from pyllmd.core.promtext import Sample, parse_samples
from pyllmd.stack.envoy import EnvoyProcess, envoy_bootstrap
from tests.e2e.harness import ManagedProcess, SimProcess, free_port
from tests.e2e.kubepool import NS, add_objective, add_pool, pool_api, write_kubeconfig
from tests.unit.autoscaler import kubefake_api as api
from tests.unit.autoscaler.kubefake import KubeFake

pytestmark = pytest.mark.e2e

MODEL = "m"
SATURATED = json.dumps({"waiting-requests": 10})
QUEUE_SIZE = "inference_extension_flow_control_queue_size"
DURATION_COUNT = "inference_extension_flow_control_request_queue_duration_seconds_count"
BASE_CONFIG = """\
featureGates: [flowControl]
plugins:
- type: queue-scorer
saturationDetector:
  queueDepthThreshold: 1
"""


@pytest.fixture
async def kube() -> AsyncIterator[KubeFake]:
    async with pool_api() as fake:
        yield fake


def _cluster(kube: KubeFake, port: int) -> None:
    add_pool(kube, [port])
    add_objective(kube, "chat", 10)


class Gateway:
    """`pyllmd epp` (pool mode, given config) and Envoy in front of it."""

    def __init__(self, kube: KubeFake, config: str) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="epp-flow-"))
        kubeconfig = write_kubeconfig(self.work, kube.url)
        grpc_port, health_port, metrics_port = free_port(), free_port(), free_port()
        argv = [
            sys.executable, "-m", "pyllmd", "epp", "--pool-name=pool", f"--pool-namespace={NS}",
            f"--kubeconfig={kubeconfig}", "--bind-address=127.0.0.1",
            f"--grpc-port={grpc_port}", f"--grpc-health-port={health_port}",
            f"--metrics-port={metrics_port}", "--metrics-endpoint-auth=false",
            "--config-text", config,
        ]  # fmt: skip
        self.epp = ManagedProcess("pyllmd-epp", argv, None)
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        listen = free_port()
        bootstrap = envoy_bootstrap(listen, grpc_port, free_port(), health_check=True)
        self.envoy = EnvoyProcess(self.work, bootstrap)
        self.client = AsyncOpenAI(
            base_url=f"http://127.0.0.1:{listen}/v1", api_key="unused", max_retries=0, timeout=30
        )

    async def samples(self) -> list[Sample]:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as s, s.get(self.metrics_url) as r:
            assert r.status == 200
            return list(parse_samples(await r.text()))

    async def wait_for(self, what: str, probe: Callable[[list[Sample]], bool]) -> list[Sample]:
        """Poll `/metrics` until `probe` holds (bounded: 20 s)."""
        samples: list[Sample] = []
        for _ in range(400):
            try:
                samples = await self.samples()
            except (aiohttp.ClientError, AssertionError):
                samples = []
            if samples and probe(samples):
                return samples
            await asyncio.sleep(0.05)
        raise AssertionError(f"EPP never showed {what}: {[s for s in samples if 'flow' in s.name]}")

    async def start(self) -> None:
        await self.wait_for("the pool", lambda s: _value(s, "inference_pool_ready_pods") == 1)
        await self.envoy.start()

    async def complete(self, prompt: str, objective: str = "") -> tuple[str, int]:
        headers = {"x-gateway-inference-objective": objective} if objective else {}
        raw = await self.client.completions.with_raw_response.create(
            model=MODEL, prompt=prompt, max_tokens=2, extra_headers=headers
        )
        return raw.parse().choices[0].text, int(raw.headers["x-inference-port"])

    async def close(self, failed: bool) -> None:
        if failed:
            print(self.epp.describe(tail=100))
            if self.envoy.log_file.exists():
                print(self.envoy.log_file.read_text(errors="replace")[-3000:])
        await self.client.close()
        await self.envoy.stop()
        assert self.epp.stop() == 0


def _value(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def _queued(samples: list[Sample], count: int) -> bool:
    return _value(samples, QUEUE_SIZE) == count


async def test_epp_acc_63_requests_queue_while_saturated_and_leave_by_priority(
    kube: KubeFake, start_sim: Callable[..., SimProcess]
) -> None:
    env = {"POD_NAME": "sim-0"}
    busy = start_sim("--model", MODEL, "--fake-metrics", SATURATED, env=env)
    free = start_sim(
        "--model", MODEL, "--max-num-seqs", "1", "--time-to-first-token", "200ms", env=env
    )
    _cluster(kube, busy.port)
    gw = Gateway(kube, BASE_CONFIG)
    failed = True
    try:
        await gw.start()
        served: list[tuple[str, int]] = []

        async def send(name: str, objective: str = "") -> None:
            _, port = await gw.complete(f"request {name}", objective)
            served.append((name, port))

        tasks = []
        plan = [("low-1", ""), ("low-2", ""), ("high-1", "chat"), ("low-3", ""), ("high-2", "chat")]
        for i, (name, objective) in enumerate(plan, start=1):
            tasks.append(asyncio.create_task(send(name, objective)))
            # one at a time, so the EPP sees them in this order
            await gw.wait_for(f"{i} queued", functools.partial(_queued, count=i))
        samples = await gw.samples()
        assert _value(samples, QUEUE_SIZE, priority="0", target_model_name=MODEL) == 3
        assert _value(samples, QUEUE_SIZE, priority="10", target_model_name=MODEL) == 2
        assert served == []

        kube.update(
            api.INFERENCEPOOLS_V1, NS, "pool", {"spec": {"targetPorts": [{"number": free.port}]}}
        )
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)
        assert [name for name, _ in served] == ["high-1", "high-2", "low-1", "low-2", "low-3"]
        assert {port for _, port in served} == {free.port}
        samples = await gw.wait_for("an empty queue", lambda s: _value(s, QUEUE_SIZE) == 0)
        assert _value(samples, DURATION_COUNT, outcome="Dispatched") == 5
        failed = False
    finally:
        await gw.close(failed)


async def test_epp_acc_63_over_max_bytes_is_429_ttl_is_503_and_gone_clients_leave(
    kube: KubeFake, start_sim: Callable[..., SimProcess]
) -> None:
    busy = start_sim("--model", MODEL, "--fake-metrics", SATURATED, env={"POD_NAME": "sim-0"})
    _cluster(kube, busy.port)
    config = BASE_CONFIG + (
        "flowControl:\n  defaultRequestTTL: 2s\n  defaultPriorityBand: {maxBytes: 200}\n"
    )
    gw = Gateway(kube, config)
    failed = True
    try:
        await gw.start()
        waiting = asyncio.create_task(gw.complete("a short prompt"))
        await gw.wait_for("1 queued", lambda s: _value(s, QUEUE_SIZE) == 1)

        with pytest.raises(openai.RateLimitError) as full:
            await gw.complete("x" * 200)  # its band would go over 200 bytes
        assert "InferencePoolResourceExhausted - request rejected by flow control" in (
            full.value.response.text
        )

        with pytest.raises(openai.InternalServerError) as expired:
            await waiting
        assert expired.value.status_code == 503
        assert "ServiceUnavailable - request timed out in queue: " in expired.value.response.text
        samples = await gw.wait_for("an empty queue", lambda s: _value(s, QUEUE_SIZE) == 0)
        assert _value(samples, DURATION_COUNT, outcome="RejectedCapacity") == 1
        assert _value(samples, DURATION_COUNT, outcome="EvictedTTL") == 1

        with pytest.raises(openai.APITimeoutError):  # the client gives up before the TTL
            await gw.client.with_options(timeout=1.0).completions.create(
                model=MODEL, prompt="gone", max_tokens=2
            )
        samples = await gw.wait_for(
            "the abandoned request dropped",
            lambda s: _value(s, DURATION_COUNT, outcome="EvictedContextCancelled") == 1,
        )
        assert _value(samples, QUEUE_SIZE) == 0
        sim_samples = list(parse_samples(busy.metrics()))
        assert _value(sim_samples, "vllm:request_success_total") == 0  # nothing got through
        failed = False
    finally:
        await gw.close(failed)
