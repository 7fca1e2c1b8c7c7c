"""LoRA adapters through HTTP with the openai client (checks 35, 39, 40)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import openai
import pytest

from pyllmd.core.clock import VirtualClock
from pyllmd.sim.engine.kvcache import BlockStored, ListSink

from .conftest import Sim, SimFactory, metric_value

LORA_INFO = "vllm:lora_requests_info"


async def lora_series(sim: Sim) -> dict[tuple[str, str], float]:
    """`(running, waiting) -> value` of every vllm:lora_requests_info series."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(await sim.metrics()):
        for s in family.samples:
            if s.name == LORA_INFO:
                out[(s.labels["running_lora_adapters"], s.labels["waiting_lora_adapters"])] = (
                    s.value
                )
    return out


async def wait_for_series(sim: Sim, running: str, waiting: str) -> float:
    """Poll /metrics (bounded) until the series for these adapter sets exists."""
    for _ in range(200):
        series = await lora_series(sim)
        if (running, waiting) in series:
            return series[(running, waiting)]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {LORA_INFO} series running={running!r} waiting={waiting!r}")


async def test_sim_acc_35_lora_info_at_start(start_sim: SimFactory) -> None:
    sim = await start_sim("--max-loras", "3")
    text = await sim.metrics()
    labels = 'max_lora="3",running_lora_adapters="",waiting_lora_adapters=""'
    assert f"{LORA_INFO}{{{labels}}} 1.7e+09\n" in text
    assert (await lora_series(sim)) == {("", ""): int(sim.clock.wall())}


