"""Sleep mode through HTTP (checks 50, 51; spec §4.6, §10.3; vLLM's hold-until-awake)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import openai
import pytest

from pyllmd.core.clock import VirtualClock
from pyllmd.sim.engine.kvcache import AllBlocksCleared, BlockStored, ListSink

from .conftest import Sim, SimFactory, metric_value

DEV = {"VLLM_SERVER_DEV_MODE": "1"}
SLEEP = "vllm:engine_sleep_state"


async def is_sleeping(sim: Sim) -> bool:
    async with sim.http.get(sim.url + "/is_sleeping") as r:
        assert r.status == 200 and r.content_type == "application/json"
        body = await r.json()
    assert set(body) == {"is_sleeping"}
    return bool(body["is_sleeping"])


async def post_ok(sim: Sim, path: str, **params: str | list[str]) -> None:
    query = [(k, v) for k, vs in params.items() for v in ([vs] if isinstance(vs, str) else vs)]
    async with sim.http.post(sim.url + path, params=query) as r:
        assert r.status == 200, await r.text()
        assert await r.read() == b""


def sleep_gauge(text: str) -> dict[str, float | None]:
    return {
        s: metric_value(text, SLEEP, engine="0", model_name="m", sleep_state=s)
        for s in ("awake", "weights_offloaded", "discard_all")
    }


async def wait_gauges(sim: Sim, **expected: float) -> str:
    """Poll /metrics (bounded) until the named model_name="m" gauges have these values."""
    text = ""
    for _ in range(200):
        text = await sim.metrics()
        got = {k: metric_value(text, f"vllm:{k}", model_name="m") for k in expected}
        if got == expected:
            return text
        await asyncio.sleep(0.01)
    raise AssertionError(f"gauges never reached {expected}:\n{text}")


@pytest.mark.parametrize(
    ("args", "env"),
    [
        ((), {}),
        (("--enable-sleep-mode",), {}),
        ((), DEV),
        (("--enable-sleep-mode",), {"VLLM_SERVER_DEV_MODE": "0"}),
    ],
)
async def test_sim_acc_51_sleep_needs_dev_mode_and_flag(
    start_sim: SimFactory, args: tuple[str, ...], env: Mapping[str, str]
) -> None:
    sim = await start_sim(*args, env=env)
    await post_ok(sim, "/sleep")
    assert await is_sleeping(sim) is False
    assert sleep_gauge(await sim.metrics())["awake"] == 1
    done = await sim.client.completions.create(model="m", prompt="hi", max_tokens=1)
    assert done.choices[0].text


async def test_sim_acc_51_sleep_and_wake_up(start_sim: SimFactory) -> None:
    sim = await start_sim("--enable-sleep-mode", env=DEV)
    assert await is_sleeping(sim) is False
    assert sleep_gauge(await sim.metrics()) == {
        "awake": 1,
        "weights_offloaded": 0,
        "discard_all": 0,
    }
    await post_ok(sim, "/sleep")
    assert await is_sleeping(sim) is True
    assert sleep_gauge(await sim.metrics()) == {
        "awake": 0,
        "weights_offloaded": 1,
        "discard_all": 0,
    }
    await post_ok(sim, "/wake_up")
    assert await is_sleeping(sim) is False
    assert sleep_gauge(await sim.metrics())["awake"] == 1


async def test_sim_acc_50_health_and_ready_while_sleeping(start_sim: SimFactory) -> None:
    sim = await start_sim("--enable-sleep-mode", env=DEV)
    await post_ok(sim, "/sleep", level="2")
    assert sleep_gauge(await sim.metrics())["discard_all"] == 1
    for path in ("/health", "/ready"):
        async with sim.http.get(sim.url + path) as r:
            assert (r.status, await r.json()) == (200, {})
    assert (await sim.client.models.list()).data[0].id == "m"


async def test_sleeping_server_holds_completions_until_awake(start_sim: SimFactory) -> None:
    clock = VirtualClock()
    sim = await start_sim(
        "--enable-sleep-mode", "--time-to-first-token", "1s", env=DEV, clock=clock
    )
    await post_ok(sim, "/sleep")
    held = asyncio.create_task(sim.client.completions.create(model="m", prompt="x", max_tokens=1))
    await wait_gauges(sim, num_requests_running=0, num_requests_waiting=1)
    await clock.advance(5.0)  # time passes; nothing runs while asleep
    assert not held.done()
    await post_ok(sim, "/wake_up", tags="weights")  # the KV cache still sleeps
    assert await is_sleeping(sim) is True
    await wait_gauges(sim, num_requests_running=0, num_requests_waiting=1)
    await post_ok(sim, "/wake_up", tags="kv_cache")
    assert await is_sleeping(sim) is False
    await wait_gauges(sim, num_requests_running=1, num_requests_waiting=0)
    await clock.advance(1.0)
    done = await asyncio.wait_for(held, 5)
    assert done.usage is not None and done.usage.completion_tokens == 1
    text = await sim.metrics()
    assert metric_value(text, "vllm:request_queue_time_seconds_sum", model_name="m") == 5.0


async def test_in_flight_requests_finish_after_sleep(start_sim: SimFactory) -> None:
    clock = VirtualClock()
    sim = await start_sim(
        "--enable-sleep-mode", "--time-to-first-token", "1s", env=DEV, clock=clock
    )
    running = asyncio.create_task(
        sim.client.completions.create(model="m", prompt="x", max_tokens=1)
    )
    await wait_gauges(sim, num_requests_running=1)
    await post_ok(sim, "/sleep", level="0")
    await clock.advance(1.0)
    assert (await asyncio.wait_for(running, 5)).choices[0].finish_reason == "length"
    assert await is_sleeping(sim) is True


async def test_level_0_sleep_clears_nothing_and_wake_up_with_any_tag_resumes(
    start_sim: SimFactory,
) -> None:
    sink = ListSink()
    sim = await start_sim(
        "--enable-sleep-mode", "--enable-kvcache", env={**DEV, "POD_IP": "10.0.0.1"}, sink=sink
    )
    await post_ok(sim, "/sleep", level="0")
    assert await is_sleeping(sim) is True
    assert sleep_gauge(await sim.metrics()) == {
        "awake": 0,
        "weights_offloaded": 0,
        "discard_all": 0,
    }
    await post_ok(sim, "/wake_up", tags="weights")
    assert await is_sleeping(sim) is False
    assert not any(isinstance(e, AllBlocksCleared) for e in sink.events)


async def test_kv_cache_is_cleared_on_every_sleep_and_refills_after_wake_up(
    start_sim: SimFactory,
) -> None:
    sink = ListSink()
    sim = await start_sim(
        "--enable-sleep-mode",
        "--enable-kvcache",
        "--block-size",
        "8",
        env={**DEV, "POD_IP": "10.0.0.1"},
        sink=sink,
    )
    prompt = " ".join(f"w{i}" for i in range(16))
    await sim.client.completions.create(model="m", prompt=prompt, max_tokens=1)
    assert [type(e) for e in sink.events] == [BlockStored, BlockStored]
    await post_ok(sim, "/sleep")
    await post_ok(sim, "/sleep")  # again while asleep: cleared again, as upstream
    assert [type(e) for e in sink.events[2:]] == [AllBlocksCleared, AllBlocksCleared]
    await post_ok(sim, "/wake_up")
    again = await sim.client.completions.create(model="m", prompt=prompt, max_tokens=1)
    assert again.usage is not None and again.usage.prompt_tokens_details is not None
    assert again.usage.prompt_tokens_details.cached_tokens == 0  # the cache came back empty
    assert [type(e) for e in sink.events[4:]] == [BlockStored, BlockStored]


async def test_queue_limit_still_applies_while_sleeping(start_sim: SimFactory) -> None:
    sim = await start_sim("--enable-sleep-mode", "--max-waiting-queue-length", "1", env=DEV)
    await post_ok(sim, "/sleep")
    held = asyncio.create_task(sim.client.completions.create(model="m", prompt="x", max_tokens=1))
    await wait_gauges(sim, num_requests_waiting=1)
    with pytest.raises(openai.RateLimitError):
        await sim.client.completions.create(model="m", prompt="y", max_tokens=1)
    await post_ok(sim, "/wake_up")
    assert (await asyncio.wait_for(held, 5)).choices[0].text


@pytest.mark.parametrize("level", ["3", "x"])
async def test_bad_sleep_level_is_400(start_sim: SimFactory, level: str) -> None:
    sim = await start_sim("--enable-sleep-mode", env=DEV)
    async with sim.http.post(sim.url + "/sleep", params={"level": level}) as r:
        assert r.status == 400
        err = (await r.json())["error"]
    assert err["message"] == f"invalid sleep level '{level}': must be 0, 1 or 2"
    assert await is_sleeping(sim) is False


async def test_wrong_methods_on_sleep_routes(start_sim: SimFactory) -> None:
    sim = await start_sim()
    for method, path in (("GET", "/sleep"), ("GET", "/wake_up"), ("POST", "/is_sleeping")):
        async with sim.http.request(method, sim.url + path) as r:
            assert r.status == 405, path


async def _batch_sim(start_sim: SimFactory, clock: VirtualClock) -> Any:
    """A sleep-mode simulator on the batch engine, on a virtual clock."""
    return await start_sim(
        "--enable-sleep-mode",
        "--served-model-name", "m",
        "--model", "meta-llama/Llama-2-7b-hf",
        "--latency-calculator", "batch",
        env=DEV,
        clock=clock,
    )  # fmt: skip


async def test_batch_calculator_holds_new_requests_while_asleep(start_sim: SimFactory) -> None:
    clock = VirtualClock()
    sim = await _batch_sim(start_sim, clock)
    await post_ok(sim, "/sleep")
    held = asyncio.create_task(sim.client.completions.create(model="m", prompt="x", max_tokens=1))
    await wait_gauges(sim, num_requests_running=0, num_requests_waiting=1)
    await clock.advance(5.0)  # time passes; nothing runs while asleep
    assert not held.done()
    await post_ok(sim, "/wake_up")
    await clock.advance(1.0)
    done = await asyncio.wait_for(held, 5)
    assert done.usage is not None and done.usage.completion_tokens == 1


async def test_batch_calculator_level_1_sleep_discards_the_prefix_cache(
    start_sim: SimFactory,
) -> None:
    clock = VirtualClock()
    sim = await _batch_sim(start_sim, clock)
    prompt = "one two three four five six seven eight nine ten " * 4  # 40 tokens

    async def cached() -> int | None:
        call = asyncio.create_task(sim.client.completions.create(model="m", prompt=prompt))
        await clock.advance(60.0)
        usage = (await asyncio.wait_for(call, 5)).usage
        assert usage is not None and usage.prompt_tokens_details is not None
        return usage.prompt_tokens_details.cached_tokens

    assert await cached() == 0
    assert await cached() == 32
    await post_ok(sim, "/sleep", level="0")  # keeps the KV cache
    await post_ok(sim, "/wake_up")
    assert await cached() == 32
    await post_ok(sim, "/sleep", level="1")
    await post_ok(sim, "/wake_up")
    assert await cached() == 0
