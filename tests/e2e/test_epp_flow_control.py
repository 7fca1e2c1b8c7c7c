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
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import openai
import pytest

from pyllmd.core.promtext import Sample, parse_samples
from tests.e2e.eppgateway import EppGateway, value
from tests.e2e.harness import SimProcess
from tests.e2e.kubepool import NS, add_objective, add_pool, pool_api, pool_args
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


def _gateway(
    make: Callable[..., EppGateway], kube: KubeFake, work: Path, config: str
) -> EppGateway:
    """`pyllmd epp` in pool mode with `config`, Envoy in front."""
    return make(*pool_args(kube, work, "--metrics-endpoint-auth=false", "--config-text", config))


async def _complete(gw: EppGateway, prompt: str, objective: str = "") -> tuple[str, int]:
    headers = {"x-gateway-inference-objective": objective} if objective else {}
    raw = await gw.client.completions.with_raw_response.create(
        model=MODEL, prompt=prompt, max_tokens=2, extra_headers=headers
    )
    return raw.parse().choices[0].text, int(raw.headers["x-inference-port"])


def _queued(samples: list[Sample], count: int) -> bool:
    return value(samples, QUEUE_SIZE) == count


async def test_epp_acc_63_requests_queue_while_saturated_and_leave_by_priority(
    kube: KubeFake,
    start_sim: Callable[..., SimProcess],
    epp_gateway: Callable[..., EppGateway],
    tmp_path: Path,
) -> None:
    env = {"POD_NAME": "sim-0"}
    busy = start_sim("--model", MODEL, "--fake-metrics", SATURATED, env=env)
    free = start_sim(
        "--model", MODEL, "--max-num-seqs", "1", "--time-to-first-token", "200ms", env=env
    )
    _cluster(kube, busy.port)
    gw = _gateway(epp_gateway, kube, tmp_path, BASE_CONFIG)
    await gw.start(ready_pods=1)
    served: list[tuple[str, int]] = []

    async def send(name: str, objective: str = "") -> None:
        _, port = await _complete(gw, f"request {name}", objective)
        served.append((name, port))

    tasks = []
    plan = [("low-1", ""), ("low-2", ""), ("high-1", "chat"), ("low-3", ""), ("high-2", "chat")]
    for i, (name, objective) in enumerate(plan, start=1):
        tasks.append(asyncio.create_task(send(name, objective)))
        # one at a time, so the EPP sees them in this order
        await gw.wait_for(f"{i} queued", functools.partial(_queued, count=i))
    samples = await gw.samples()
    assert value(samples, QUEUE_SIZE, priority="0", target_model_name=MODEL) == 3
    assert value(samples, QUEUE_SIZE, priority="10", target_model_name=MODEL) == 2
    assert served == []

    kube.update(
        api.INFERENCEPOOLS_V1, NS, "pool", {"spec": {"targetPorts": [{"number": free.port}]}}
    )
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)
    assert [name for name, _ in served] == ["high-1", "high-2", "low-1", "low-2", "low-3"]
    assert {port for _, port in served} == {free.port}
    samples = await gw.wait_for("an empty queue", lambda s: value(s, QUEUE_SIZE) == 0)
    assert value(samples, DURATION_COUNT, outcome="Dispatched") == 5
    assert await gw.close(failed=False) == 0  # a clean exit


async def test_epp_acc_63_over_max_bytes_is_429_ttl_is_503_and_gone_clients_leave(
    kube: KubeFake,
    start_sim: Callable[..., SimProcess],
    epp_gateway: Callable[..., EppGateway],
    tmp_path: Path,
) -> None:
    busy = start_sim("--model", MODEL, "--fake-metrics", SATURATED, env={"POD_NAME": "sim-0"})
    _cluster(kube, busy.port)
    config = BASE_CONFIG + (
        "flowControl:\n  defaultRequestTTL: 2s\n  defaultPriorityBand: {maxBytes: 200}\n"
    )
    gw = _gateway(epp_gateway, kube, tmp_path, config)
    await gw.start(ready_pods=1)
    waiting = asyncio.create_task(_complete(gw, "a short prompt"))
    await gw.wait_for("1 queued", lambda s: value(s, QUEUE_SIZE) == 1)

    with pytest.raises(openai.RateLimitError) as full:
        await _complete(gw, "x" * 200)  # its band would go over 200 bytes
    assert "InferencePoolResourceExhausted - request rejected by flow control" in (
        full.value.response.text
    )

    with pytest.raises(openai.InternalServerError) as expired:
        await waiting
    assert expired.value.status_code == 503
    assert "ServiceUnavailable - request timed out in queue: " in expired.value.response.text
    samples = await gw.wait_for("an empty queue", lambda s: value(s, QUEUE_SIZE) == 0)
    assert value(samples, DURATION_COUNT, outcome="RejectedCapacity") == 1
    assert value(samples, DURATION_COUNT, outcome="EvictedTTL") == 1

    with pytest.raises(openai.APITimeoutError):  # the client gives up before the TTL
        await gw.client.with_options(timeout=1.0).completions.create(
            model=MODEL, prompt="gone", max_tokens=2
        )
    samples = await gw.wait_for(
        "the abandoned request dropped",
        lambda s: value(s, DURATION_COUNT, outcome="EvictedContextCancelled") == 1,
    )
    assert value(samples, QUEUE_SIZE) == 0
    sim_samples = list(parse_samples(busy.metrics()))
    assert value(sim_samples, "vllm:request_success_total") == 0  # nothing got through
    assert await gw.close(failed=False) == 0  # a clean exit