async def test_sim_acc_39_load_list_chat_unload(start_sim: SimFactory) -> None:
    sim = await start_sim()
    r = await sim.post("/v1/load_lora_adapter", {"lora_name": "l1", "lora_path": "x"})
    assert r.status == 200 and await r.read() == b""
    models = await sim.client.models.list()
    by_id = {m.id: m for m in models.data}
    assert list(by_id) == ["m", "l1"]
    assert by_id["l1"].model_extra == {"root": "l1", "parent": "m"}
    assert by_id["m"].model_extra == {"root": "m", "parent": None}
    chat = await sim.client.chat.completions.create(
        model="l1", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert chat.model == "l1"
    r = await sim.post("/v1/unload_lora_adapter", {"lora_name": "l1"})
    assert r.status == 200 and await r.read() == b""
    with pytest.raises(openai.NotFoundError) as e:
        await sim.client.chat.completions.create(
            model="l1", messages=[{"role": "user", "content": "hi"}], max_tokens=3
        )
    assert "The model `l1` does not exist." in str(e.value)
    assert [m.id for m in (await sim.client.models.list()).data] == ["m"]


async def test_startup_adapters_serve_text_and_streams(start_sim: SimFactory) -> None:
    sim = await start_sim(
        "--served-model-name",
        "a",
        "b",
        "--lora-modules",
        '{"name":"l1","path":"/p","base_model_name":"m"}',
        '{"name":"l2"}',
    )
    assert [(m.id, m.model_extra) for m in (await sim.client.models.list()).data] == [
        ("a", {"root": "a", "parent": None}),
        ("b", {"root": "b", "parent": None}),
        ("l1", {"root": "l1", "parent": "a"}),
        ("l2", {"root": "l2", "parent": "a"}),
    ]
    text = await sim.client.completions.create(model="l2", prompt="hello", max_tokens=2)
    assert text.model == "l2"
    stream = await sim.client.chat.completions.create(
        model="l1", messages=[{"role": "user", "content": "x"}], max_tokens=2, stream=True
    )
    assert {chunk.model async for chunk in stream} == {"l1"}
    base = await sim.client.completions.create(model="b", prompt="hello", max_tokens=2)
    assert base.model == "a"
    # metrics keep the first served name as model_name, also for adapter requests
    text_metrics = await sim.metrics()
    total = sum(
        metric_value(text_metrics, "vllm:request_success_total", model_name="a", finish_reason=r)
        or 0
        for r in ("stop", "length")
    )
    assert total == 3


async def test_load_is_idempotent_and_unload_of_unknown_is_200(start_sim: SimFactory) -> None:
    sim = await start_sim()
    for _ in range(2):
        assert (await sim.post("/v1/load_lora_adapter", {"lora_name": "l1"})).status == 200
    assert (await sim.post("/v1/unload_lora_adapter", {"lora_name": "nope"})).status == 200
    assert [m.id for m in (await sim.client.models.list()).data] == ["m", "l1"]


@pytest.mark.parametrize(
    ("path", "verb"), [("/v1/load_lora_adapter", "load"), ("/v1/unload_lora_adapter", "unload")]
)
async def test_bad_lora_bodies_get_400(start_sim: SimFactory, path: str, verb: str) -> None:
    sim = await start_sim()
    async with sim.http.post(sim.url + path, data=b"{") as r:
        assert r.status == 400
        err = (await r.json())["error"]
    assert err["message"].startswith(f"failed to read and parse {verb} lora request body, ")
    assert err["type"] == "BadRequestError"
    async with sim.http.get(sim.url + path) as r:
        assert r.status == 405


async def test_sim_acc_40_second_adapter_waits_and_shows_as_waiting(start_sim: SimFactory) -> None:
    clock = VirtualClock()
    sim = await start_sim(
        "--max-loras",
        "1",
        "--time-to-first-token",
        "1s",
        "--lora-modules",
        '{"name":"l1"}',
        '{"name":"l2"}',
        clock=clock,
    )
    first = asyncio.create_task(
        sim.client.completions.create(model="l1", prompt="one", max_tokens=1)
    )
    await wait_for_series(sim, "l1", "")
    second = asyncio.create_task(
        sim.client.completions.create(model="l2", prompt="two", max_tokens=1)
    )
    stamp = await wait_for_series(sim, "l1", "l2")
    assert stamp == int(clock.wall())
    text = await sim.metrics()
    assert metric_value(text, "vllm:num_requests_running", model_name="m") == 1
    assert metric_value(text, "vllm:num_requests_waiting", model_name="m") == 1
    await clock.advance(1.0)
    assert (await asyncio.wait_for(first, 5)).model == "l1"
    assert not second.done()
    await wait_for_series(sim, "l2", "")
    await clock.advance(1.0)
    assert (await asyncio.wait_for(second, 5)).model == "l2"
    await wait_for_series(sim, "", "")
    text = await sim.metrics()
    # the second request waited one TTFT for the slot
    assert metric_value(text, "vllm:request_queue_time_seconds_sum", model_name="m") == 1.0


async def test_kv_events_carry_the_adapter(start_sim: SimFactory) -> None:
    sink = ListSink()
    sim = await start_sim(
        "--enable-kvcache",
        "--block-size",
        "8",
        "--lora-modules",
        '{"name":"l1"}',
        env={"POD_IP": "10.0.0.1"},
        sink=sink,
    )
    prompt = " ".join(f"w{i}" for i in range(8))
    await sim.client.completions.create(model="l1", prompt=prompt + " x", max_tokens=1)
    # the same first block for the base model: no new block, the LoRA is not hashed
    await sim.client.completions.create(model="m", prompt=prompt + " y", max_tokens=1)
    stored = [e for e in sink.events if isinstance(e, BlockStored)]
    assert [(e.lora_id, e.lora_name) for e in stored] == [(1, "l1")]


async def test_batch_max_loras_holds_another_adapter_and_shows_it_waiting(
    start_sim: SimFactory,
) -> None:
    """`--latency-calculator batch`: with `--max-loras 1`, a request on a second adapter
    waits while the first adapter's runs (vLLM's scheduler skips it), a base-model request
    behind it starts at once, and vllm:lora_requests_info shows both states."""
    clock = VirtualClock()
    sim = await start_sim(
        "--served-model-name", "m", "--model", "meta-llama/Llama-2-7b-hf",
        "--latency-calculator", "batch", "--max-loras", "1",
        "--lora-modules", '{"name":"l1"}', '{"name":"l2"}',
        clock=clock,
    )  # fmt: skip

    def ask(model: str, tokens: int) -> asyncio.Task[openai.types.Completion]:
        body = {"ignore_eos": True}
        return asyncio.create_task(
            sim.client.completions.create(
                model=model, prompt="one two three", max_tokens=tokens, extra_body=body
            )
        )

    async def until(what: str, check: Callable[[], bool]) -> None:
        for _ in range(2000):  # 1 ms at a time
            if check():
                return
            await clock.advance(0.001)
        raise AssertionError(f"never: {what}")

    async def series(running: str, waiting: str) -> None:
        for _ in range(2000):  # 1 ms at a time
            if (running, waiting) in await lora_series(sim):
                return
            await clock.advance(0.001)
        raise AssertionError(f"no {LORA_INFO} series running={running!r} waiting={waiting!r}")

    first = ask("l1", 30)
    await series("l1", "")
    second, base = ask("l2", 2), ask("m", 2)
    await series("l1", "l2")
    await until("the base-model request done", base.done)
    assert not first.done() and not second.done()  # l2 waits for l1's request to end
    await until("the l1 request done", first.done)
    assert not second.done()
    await series("l2", "")
    await until("the l2 request done", second.done)
    reply = await first
    assert (await second).model == "l2" and reply.usage is not None
    assert reply.usage.completion_tokens == 30
    await series("", "")
