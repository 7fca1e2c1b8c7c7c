"""Prometheus goes away mid-run: the controller holds replicas, says why, and recovers.

Runs the local stack in-process (the same code `pyllmd up` runs) so the test can
stop and restart its real Prometheus; everything else is observed as a user
would: the admin endpoint's gauges and VA list.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pyllmd.stack.run import RunningStack, StackOptions, local_stack
from tests.e2e.harness import free_port
from tests.e2e.stacks import SATURATION_CONFIG_MAP

pytestmark = pytest.mark.e2e

# one replica: idle at its minimum, so no cycle moves it while the test compares the held target
STACK = f"""
namespace: llm
variants:
  - variantAutoscaling:
      metadata: {{name: solo, labels: {{inference.optimization/acceleratorName: A100}}}}
      spec: {{scaleTargetRef: {{kind: Deployment, name: solo}}, modelID: m}}
    deployment: {{replicas: 1, args: [--model, m, --max-num-seqs, "2"]}}
configMaps:
{SATURATION_CONFIG_MAP}"""


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as r:
        return await r.json() if "json" in r.content_type else await r.text()


async def _state(
    http: aiohttp.ClientSession, stack: RunningStack
) -> tuple[int | None, dict[str, Any]]:
    text = await _get(http, stack.urls["admin"] + "/metrics")
    m = re.search(r'wva_desired_replicas\{[^}]*variant_name="solo"\} (\d+)', text)
    vas = await _get(http, stack.urls["admin"] + "/apis/llmd.ai/v1alpha1/variantautoscalings")
    va = vas["items"][0]
    conditions = {c["type"]: c for c in va.get("status", {}).get("conditions", [])}
    return (int(m.group(1)) if m else None), conditions


async def _until(
    http: aiohttp.ClientSession,
    stack: RunningStack,
    check: Callable[[int | None, dict[str, Any]], bool],
    timeout: float,
) -> tuple[int | None, dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    state = await _state(http, stack)
    while loop.time() < deadline:
        if check(*state):
            return state
        await asyncio.sleep(0.5)
        state = await _state(http, stack)
    raise AssertionError(f"condition not reached; last state {state}")


def _metrics_reason(conditions: dict[str, Any]) -> str:
    return str(conditions.get("MetricsAvailable", {}).get("reason", ""))


@pytest.mark.timeout(240)
async def test_prometheus_outage_holds_replicas_and_recovers(tmp_path: Path) -> None:
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(STACK)
    opts = StackOptions(stack_file, gateway_port=free_port(), interval=1.0, workdir=tmp_path / "w")
    async with local_stack(opts) as stack, aiohttp.ClientSession() as http:
        desired, _ = await _until(
            http, stack, lambda d, c: d is not None and _metrics_reason(c) == "MetricsFound", 60
        )
        assert desired is not None
        replicas_before = stack.cluster.deployments[("llm", "solo")].replicas

        await stack.prometheus.stop()
        held, conditions = await _until(
            http, stack, lambda d, c: _metrics_reason(c) == "PrometheusError", 90
        )
        assert conditions["MetricsAvailable"]["status"] == "False"
        assert held == desired  # the safety net keeps publishing the previous target
        assert stack.cluster.deployments[("llm", "solo")].replicas == replicas_before

        await stack.prometheus.start()
        _, conditions = await _until(
            http, stack, lambda d, c: _metrics_reason(c) == "MetricsFound", 90
        )
        assert conditions["MetricsAvailable"]["status"] == "True"
