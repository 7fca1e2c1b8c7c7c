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

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import openai
import pytest

from pyllmd.core.promtext import parse_samples
from tests.e2e.eppgateway import EppGateway
from tests.e2e.harness import SimProcess
from tests.e2e.kubepool import add_objective, add_pool, pool_api, pool_args
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


@pytest.fixture
async def kube() -> AsyncIterator[KubeFake]:
    async with pool_api() as fake:
        yield fake


async def test_epp_acc_41_sheddable_shed_through_envoy_and_metrics_need_a_token(
    kube: KubeFake,
    start_sim: Callable[..., SimProcess],
    epp_gateway: Callable[..., EppGateway],
    tmp_path: Path,
) -> None:
    sims = [
        start_sim("--model", MODEL, "--fake-metrics", SATURATED, env={"POD_NAME": f"sim-{i}"})
        for i in range(3)
    ]
    _cluster(kube, [s.port for s in sims])
    gw = epp_gateway(*pool_args(kube, tmp_path))
    # the EPP has read the pool and scraped every rank (as the granted scraper sees it)
    await gw.start(ready_pods=3, token="prom-token")
    assert (await gw.metrics())[0] == 401
    assert (await gw.metrics("other-token"))[0] == 403

    with pytest.raises(openai.RateLimitError) as shed:
        await gw.client.completions.create(
            model=MODEL,
            prompt="a batch job",
            max_tokens=2,
            extra_headers={"x-gateway-inference-objective": "batch"},
        )
    assert "system saturated, sheddable request dropped" in shed.value.response.text

    served = []
    for headers in ({"x-gateway-inference-objective": "chat"}, {}):
        raw = await gw.client.completions.with_raw_response.create(
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
    assert await gw.close(failed=False) == 0  # a clean exit
