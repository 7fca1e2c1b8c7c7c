"""The same stack file and workload, live (`pyllmd up` and the load) and in virtual time
(`pyllmd simulate`): the autoscaler makes the same moves, at the same times within one of its
intervals, to the same final replicas, and the latencies agree (p50 within 15 %, p90 25 %).

One autoscaled variant (Llama-2-7B on an L40S with the batch model: decode steps of about
20 ms, four sequences at most, under 4 requests/s) gets a burst it cannot serve alone, then a
light load; the arrival times are a trace both runs replay. The saturation analyzer reads the
queue's maximum over the last minute, so the controller scales up at the first cycle, holds
while the burst's queue (well above the saturation threshold of 5) is in that window, and
scales down at the first cycle whose window is past it. Every cycle is far from a threshold:
a load that queues a few requests on the pods makes the shipped thresholds (queue 5, spare 3)
flip on one queued request. The virtual run is told what the live one does: cycles every
10 s, Prometheus scraping every second, and pods Ready after the start-up time measured live.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI

from tests.e2e.harness import SimProcess
from tests.e2e.stacks import SATURATION_CONFIG_MAP, Stack, running_stack

pytestmark = pytest.mark.e2e

MODEL = "meta-llama/Llama-2-7b-hf"
INTERVAL = 10.0
BURST = (4.5, 12.0)  # requests per second until this time: a queue of about 10 on one pod
LIGHT = (2.0, 92.0)  # then this rate until this time: a request or two in flight
PROMPT = 1000
OUTPUT = 40
ARGS = ["--model", MODEL, "--accelerator", "L40S", "--max-num-seqs", "4",
        "--max-model-len", "4096", "--max-num-batched-tokens", "1024",
        "--enable-prefix-caching=false", "--latency-calculator", "batch"]  # fmt: skip
STACK = f"""
namespace: llm
variants:
  - variantAutoscaling:
      metadata: {{name: llama, labels: {{inference.optimization/acceleratorName: L40S}}}}
      spec: {{scaleTargetRef: {{kind: Deployment, name: llama}}, modelID: {MODEL}}}
    deployment: {{replicas: 1, args: {json.dumps(ARGS)}}}
configMaps:
{SATURATION_CONFIG_MAP}"""
WORKLOAD = """
api: {{type: completion, streaming: true}}
data: {{type: random, trace: {{file: {trace}, format: AzurePublicDataset}}}}
server: {{type: vllm, model_name: {model}, ignore_eos: true}}
load:
  type: trace_replay
  trace: {{file: {trace}, format: AzurePublicDataset}}
  stages: [{{rate: 1, duration: 1}}]
