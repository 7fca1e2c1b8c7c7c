"""Queueing behaviour through HTTP, in virtual time (checks 31-33 and the worker-leak fix)."""

from __future__ import annotations

import asyncio

import pytest

from pyllmd.core.clock import VirtualClock

from .conftest import Sim, SimFactory, metric_value

BODY = {"model": "m", "prompt": "hello there", "max_tokens": 3}


async def wait_metrics(sim: Sim, **expected: float) -> str:
    """Poll /metrics (bounded) until every named gauge has the expected value."""
    text = ""
    for _ in range(200):
        text = await sim.metrics()
        if all(
            metric_value(text, k.replace("__", ":"), model_name="m") == v
            for k, v in expected.items()
        ):
            return text
        await asyncio.sleep(0.01)
    raise AssertionError(f"metrics never reached {expected}:\n{text}")


async def test_sim_acc_32_33_queue_full(start_sim: SimFactory) -> None:
    clock = VirtualClock()
    sim = await start_sim(
        "--max-num-seqs",
        "1",
        "--max-waiting-queue-length",
        "1",
        "--time-to-first-token",
        "1s",
        clock=clock,
    )
    tasks = [asyncio.create_task(sim.post("/v1/completions", BODY)) for _ in range(3)]
    done, _ = await asyncio.wait(tasks, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    rejected = done.pop().result()
    assert rejected.status == 429
    err = (await rejected.json())["error"]
    assert err["message"] == "Failed to enqueue request, waiting requests queue is full"
    assert err["type"] == "RateLimitError"
    # check 33: while one runs and one waits
    await wait_metrics(sim, vllm__num_requests_running=1, vllm__num_requests_waiting=1)
    for _ in range(3):
        await clock.advance(1.0)
    statuses = sorted([(await t).status for t in tasks])
    assert statuses == [200, 200, 429]
    await wait_metrics(sim, vllm__num_requests_running=0, vllm__num_requests_waiting=0)


async def test_queue_3x_max_num_seqs(start_sim: SimFactory) -> None:
    """3×max-num-seqs concurrent: running never exceeds the limit, late TTFT includes queue time."""
    clock = VirtualClock()
    sim = await start_sim("--max-num-seqs", "2", "--time-to-first-token", "100ms", clock=clock)
    tasks = [
        asyncio.create_task(sim.post("/v1/completions", {**BODY, "max_tokens": 1}))
        for _ in range(6)
    ]
    await wait_metrics(sim, vllm__num_requests_running=2, vllm__num_requests_waiting=4)
    finished_at: list[float] = []
    for _ in range(3):
        await clock.advance(0.1)
        text = await sim.metrics()
        assert (metric_value(text, "vllm:num_requests_running", model_name="m") or 0) <= 2
        for _ in range(100):
            if sum(t.done() for t in tasks) >= len(finished_at) + 2:
                break
            await asyncio.sleep(0.01)
        finished_at += [clock.now()] * (sum(t.done() for t in tasks) - len(finished_at))
    assert [(await t).status for t in tasks] == [200] * 6
    assert finished_at == pytest.approx([0.1, 0.1, 0.2, 0.2, 0.3, 0.3])
    text = await sim.metrics()
    # the four queued requests waited 0.1 s or 0.2 s
    assert metric_value(text, "vllm:request_queue_time_seconds_count", model_name="m") == 4
    assert metric_value(
        text, "vllm:request_queue_time_seconds_sum", model_name="m"
    ) == pytest.approx(0.6)


async def test_failure_after_scheduling_releases_worker(start_sim: SimFactory) -> None:
    """Upstream leaks the worker on a KV-capacity error; here the next request still runs."""
    sim = await start_sim(
        "--max-num-seqs",
        "1",
        "--enable-kvcache",
        "--kv-cache-size",
        "1",
        "--block-size",
        "8",
        env={"POD_IP": "127.0.0.1"},
    )
    long_prompt = " ".join(f"w{i}" for i in range(24))
    for _ in range(3):
        r = await sim.post(
            "/v1/completions", {"model": "m", "prompt": long_prompt, "max_tokens": 2}
        )
        assert r.status == 500
        assert "sufficient capacity" in (await r.json())["error"]["message"]
    r = await sim.post("/v1/completions", {"model": "m", "prompt": "hi", "max_tokens": 2})
    assert r.status == 200
    text = await sim.metrics()
    assert metric_value(text, "vllm:num_requests_running", model_name="m") == 0


async def test_sim_acc_31_time_factor_under_load(start_sim: SimFactory) -> None:
    clock = VirtualClock()
    sim = await start_sim(
        "--time-factor-under-load",
        "2",
        "--max-num-seqs",
        "5",
        "--time-to-first-token",
        "100ms",
        clock=clock,
    )
    tasks = [asyncio.create_task(sim.post("/v1/completions", BODY)) for _ in range(5)]
    await wait_metrics(sim, vllm__num_requests_running=5)
    await clock.advance(1.0)
    assert [(await t).status for t in tasks] == [200] * 5
    text = await sim.metrics()
    # the n-th request to start sees factor 1 + (n-1)/4: 100, 125, 150, 175, 200 ms
    assert metric_value(
        text, "vllm:time_to_first_token_seconds_sum", model_name="m"
    ) == pytest.approx(0.75)


async def test_client_disconnect_frees_queue_and_worker(start_sim: SimFactory) -> None:
    """A client that leaves is dropped from the queue; one that leaves mid-run frees its worker."""
    clock = VirtualClock()
    sim = await start_sim("--max-num-seqs", "1", "--time-to-first-token", "10s", clock=clock)
    running = asyncio.create_task(sim.post("/v1/completions", BODY))
    await wait_metrics(sim, vllm__num_requests_running=1)
    queued = asyncio.create_task(sim.post("/v1/completions", BODY))
    await wait_metrics(sim, vllm__num_requests_running=1, vllm__num_requests_waiting=1)
    queued.cancel()
    await wait_metrics(sim, vllm__num_requests_running=1, vllm__num_requests_waiting=0)
    running.cancel()
    await wait_metrics(sim, vllm__num_requests_running=0, vllm__num_requests_waiting=0)
    text = await sim.metrics()
    # nothing succeeded: the pre-created series stays at 0
    assert (
        metric_value(text, "vllm:request_success_total", finish_reason="stop", model_name="m") == 0
    )
