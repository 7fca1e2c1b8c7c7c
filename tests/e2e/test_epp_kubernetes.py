"""`pyllmd epp` in InferencePool mode behind a real Envoy: sheddable requests and `/metrics` auth.

The Kubernetes API is the in-process fake (real resource shapes over HTTP);
the EPP is the real CLI reading it through a kubeconfig file. One "pod" on
127.0.0.1 carries the three simulators as the pool's target ports (ranks).
The simulators report a waiting queue of 10 (`--fake-metrics`), above the
saturation detector's default threshold of 5, so the pool is saturated:
a request whose InferenceObjective has priority −1 is shed with 429 (spec
§8, acceptance 41) while priority ≥ 0 requests are still served.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from pyllmd.core.promtext import parse_samples
from pyllmd.stack.envoy import EnvoyProcess, envoy_bootstrap
from tests.e2e.harness import ManagedProcess, SimProcess, free_port
from tests.e2e.kubepool import NS, add_objective, add_pool, pool_api, write_kubeconfig
from tests.unit.autoscaler.kubefake import KubeFake

pytestmark = pytest.mark.e2e

MODEL = "m"
SATURATED = json.dumps({"waiting-requests": 10, "running-requests": 2})
PROM_USER = "system:serviceaccount:monitoring:prometheus"


def _cluster(kube: KubeFake, ports: list[int]) -> None:
    add_pool(kube, ports)
    add_objective(kube, "batch", -1)
    add_objective(kube, "chat", 10)
    kube.tokens["prom-token"] = {"username": PROM_USER}
    kube.tokens["other-token"] = {"username": "someone"}
    kube.grants.add((PROM_USER, "/metrics", "get"))


async def _get(url: str, token: str = "") -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as s, s.get(url, headers=headers) as r:
        return r.status, await r.text()


@pytest.fixture
async def kube() -> AsyncIterator[KubeFake]:
    async with pool_api() as fake:
        yield fake


async def test_epp_acc_41_sheddable_shed_through_envoy_and_metrics_need_a_token(
    kube: KubeFake, start_sim: Callable[..., SimProcess]
) -> None:
    sims = [
        start_sim("--model", MODEL, "--fake-metrics", SATURATED, env={"POD_NAME": f"sim-{i}"})
        for i in range(3)
    ]
    _cluster(kube, [s.port for s in sims])
    work = Path(tempfile.mkdtemp(prefix="epp-kube-"))
    grpc_port, health_port, metrics_port = free_port(), free_port(), free_port()
    argv = [
        sys.executable, "-m", "pyllmd", "epp", "--pool-name=pool", f"--pool-namespace={NS}",
        f"--kubeconfig={write_kubeconfig(work, kube.url)}", "--bind-address=127.0.0.1",
        f"--grpc-port={grpc_port}", f"--grpc-health-port={health_port}",
        f"--metrics-port={metrics_port}",
    ]  # fmt: skip
    epp = ManagedProcess("pyllmd-epp", argv, None)
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    listen, admin = free_port(), free_port()
    envoy = EnvoyProcess(work, envoy_bootstrap(listen, grpc_port, admin, health_check=True))
    client = AsyncOpenAI(
        base_url=f"http://127.0.0.1:{listen}/v1", api_key="unused", max_retries=0, timeout=30
    )
    try:
        status, text = 0, ""
        for _ in range(200):  # the EPP has read the pool and scraped every rank
            await asyncio.sleep(0.1)
            try:
                status, text = await _get(metrics_url, "prom-token")
            except aiohttp.ClientError:
                continue
            ready = [s for s in parse_samples(text) if s.name == "inference_pool_ready_pods"]
            if status == 200 and ready and ready[0].value == 3:
                break
        else:
            raise AssertionError(f"EPP never saw the pool: {status} {text[:200]}")
        assert (await _get(metrics_url))[0] == 401
        assert (await _get(metrics_url, "other-token"))[0] == 403
        await envoy.start()

        with pytest.raises(openai.RateLimitError) as shed:
            await client.completions.create(
                model=MODEL,
                prompt="a batch job",
                max_tokens=2,
                extra_headers={"x-gateway-inference-objective": "batch"},
            )
        assert "system saturated, sheddable request dropped" in shed.value.response.text

        served = []
        for headers in ({"x-gateway-inference-objective": "chat"}, {}):
            raw = await client.completions.with_raw_response.create(
                model=MODEL, prompt="an interactive user", max_tokens=2, extra_headers=headers
            )
            assert raw.parse().choices[0].text
            served.append(int(raw.headers["x-inference-port"]))
        assert set(served) <= {s.port for s in sims}
        successes = sum(
            s.value
            for sim in sims
            for s in parse_samples(sim.metrics())
            if s.name == "vllm:request_success_total"
        )
        assert successes == 2  # the shed request never reached a simulator
    except BaseException:
        print(epp.describe(tail=100))
        if envoy.log_file.exists():
            print(envoy.log_file.read_text(errors="replace")[-3000:])
        raise
    finally:
        await client.close()
        await envoy.stop()
        assert epp.stop() == 0
