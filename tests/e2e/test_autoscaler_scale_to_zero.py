"""Scale to zero against a real Prometheus: the guard query, and the local stack at 15 s scrapes.

`test_recent_success_semantics_on_real_prometheus` backfills exact samples with
`promtool` and evaluates upstream's `model_request_count` and pyllmd's
`model_recent_success` at a fixed time through `PrometheusMetricsSource`, so the
PromQL semantics are those of the real Prometheus, not of a fake.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import openai
import pytest

from pyllmd.autoscaler.collect.prometheus import PrometheusMetricsSource
from pyllmd.autoscaler.collect.queries import VectorSample
from tests.e2e.harness import backfilled_prometheus
from tests.e2e.stacks import SATURATION_CONFIG_MAP, running_stack

pytestmark = pytest.mark.e2e

NS = "llm"
RETENTION = 60.0
# model → (samples as (seconds before the evaluation time, counter value), upstream's count
# (None: no series; its increase() extrapolates, so only 0 or > 0 matters), whether pyllmd's
# guard sees a success first seen within the 60 s window)
SCENARIOS: dict[str, tuple[list[tuple[int, float]], str, bool]] = {
    # a pod served 20 requests before its first scrape: the series is born at 20
    "born-above-zero": ([(50, 20), (35, 20), (20, 20), (5, 20)], "0", True),
    # the increase is first seen 50 s ago; its predecessor sample is outside the window
    "edge-inside": (
        [(125, 5), (110, 5), (95, 5), (80, 5), (65, 5), (50, 6), (35, 6), (20, 6), (5, 6)],
        "0",
        True,
    ),
    # the same, first seen 61 s ago: outside the retention window
    "edge-outside": (
        [
            (136, 5),
            (121, 5),
            (106, 5),
            (91, 5),
            (76, 5),
            (61, 6),
            (46, 6),
            (31, 6),
            (16, 6),
            (1, 6),
        ],
        "0",
        False,
    ),
    "idle": ([(300 - 15 * i, 10) for i in range(20)], "0", False),
    "born-at-zero": ([(50, 0), (35, 0), (20, 0), (5, 0)], "0", False),
    "born-at-zero-then-used": ([(50, 0), (35, 1), (20, 1), (5, 1)], ">0", True),
    # a restart resets the counter: upstream's increase() counts it, the guard need not
    "reset": ([(95, 100), (80, 100), (65, 100), (50, 0), (35, 2), (20, 2), (5, 2)], ">0", False),
    # a pod gone for minutes: no series at all
    "gone": ([(700 - 15 * i, 10) for i in range(10)], "none", False),
}


class AtTime:
    """A `QueryClient` evaluating every instant query at a fixed time."""

    def __init__(self, url: str, at: float) -> None:
        self.url, self.at = url, at

    async def query(self, promql: str) -> list[VectorSample]:
        form = urllib.parse.urlencode({"query": promql, "time": f"{self.at:.3f}"}).encode()
        with urllib.request.urlopen(f"{self.url}/api/v1/query", form, timeout=5) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return [
            VectorSample(r["metric"], float(r["value"][1]), float(r["value"][0]))
            for r in body["data"]["result"]
        ]


def samples(at: int) -> str:
    """The scenarios as OpenMetrics."""
    lines = [
        f'vllm:request_success_total{{namespace="{NS}",model_name="{model}",pod="p",'
        f'finish_reason="stop"}} {value} {at - ago}'
        for model, (samples, _, _) in SCENARIOS.items()
        for ago, value in samples
    ]
    return "\n".join(lines) + "\n# EOF\n"


async def test_recent_success_semantics_on_real_prometheus(tmp_path: Path) -> None:
    at = int(time.time()) // 60 * 60 - 3600  # an hour ago: well inside the TSDB retention
    with backfilled_prometheus(tmp_path, samples(at)) as url:
        source = PrometheusMetricsSource(AtTime(url, at))
        found = {}
        for model in SCENARIOS:
            count = await source.request_count(NS, model, RETENTION)
            recent = await source.recent_success(NS, model, RETENTION)
            found[model] = ("none" if count is None else ">0" if count > 0 else "0", recent)
    expected = {m: (count, recent) for m, (_, count, recent) in SCENARIOS.items()}
    assert found == expected


# -- the local stack at a 15 s scrape interval -------------------------------------------------

STACK_RETENTION = 45.0
SCRAPE = 15.0
SIM_ARGS = '--max-num-seqs, "64", --time-to-first-token, 10ms, --inter-token-latency, 2ms'
STACK = f"""
namespace: llm
variants:
  - variantAutoscaling:
      metadata: {{name: wake, labels: {{inference.optimization/acceleratorName: A100}}}}
      spec: {{scaleTargetRef: {{kind: Deployment, name: wake}}, modelID: wake-m}}
    deployment: {{replicas: 0, args: [--model, wake-m, {SIM_ARGS}]}}
  - variantAutoscaling:
      metadata: {{name: burst, labels: {{inference.optimization/acceleratorName: A100}}}}
      spec: {{scaleTargetRef: {{kind: Deployment, name: burst}}, modelID: burst-m}}
    deployment: {{replicas: 1, args: [--model, burst-m, {SIM_ARGS}]}}
