"""`pyllmd sim --latency-calculator batch` against `pyllmd simulate`: live and virtual agree.

The same pod settings (Llama-2-7B on an L40S: a decode step of about 20 ms) serve the same
constant-rate workload twice: once replayed in virtual time by `pyllmd simulate`, once live
through the openai client against a `pyllmd sim` process. Both run the `sim/batch` scheduler,
so their TTFT and inter-token latency means agree within 10 % (or 2 ms).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from openai import AsyncOpenAI

from tests.e2e.harness import SimProcess

pytestmark = pytest.mark.e2e

MODEL = "meta-llama/Llama-2-7b-hf"
POD_ARGS = [
    "--model", MODEL,
    "--accelerator", "L40S",
    "--max-num-seqs", "32",
    "--max-model-len", "4096",
    "--max-num-batched-tokens", "1024",
    "--enable-prefix-caching=false",  # the live prompts' text need not share ids with the replay's
    "--latency-calculator", "batch",
]  # fmt: skip
RATE = 4.0  # requests per second
DURATION = 5.0  # seconds
PROMPT = 1000  # tokens: a prefill long enough that HTTP costs are a small part of TTFT
OUTPUT = 30  # tokens


def stack_yaml() -> str:
    args = "\n".join(f"        - {json.dumps(a)}" for a in POD_ARGS)
    head = "variants:\n  - deployment:\n      name: llama\n      replicas: 1\n      args:\n"
    return head + args + "\n"


WORKLOAD = f"""
api:
  type: completion
  streaming: true
data:
  type: random
  input_distribution: {{min: {PROMPT}, max: {PROMPT}, mean: {PROMPT}, std_dev: 0}}
  output_distribution: {{min: {OUTPUT}, max: {OUTPUT}, mean: {OUTPUT}, std_dev: 0}}
server:
  type: vllm
  ignore_eos: true
load:
  type: constant
  stages:
    - rate: {RATE}
      duration: {DURATION}
"""


def simulated(tmp_path: Path) -> tuple[float, float]:
    """(TTFT mean, ITL mean) of the virtual-time replay, from its inference-perf report."""
    (tmp_path / "stack.yaml").write_text(stack_yaml(), encoding="utf-8")
    (tmp_path / "workload.yaml").write_text(WORKLOAD, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pyllmd", "simulate", "--stack", str(tmp_path / "stack.yaml"),
         "--workload", str(tmp_path / "workload.yaml"), "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(
        (tmp_path / "out" / "summary_lifecycle_metrics.json").read_text(encoding="utf-8")
    )
    assert summary["successes"]["count"] == int(RATE * DURATION)
    latency = summary["successes"]["latency"]
    return latency["time_to_first_token"]["mean"], latency["inter_token_latency"]["mean"]


async def live(base_url: str) -> tuple[float, float, list[str | None]]:
    """(TTFT mean, ITL mean, finish reasons) of the same load sent to the live server."""
    client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key="none", max_retries=0)
    prompt = "hello " * PROMPT
    ttfts: list[float] = []
    gaps: list[float] = []
    reasons: list[str | None] = []

    async def one(at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        start = time.monotonic()
        stream = await client.completions.create(
            model=MODEL,
            prompt=prompt,
            max_tokens=OUTPUT,
            stream=True,
            extra_body={"ignore_eos": True},
            timeout=60,
        )
        times: list[float] = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].text:
                times.append(time.monotonic())
                if len(times) == OUTPUT:
                    reasons.append(chunk.choices[0].finish_reason)
        assert len(times) == OUTPUT
        ttfts.append(times[0] - start)
        gaps.extend(b - a for a, b in zip(times, times[1:], strict=False))

    t0 = time.monotonic() + 0.2
    n = int(RATE * DURATION)
    async with asyncio.timeout(120):
        await asyncio.gather(*(one(t0 + i / RATE) for i in range(n)))
    await client.close()
    return sum(ttfts) / len(ttfts), sum(gaps) / len(gaps), reasons


def close(live_value: float, virtual: float) -> bool:
    return abs(live_value - virtual) <= max(0.10 * virtual, 0.002)


def test_live_batch_server_agrees_with_the_virtual_time_replay(
    tmp_path: Path, start_sim: Callable[..., SimProcess]
) -> None:
    ttft_virtual, itl_virtual = simulated(tmp_path)
    assert itl_virtual >= 0.010  # a configuration whose steps take 10 ms or more
    sim = start_sim(*POD_ARGS)
    ttft_live, itl_live, reasons = asyncio.run(live(sim.base_url))
    assert reasons == ["length"] * int(RATE * DURATION)
    assert close(ttft_live, ttft_virtual), (ttft_live, ttft_virtual)
    assert close(itl_live, itl_virtual), (itl_live, itl_virtual)
    metrics = sim.metrics()
    assert f'vllm:kv_cache_usage_perc{{model_name="{MODEL}"}}' in metrics