"""


def arrivals() -> list[float]:
    """The send times of the load, in seconds from its start."""
    times: list[float] = []
    start = 0.0
    for rate, end in (BURST, LIGHT):
        times += [start + i / rate for i in range(round((end - start) * rate))]
        start = end
    return times


def azure_trace(times: list[float]) -> str:
    """`times` as an Azure LLM inference trace (inference-perf's AzurePublicDataset)."""
    base = datetime.datetime(2024, 1, 1)
    rows = (f"{base + datetime.timedelta(seconds=t)},{PROMPT},{OUTPUT}\n" for t in times)
    return "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(rows)


async def live_load(stack: Stack) -> tuple[list[float], list[float], list[tuple[float, int]]]:
    """TTFTs and inter-token gaps of the load sent through the gateway, and the desired
    replicas (with the time since the load started) each time they changed."""
    client = AsyncOpenAI(base_url=stack.urls["gateway"], api_key="x", max_retries=0)
    prompt = "hello " * PROMPT
    ttfts: list[float] = []
    gaps: list[float] = []
    # start as a cycle ends, as the virtual run does (its cycles are at 0, 5 s, ...): the
    # controller stamps each cycle's decision in the VA's status
    first = await asyncio.to_thread(last_run, stack)
    async with asyncio.timeout(4 * INTERVAL):
        while await asyncio.to_thread(last_run, stack) == first:
            await asyncio.sleep(0.05)
    t0 = time.monotonic()
    changes: list[tuple[float, int]] = []

    async def one(at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        start = time.monotonic()
        stream = await client.completions.create(
            model=MODEL, prompt=prompt, max_tokens=OUTPUT, stream=True,
            extra_body={"ignore_eos": True}, timeout=120,
        )  # fmt: skip
        times = [time.monotonic() async for c in stream if c.choices and c.choices[0].text]
        assert len(times) == OUTPUT
        ttfts.append(times[0] - start)
        gaps.extend(b - a for a, b in zip(times, times[1:], strict=False))

    async def watch() -> None:
        while True:
            desired = await asyncio.to_thread(stack.desired)
            value = desired.get("llama", 1)
            if not changes or changes[-1][1] != value:
                changes.append((time.monotonic() - t0, value))
            await asyncio.sleep(0.25)

    watcher = asyncio.create_task(watch())
    async with asyncio.timeout(240):
        await asyncio.gather(*(one(t0 + at) for at in arrivals()))
    # the virtual run ends with its last response: no cycle after it is compared
    watcher.cancel()
    await client.close()
    return ttfts, gaps, changes


def last_run(stack: Stack) -> str:
    status = stack.vas()["llama"].get("status") or {}
    return str((status.get("desiredOptimizedAlloc") or {}).get("lastRunTime", ""))


def pod_start_seconds(start_sim: Callable[..., SimProcess]) -> float:
    """How long a pod of these settings takes from its start to Ready on this machine now (the
    live stack starts its pods the same way: a `pyllmd sim` process, then `/health`)."""
    started = time.monotonic()
    start_sim(*ARGS)
    return round(time.monotonic() - started, 1)


def virtual(tmp_path: Path, startup: float) -> dict[str, Any]:
    (tmp_path / "v-stack.yaml").write_text(STACK, encoding="utf-8")
    trace = tmp_path / "v-trace.csv"
    trace.write_text(azure_trace(arrivals()), encoding="utf-8")
    workload = WORKLOAD.format(trace=trace, model=MODEL)
    (tmp_path / "v-workload.yaml").write_text(workload, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pyllmd", "simulate", "--stack", str(tmp_path / "v-stack.yaml"),
         "--workload", str(tmp_path / "v-workload.yaml"), "--output", str(tmp_path / "v"),
         "--interval", f"{INTERVAL}s", "--scrape-interval", "1s",
         "--pod-startup-delay", f"{startup}s", "--pod-startup-jitter", "0"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(
        (tmp_path / "v" / "summary_lifecycle_metrics.json").read_text("utf-8")
    )
    return report


def events(tmp_path: Path) -> list[tuple[float, int]]:
    lines = (tmp_path / "v" / "scale_events.csv").read_text(encoding="utf-8").splitlines()[1:]
    return [(float(t), int(to)) for t, _, _, to, _ in (line.split(",") for line in lines)]


@pytest.mark.timeout(420)
def test_live_and_virtual_scale_alike_and_agree_on_latency(
    tmp_path: Path, start_sim: Callable[..., SimProcess]
) -> None:
    startup = pod_start_seconds(start_sim)
    with running_stack(tmp_path, STACK, "--interval", f"{INTERVAL}s") as stack:
        ttfts, gaps, changes = asyncio.run(live_load(stack))
    report = virtual(tmp_path, startup)
    v_events = events(tmp_path)
    live_events = changes[1:]
    # the scenario's moves (up at the burst, down after it), the same live, each within one
    # interval, to the same final replicas
    assert [r for _, r in v_events] == [2, 1], (changes, v_events)
    assert live_events[-1][1] == v_events[-1][1], (changes, v_events)
    assert [r for _, r in live_events] == [r for _, r in v_events], (changes, v_events)
    for (t_live, _), (t_virtual, _) in zip(live_events, v_events, strict=True):
        assert abs(t_live - t_virtual) <= INTERVAL + 1.0, (changes, v_events)
    latency = report["successes"]["latency"]
    q = statistics.quantiles
    for name, values in (("time_to_first_token", ttfts), ("inter_token_latency", gaps)):
        live_p50, live_p90 = statistics.median(values), q(values, n=10)[-1]
        v_p50, v_p90 = latency[name]["median"], latency[name]["p90"]
        assert abs(live_p50 - v_p50) <= 0.15 * v_p50, (name, live_p50, v_p50, changes, v_events)
        assert abs(live_p90 - v_p90) <= 0.25 * v_p90, (name, live_p90, v_p90, changes, v_events)