configMaps:
{SATURATION_CONFIG_MAP}  - metadata:
      name: wva-model-scale-to-zero-config
      namespace: workload-variant-autoscaler-system
    data:
      default: |
        enable_scale_to_zero: true
        retention_period: {STACK_RETENTION:g}s
"""


def _complete(gateway: str, model: str) -> float:
    """One completion through the gateway; the time it was sent."""
    client = openai.OpenAI(base_url=gateway, api_key="x", max_retries=0, timeout=90)
    sent = time.monotonic()
    reply = client.completions.create(model=model, prompt="hello", max_tokens=3)
    assert reply.choices[0].text
    return sent


def _up_until(samples: list[tuple[float, int]]) -> tuple[float, float | None]:
    """(last time seen above 0 before the first 0 after being up, time of that first 0)."""
    last_up, seen_up = 0.0, False
    for when, value in samples:
        if value > 0:
            last_up, seen_up = when, True
        elif seen_up:
            return last_up, when
    return last_up, None


@pytest.mark.timeout(240)
def test_scale_to_zero_waits_a_retention_period_after_the_last_request(tmp_path: Path) -> None:
    """Prometheus scrapes every 15 s, the retention period is 45 s.

    `wake` sits at zero: one request wakes it and is served by its fresh pod
    before Prometheus has scraped it. `burst` has a fresh pod: 20 requests are
    served at once, in its first seconds. Both must stay up for the retention
    period after their last request, then go to zero.
    """
    with running_stack(tmp_path, STACK, "--scrape-interval", f"{SCRAPE:g}s") as stack:
        gateway = stack.urls["gateway"]
        with concurrent.futures.ThreadPoolExecutor(21) as pool:
            woken = pool.submit(_complete, gateway, "wake-m")
            burst = [pool.submit(_complete, gateway, "burst-m") for _ in range(20)]
            last_sent = {"wake": woken.result(timeout=120)}
            last_sent["burst"] = max(f.result(timeout=120) for f in burst)
        served = time.monotonic()
        samples: dict[str, list[tuple[float, int]]] = {"wake": [], "burst": []}
        deadline = served + STACK_RETENTION + SCRAPE + 60
        while time.monotonic() < deadline:
            now, desired = time.monotonic(), stack.record()
            for name, series in samples.items():
                series.append((now, desired.get(name, 0)))
            if all(_up_until(s)[1] is not None for s in samples.values()):
                break
            time.sleep(0.5)
        failures = []
        for name, series in samples.items():
            last_up, zeroed = _up_until(series)
            # still up while the retention period since its last request has not elapsed ...
            if last_up < last_sent[name] + STACK_RETENTION - 1.0:
                failures.append(f"{name} went to zero {last_up - last_sent[name]:.1f}s after")
            # ... then at zero: first seen by a scrape, a retention period, a cycle, some slack
            elif zeroed is None or zeroed > served + STACK_RETENTION + SCRAPE + 30:
                failures.append(f"{name} not at zero in time")
        assert not failures, f"{failures}; sent {last_sent}, timeline {stack.timeline}\n" + (
            stack.proc.describe(tail=60)
        )
        assert "scaling model wake-m to zero" in stack.proc.output
        assert "scaling model burst-m to zero" in stack.proc.output
