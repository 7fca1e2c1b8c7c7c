"""The KV cache through HTTP: capacity errors, events, usage gauge, cached tokens (checks 53-55)."""

from __future__ import annotations

import asyncio

import openai
import pytest

from pyllmd.core.clock import VirtualClock
from pyllmd.sim.engine.kvcache import BlockRemoved, BlockStored, ListSink

from .conftest import SimFactory, metric_value

KV = ("--enable-kvcache", "--block-size", "8")
ENV = {"POD_IP": "10.0.0.1"}


def words(prefix: str, n: int) -> str:
    """A prompt of exactly n simple tokens."""
    return " ".join(f"{prefix}{i}" for i in range(n))


async def test_sim_acc_53_capacity_error(start_sim: SimFactory) -> None:
    sim = await start_sim(*KV, "--kv-cache-size", "2", env=ENV)
    with pytest.raises(openai.InternalServerError) as e:
        await sim.client.completions.create(model="m", prompt=words("a", 24), max_tokens=2)
    assert "the kv cache does not have sufficient capacity to store this request" in str(e.value)


async def test_sim_acc_54_eviction_events_and_usage(start_sim: SimFactory) -> None:
    sink = ListSink()
    sim = await start_sim(*KV, "--kv-cache-size", "2", env=ENV, sink=sink)
    await sim.client.completions.create(model="m", prompt=words("a", 16), max_tokens=2)
    first = list(sink.events)
    assert [type(e) for e in first] == [BlockStored, BlockStored]
    text = await sim.metrics()
    assert metric_value(text, "vllm:kv_cache_usage_perc", model_name="m") == 0
    await sim.client.completions.create(model="m", prompt=words("b", 16), max_tokens=2)
    second = sink.events[len(first) :]
    removed = {e.block_hash for e in second if isinstance(e, BlockRemoved)}
    stored = [e for e in second if isinstance(e, BlockStored)]
    assert removed == {e.block_hash for e in first if isinstance(e, BlockStored)}
    assert len(stored) == 2 and stored[1].parent_block_hash == stored[0].block_hash
    assert all(len(e.token_ids) == 8 and e.block_size == 8 for e in stored)
    text = await sim.metrics()
    assert metric_value(text, "vllm:kv_cache_usage_perc", model_name="m") == 0


async def test_chat_uses_the_prefix_cache(start_sim: SimFactory) -> None:
    sim = await start_sim(*KV, env=ENV)
    messages = [{"role": "user", "content": words("c", 20)}]
    one = await sim.client.chat.completions.create(model="m", messages=messages, max_tokens=2)  # type: ignore[arg-type]
    two = await sim.client.chat.completions.create(model="m", messages=messages, max_tokens=2)  # type: ignore[arg-type]
    assert one.usage is not None and one.usage.prompt_tokens_details is not None
    assert two.usage is not None and two.usage.prompt_tokens_details is not None
    assert one.usage.prompt_tokens_details.cached_tokens == 0
    assert two.usage.prompt_tokens_details.cached_tokens == 16


async def test_cache_hit_threshold_uses_hits_before_insertion(start_sim: SimFactory) -> None:
    sim = await start_sim(*KV, env=ENV)
    body = {"model": "m", "prompt": words("d", 16), "max_tokens": 3, "cache_hit_threshold": 0.5}
    first = await (await sim.post("/v1/completions", body)).json()
    second = await (await sim.post("/v1/completions", body)).json()
    assert first["choices"][0]["finish_reason"] == "cache_threshold"
    assert first["usage"]["completion_tokens"] == 0
    assert second["choices"][0]["finish_reason"] != "cache_threshold"


BATCH = (
    "--served-model-name", "m",
    "--model", "meta-llama/Llama-2-7b-hf",
    "--latency-calculator", "batch",
    "--max-num-batched-tokens", "8",
    "--max-num-seqs", "4",
    "--kv-cache-size", "600",
)  # fmt: skip


async def test_batch_calculator_stores_a_block_when_it_fills(start_sim: SimFactory) -> None:
    prompt = words("a", 20)  # two full blocks of 8, then a partial one
    reference = ListSink()  # the per-request cache: every prompt block at the start
    sim = await start_sim(*KV, env=ENV, sink=reference)
    await sim.client.completions.create(model="m", prompt=prompt, max_tokens=1)
    want = [e for e in reference.events if isinstance(e, BlockStored)]
    assert len(want) == 2

    clock = VirtualClock()
    sink = ListSink()
    sim = await start_sim(*KV, *BATCH, env=ENV, sink=sink, clock=clock)
    call = asyncio.create_task(sim.client.completions.create(model="m", prompt=prompt))
    seen: list[int] = []
    for _ in range(2000):  # 1 ms at a time: a chunk of 8 prompt tokens per step
        await clock.advance(0.001)
        if not seen or len(sink.events) != seen[-1]:
            seen.append(len(sink.events))
        if call.done():
            break
    await call
    assert seen[:3] == [0, 1, 2]  # one block per step, as each one fills
    assert sink.events[:2] == want  # the same keys, parents and tokens as the other cache
