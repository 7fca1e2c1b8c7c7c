"""Scale from zero with real parts (issue 7): Envoy, `pyllmd epp` flow control, the autoscaler.

`pyllmd up` runs a stack with `gateway: envoy-epp`: a real Envoy calls a real
`pyllmd epp` (flow control on, pool = the `--endpoints-file` the stack keeps
equal to the model's ready pods), Prometheus, and the autoscaler whose
scale-from-zero engine reads the EPP's `/metrics`. The one variant starts at
0 replicas. A request sent to Envoy waits in the EPP's flow-control queue (its
gauge reads 1), the autoscaler sees it and starts a simulator, the EPP's pool
gains that pod and the held request is served by it. The saturation engine's
period is long (60 s) so that, within this test, only the scale-from-zero
engine acts on the variant.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest

from pyllmd.core.promtext import Sample, parse_samples
from tests.e2e.eppgateway import value
from tests.e2e.harness import ManagedProcess
from tests.e2e.stacks import SATURATION_CONFIG_MAP, up_argv

pytestmark = pytest.mark.e2e

T = TypeVar("T")
MODEL = "m"
QUEUE_SIZE = "inference_extension_flow_control_queue_size"
QUEUE_DURATION_COUNT = "inference_extension_flow_control_request_queue_duration_seconds_count"
STACK = f"""
namespace: llm
gateway: envoy-epp
variants:
  - variantAutoscaling:
      metadata: {{name: only, labels: {{inference.optimization/acceleratorName: A100}}}}
      spec: {{scaleTargetRef: {{kind: Deployment, name: only}}, modelID: {MODEL}, variantCost: "5"}}
    deployment:
      replicas: 0
      labels: {{app: sim}}
      args: [--model, {MODEL}, --time-to-first-token, 10ms, --inter-token-latency, 5ms]
configMaps:
{SATURATION_CONFIG_MAP}  - metadata:
      name: wva-model-scale-to-zero-config
      namespace: workload-variant-autoscaler-system
    data:
      default: |
        enable_scale_to_zero: true
        retention_period: 10m
"""


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return str(reply.read().decode())


class Stack:
    """A running `pyllmd up` (Envoy + EPP gateway) and readers for what it shows."""

    def __init__(self, proc: ManagedProcess, urls: dict[str, str], workdir: Path) -> None:
        self.proc = proc
        self.urls = urls
        self.endpoints_file = workdir / "gateway" / "epp-endpoints.json"
        self.epp_log = workdir / "gateway" / "epp.log"

    def epp_samples(self) -> list[Sample]:
        return list(parse_samples(_get(self.urls["queue"])))

    def vas(self) -> dict[str, Any]:
        body = _get(self.urls["admin"] + "/apis/llmd.ai/v1alpha1/variantautoscalings")
        return {va["metadata"]["name"]: va for va in json.loads(body)["items"]}

    def desired(self) -> dict[str, int]:
        text = _get(self.urls["admin"] + "/metrics")
        found = re.findall(r'wva_desired_replicas\{[^}]*variant_name="(\w+)"\} (\d+)', text)
        return {name: int(value) for name, value in found}

    def pool(self) -> list[str]:
        groups = json.loads(self.endpoints_file.read_text())
        return [t for g in groups for t in g["targets"]]

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float = 30) -> T:
        """Poll `probe` (every 50 ms) until it returns something truthy; bounded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            time.sleep(0.05)
        log = self.epp_log.read_text(errors="replace")[-3000:] if self.epp_log.exists() else ""
        raise AssertionError(f"timed out waiting for {what}\n{self.proc.describe(40)}\n{log}")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(STACK)
    workdir = tmp_path / "work"
    argv = up_argv(stack_file, workdir, "--interval", "60s")
    proc = ManagedProcess("pyllmd-up", argv, None)
    try:
        proc.wait_until(lambda: "Ctrl-C stops everything" in proc.output, 60, "up")
        out = proc.output
        urls = {}
        for key, pattern in (
            ("gateway", r"OpenAI API \(gateway\):\s+(\S+)"),
            ("queue", r"queue metrics:\s+(\S+)"),
            ("admin", r"autoscaler metrics:\s+(http://\S+)/metrics"),
        ):
            found = re.search(pattern, out)
            assert found is not None, f"{key} not printed:\n{proc.describe(60)}"
            urls[key] = found.group(1)
        yield Stack(proc, urls, workdir)
    finally:
        proc.stop()


@pytest.mark.timeout(120)
def test_scale_from_zero_through_envoy_and_the_epp_flow_control(stack: Stack) -> None:
    # at rest: no pod, an empty pool in the EPP, nothing queued
    assert stack.pool() == []
    assert value(stack.epp_samples(), QUEUE_SIZE) == 0
    assert stack.vas()["only"]["status"].get("desiredOptimizedAlloc", {}).get("numReplicas", 0) == 0

    client = openai.OpenAI(base_url=stack.urls["gateway"], api_key="x", max_retries=0, timeout=60)
    with concurrent.futures.ThreadPoolExecutor(1) as bg:
        pending = bg.submit(
            client.completions.with_raw_response.create, model=MODEL, prompt="wake up", max_tokens=3
        )
        # 1. the request is held in the EPP's flow-control queue (Envoy has no answer yet)
        stack.wait_for(
            "the request queued in the EPP",
            lambda: value(stack.epp_samples(), QUEUE_SIZE, target_model_name=MODEL) == 1,
        )
        # 2. the autoscaler reads that queue and scales the variant from 0 to 1
        stack.wait_for("wva_desired_replicas 1", lambda: stack.desired().get("only") == 1)
        # 3. the new simulator joins the EPP's pool and the held request is served by it
        raw = pending.result(timeout=60)
    assert raw.http_response.status_code == 200
    assert raw.parse().choices[0].text
    port = int(raw.headers["x-inference-port"])
    assert stack.pool() == [f"127.0.0.1:{port}"]
    sim = list(parse_samples(_get(f"http://127.0.0.1:{port}/metrics")))
    assert value(sim, "vllm:request_success_total") == 1

    def drained() -> list[Sample] | None:
        samples = stack.epp_samples()
        return samples if value(samples, QUEUE_SIZE) == 0 else None

    samples = stack.wait_for("an empty queue", drained)
    assert value(samples, QUEUE_DURATION_COUNT, outcome="Dispatched") == 1
    va = stack.vas()["only"]
    assert va["status"]["desiredOptimizedAlloc"]["numReplicas"] == 1
    reasons = {c["type"]: c["reason"] for c in va["status"]["conditions"]}
    assert reasons["OptimizationReady"] == "ScaleFromZeroMode"
    assert "scale from zero va=llm/only model=m" in stack.proc.output
