"""The whole autoscaling loop as a user runs it: `pyllmd up`, a load ramp, idleness, a wake-up.

Two variants of one model (cheap A100 at 1 replica, pricey H100 at 2) run as
simulator processes behind the stack's gateway; a real Prometheus (HTTPS)
scrapes them and the controller sizes them. The test drives traffic with the
openai client and reads what a user reads: the `wva_*` gauges, the VA status
list, and Prometheus.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.e2e.stacks import SATURATION_CONFIG_MAP, Stack, running_stack

pytestmark = pytest.mark.e2e

MODEL = "m"
SIM_ARGS = (
    '[--model, m, --max-num-seqs, "2", --time-to-first-token, 50ms, --inter-token-latency, 20ms]'
)
STACK = f"""
namespace: llm
variants:
  - variantAutoscaling:
      metadata: {{name: cheap, labels: {{inference.optimization/acceleratorName: A100}}}}
      spec: {{scaleTargetRef: {{kind: Deployment, name: cheap}}, modelID: m, variantCost: "5"}}
    deployment: {{replicas: 1, args: {SIM_ARGS}}}
  - variantAutoscaling:
      metadata: {{name: pricey, labels: {{inference.optimization/acceleratorName: H100}}}}
      spec: {{scaleTargetRef: {{kind: Deployment, name: pricey}}, modelID: m, variantCost: "15"}}
    deployment: {{replicas: 2, args: {SIM_ARGS}}}
configMaps:
{SATURATION_CONFIG_MAP}  - metadata:
      name: wva-model-scale-to-zero-config
      namespace: workload-variant-autoscaler-system
    data:
      default: |
        enable_scale_to_zero: true
        retention_period: 100s
"""


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, STACK) as running:
        yield running


def _load(gateway: str, concurrency: int, seconds: float) -> int:
    def worker(_: int) -> int:
        client = openai.OpenAI(base_url=gateway, api_key="x", max_retries=0, timeout=120)
        done, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            client.completions.create(
                model=MODEL, prompt="hello there", max_tokens=40, extra_body={"ignore_eos": True}
            )
            done += 1
        return done

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return sum(pool.map(worker, range(concurrency)))


def _first_at(timeline: list[tuple[float, dict[str, int]]], name: str, value: int) -> float:
    return next((t for t, values in timeline if values.get(name) == value), float("inf"))


def _first_drop(timeline: list[tuple[float, dict[str, int]]], name: str, after: float) -> float:
    peak, prev = None, None
    for t, values in timeline:
        v = values.get(name, 0)
        if t >= after and prev is not None and v < prev and v > 0:
            return t
        prev = v
        peak = v if peak is None else max(peak, v)
    return float("inf")


@pytest.mark.timeout(480)
def test_load_ramp_scale_up_down_to_zero_and_back(stack: Stack) -> None:
    # 1. a load ramp saturates the variants: the cheaper one is scaled up, the pricey one not
    stack.record()  # the start: a cycle may scale the idle pricey variant down before the load
    with concurrent.futures.ThreadPoolExecutor(1) as bg:
        load = bg.submit(_load, stack.urls["gateway"], 24, 35)
        stack.wait_for("cheap scaled up", lambda d: d.get("cheap", 0) >= 3, timeout=60)
        assert stack.desired()["pricey"] <= 2
        served = load.result(timeout=120)
    load_end = time.monotonic()
    assert served > 0
    # the new replicas exist and took load (Prometheus sees several cheap pods with successes)
    pods = stack.prometheus(
        'sum by (pod) (vllm:request_success_total{namespace="llm",pod=~"cheap-.*"})'
    )
    assert len([p for p in pods if float(p["value"][1]) > 0]) >= 2
    # status and gauges agree (read again if a cycle ran between the two reads)
    for _ in range(5):
        vas, desired = stack.vas(), stack.desired()
        allocs = {n: vas[n]["status"]["desiredOptimizedAlloc"] for n in ("cheap", "pricey")}
        if all(stack.vas()[n]["status"]["desiredOptimizedAlloc"] == a for n, a in allocs.items()):
            break
    for name, alloc in allocs.items():
        assert alloc["numReplicas"] == desired[name], (allocs, desired)
    # 2. idle: the pricey variant is scaled down first (it may have been before the load: the
    # first cycles can see its pods idle), then the cheap one
    stack.wait_for("pricey back to 1", lambda d: d.get("pricey") == 1, timeout=150)
    stack.wait_for("cheap scaled down", lambda d: 0 < d.get("cheap", 0) < 3, timeout=150)
    assert _first_at(stack.timeline, "pricey", 1) <= _first_drop(
        stack.timeline, "cheap", load_end
    ), stack.timeline
    # 3. after the retention period without requests: everything at zero
    stack.wait_for("scale to zero", lambda d: d.get("cheap") == 0 and d.get("pricey") == 0, 200)
    # ... and the pods are gone: Prometheus stops seeing any simulator target
    for _ in range(60):
        if not stack.prometheus('up{job="pods"} == 1'):
            break
        time.sleep(1)
    assert stack.prometheus('up{job="pods"} == 1') == []
    # 4. a request arrives: it waits at the gateway, a variant is woken, and it is answered
    client = openai.OpenAI(base_url=stack.urls["gateway"], api_key="x", max_retries=0, timeout=90)
    reply = client.completions.create(model=MODEL, prompt="wake up", max_tokens=5)
    assert reply.choices[0].text
    stack.wait_for("woken", lambda d: d.get("cheap", 0) + d.get("pricey", 0) >= 1, timeout=30)
    desired = stack.desired()
    woken = [n for n, va in stack.vas().items() if desired.get(n, 0) >= 1]
    assert woken, stack.timeline
    va = stack.vas()[woken[0]]
    assert va["status"]["desiredOptimizedAlloc"]["numReplicas"] == desired[woken[0]]
    ready = {c["type"]: c["status"] for c in va["status"]["conditions"]}
    assert ready["OptimizationReady"] == "True" and ready["TargetResolved"] == "True"
    assert "scale from zero" in stack.proc.output
