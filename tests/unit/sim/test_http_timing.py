"""Latency acceptance checks through HTTP, exactly, in stepping virtual time (checks 27-31, 55)."""

from __future__ import annotations

import pytest

from pyllmd.core.clock import SteppingClock

from .conftest import SimFactory, metric_value

PROMPT20 = " ".join(f"t{i}" for i in range(20))  # 20 simple tokens


async def ttft_sum(sim: object) -> float:
    text = await sim.metrics()  # type: ignore[attr-defined]
    return metric_value(text, "vllm:time_to_first_token_seconds_sum", model_name="m") or 0.0


async def test_sim_acc_27_total_latency(start_sim: SimFactory) -> None:
    clock = SteppingClock()
    sim = await start_sim(
        "--time-to-first-token", "500ms", "--inter-token-latency", "100ms", clock=clock
    )
    before = clock.now()
    resp = await sim.client.completions.create(
        model="m", prompt="hi", max_tokens=5, extra_body={"ignore_eos": True}
    )
    assert resp.usage is not None and resp.usage.completion_tokens == 5
    assert clock.now() - before == pytest.approx(0.9)


async def test_sim_acc_28_prefill_ttft(start_sim: SimFactory) -> None:
    sim = await start_sim("--prefill-overhead", "100ms", "--prefill-time-per-token", "10ms")
    await sim.client.completions.create(model="m", prompt=PROMPT20, max_tokens=2)
    assert await ttft_sum(sim) == pytest.approx(0.3)


async def test_sim_acc_29_remote_prefill_ttft(start_sim: SimFactory) -> None:
    sim = await start_sim("--kv-cache-transfer-latency", "50ms", "--time-to-first-token", "1s")
    await sim.client.completions.create(
        model="m",
        prompt="hi",
        max_tokens=2,
        extra_body={"kv_transfer_params": {"do_remote_prefill": True}},
    )
    assert await ttft_sum(sim) == pytest.approx(0.05)


async def test_sim_acc_30_per_token_calculator(start_sim: SimFactory) -> None:
    sim = await start_sim(
        "--latency-calculator",
        "per-token",
        "--time-to-first-token",
        "1s",
        "--prefill-overhead",
        "20ms",
    )
    await sim.client.completions.create(model="m", prompt="hi", max_tokens=2)
    assert await ttft_sum(sim) == pytest.approx(0.02)


async def test_sim_acc_55_cached_prefix_shortens_ttft(start_sim: SimFactory) -> None:
    sim = await start_sim(
        "--enable-kvcache",
        "--block-size",
        "8",
        "--prefill-time-per-token",
        "10ms",
        env={"POD_IP": "10.0.0.1"},
    )
    first = await sim.client.completions.create(model="m", prompt=PROMPT20, max_tokens=2)
    t1 = await ttft_sum(sim)
    second = await sim.client.completions.create(model="m", prompt=PROMPT20, max_tokens=2)
    t2 = await ttft_sum(sim) - t1
    assert t1 == pytest.approx(0.2)
    assert t2 == pytest.approx(0.2 - 16 * 0.01)  # two full blocks of 8 were cached
    assert first.usage is not None and second.usage is not None
    assert first.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details.cached_tokens == 16
