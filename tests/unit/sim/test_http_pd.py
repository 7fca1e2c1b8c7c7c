"""P/D fields (spec §3.7), multimodal content blocks (§11.2) and /tokenize details (§2.7)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest

from pyllmd.core.clock import VirtualClock
from pyllmd.sim.batch.steptime import default_profile

from .conftest import SimFactory, metric_value
from .test_http_tools import WEATHER

MESSAGES: list[Any] = [{"role": "user", "content": "Hello, world!"}]
PREFILL_REPLY = {
    "do_remote_decode": False,
    "do_remote_prefill": True,
    "remote_engine_id": "DUMMY_ID",
    "remote_block_ids": ["DUMMY_ID"],
    "remote_host": "DUMMY",
    "remote_port": 1234,
    "tp_size": 1,
}


async def test_sim_acc_60_remote_decode_chat(start_sim: SimFactory) -> None:
    sim = await start_sim()
    resp = await sim.client.chat.completions.create(
        model="m",
        messages=MESSAGES,
        max_tokens=1,
        extra_body={"kv_transfer_params": {"do_remote_decode": True}},
    )
    assert resp.choices[0].finish_reason == "remote_decode"  # type: ignore[comparison-overlap]
    assert resp.model_extra is not None
    assert resp.model_extra["kv_transfer_params"] == PREFILL_REPLY
    assert resp.usage is not None and resp.usage.completion_tokens == 1
    metrics = await sim.metrics()
    assert (
        metric_value(
            metrics, "vllm:request_success_total", finish_reason="remote_decode", model_name="m"
        )
        == 1
    )


async def test_remote_decode_overrides_tool_calls(start_sim: SimFactory) -> None:
    sim = await start_sim()
    r = await sim.post(
        "/v1/chat/completions",
        {
            "model": "m",
            "messages": MESSAGES,
            "tools": [WEATHER],
            "tool_choice": "required",
            "kv_transfer_params": {"do_remote_decode": True},
        },
    )
    body = await r.json()
    assert body["choices"][0]["finish_reason"] == "remote_decode"
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert body["kv_transfer_params"] == PREFILL_REPLY


async def test_sim_acc_11_prefill_stream_rejected_chat(start_sim: SimFactory) -> None:
    sim = await start_sim()
    with pytest.raises(openai.BadRequestError) as exc:
        await sim.client.chat.completions.create(
            model="m",
            messages=MESSAGES,
            stream=True,
            extra_body={"kv_transfer_params": {"do_remote_decode": True}},
        )
    assert exc.value.body["message"] == "Prefill does not support streaming"  # type: ignore[index]


async def test_sim_acc_20_stream_chunks_carry_null_kv_transfer_params(
    start_sim: SimFactory,
) -> None:
    sim = await start_sim()
    for path, body in (
        ("/v1/chat/completions", {"messages": MESSAGES}),
        ("/v1/completions", {"prompt": "hi"}),
    ):
        async with sim.http.post(
            sim.url + path,
            json={
                "model": "m",
                "stream": True,
                "stream_options": {"include_usage": True},
                **body,
            },
        ) as r:
            events = [e.removeprefix("data: ") for e in (await r.text()).split("\n\n") if e]
        chunks = [json.loads(e) for e in events[:-1]]
        assert chunks and all(c["kv_transfer_params"] is None for c in chunks)
        assert all("kv_transfer_params" in c for c in chunks)


async def test_decoder_accepts_what_a_prefiller_returns(start_sim: SimFactory) -> None:
    """The decode side takes the prefiller's kv_transfer_params whatever their field types."""
    sim = await start_sim("--kv-cache-transfer-latency", "50ms", "--time-to-first-token", "1s")
    for params in (
        PREFILL_REPLY,
        {**PREFILL_REPLY, "remote_block_ids": [1, 2, 3], "remote_request_id": "x"},
    ):
        resp = await sim.client.chat.completions.create(
            model="m",
            messages=MESSAGES,
            max_tokens=3,
            stream=True,
            extra_body={"kv_transfer_params": params},
        )
        reasons = [c.choices[0].finish_reason async for c in resp if c.choices]
        assert reasons[-1] in ("stop", "length")
    metrics = await sim.metrics()
    assert metric_value(
        metrics, "vllm:time_to_first_token_seconds_sum", model_name="m"
    ) == pytest.approx(0.1)


async def test_multimodal_image_blocks_are_ignored(start_sim: SimFactory) -> None:
    sim = await start_sim("--mode", "echo")
    resp = await sim.client.chat.completions.create(
        model="m",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                    },
                    {"type": "text", "text": "this"},
                ],
            }
        ],
    )
    assert resp.choices[0].message.content == "Describe this"
    assert resp.usage is not None and resp.usage.prompt_tokens == 2
    r = await sim.post(
        "/v1/chat/completions",
        {
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}],
        },
    )
    assert r.status == 400  # image_url must be an object, as upstream's parser wants


async def test_sim_acc_49_tokenize_details(start_sim: SimFactory) -> None:
    sim = await start_sim()
    r = await sim.post("/tokenize", {"prompt": "Hello, world!"})
    body = await r.json()
    assert list(body) == ["max_model_len", "count", "tokens", "token_strs"]
    assert body["count"] == 4 and body["token_strs"] is None
    # messages: plain texts joined by one space (no trimming), images ignored, model unchecked
    r = await sim.post(
        "/tokenize",
        {
            "model": "not-served",
            "messages": [
                {"role": "system", "content": "a"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "b"},
                        {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
                    ],
                },
            ],
        },
    )
    joined = await (await sim.post("/tokenize", {"prompt": "a b "})).json()
    assert r.status == 200 and await r.json() == joined and joined["count"] == 2
    # an empty prompt with messages is not "both"
    r = await sim.post("/tokenize", {"prompt": "", "messages": [{"role": "user", "content": "x"}]})
    assert r.status == 200 and (await r.json())["count"] == 1
    async with sim.http.post(sim.url + "/tokenize", data=b"{") as r:
        assert r.status == 400
        message = (await r.json())["error"]["message"]
    assert message.startswith("Failed to read and parse tokenize request body, ")


BATCH = (
    "--served-model-name", "m",
    "--model", "meta-llama/Llama-2-7b-hf",
    "--latency-calculator", "batch",
)  # fmt: skip
PROMPT = "one two three four five six seven eight nine ten " * 5  # 50 tokens


def _pd_call(sim: Any, tokens: int, side: str, prompt: str = PROMPT) -> asyncio.Task[Any]:
    """A completion of `prompt` with `kv_transfer_params: {side: true}`, started now."""
    return asyncio.create_task(
        sim.client.completions.create(
            model="m",
            prompt=prompt,
            max_tokens=tokens,
            extra_body={"kv_transfer_params": {side: True}, "ignore_eos": True},
        )
    )


async def test_batch_prefill_side_returns_one_token(start_sim: SimFactory) -> None:
    clock = VirtualClock()
    sim = await start_sim(*BATCH, clock=clock)
    call = _pd_call(sim, 20, "do_remote_decode")
    await clock.advance(2.0)
    resp = await asyncio.wait_for(call, 5)
    assert resp.choices[0].finish_reason == "remote_decode"  # type: ignore[comparison-overlap]
    assert resp.model_extra is not None
    assert resp.model_extra["kv_transfer_params"] == PREFILL_REPLY
    assert resp.usage is not None and resp.usage.completion_tokens == 1
    text = await sim.metrics()
    assert metric_value(text, "vllm:iteration_tokens_total_sum", model_name="m") == 50


async def test_batch_decode_side_waits_for_the_kv_transfer_and_skips_the_prefill(
    start_sim: SimFactory,
) -> None:
    clock = VirtualClock()
    sim = await start_sim(*BATCH, "--kv-cache-transfer-latency", "300ms", clock=clock)
    call = _pd_call(sim, 5, "do_remote_prefill")
    await clock.advance(0.29)
    text = await sim.metrics()
    assert metric_value(text, "vllm:iteration_tokens_total_count", model_name="m") == 0
    await clock.advance(2.0)
    resp = await asyncio.wait_for(call, 5)
    assert resp.usage is not None and resp.usage.completion_tokens == 5
    text = await sim.metrics()
    # five steps of one token: the last prompt token with the first output token, then decodes
    assert metric_value(text, "vllm:iteration_tokens_total_sum", model_name="m") == 5
    ttft = metric_value(text, "vllm:time_to_first_token_seconds_sum", model_name="m")
    assert ttft is not None and ttft > 0.3


async def test_batch_decode_side_without_transfer_flags_waits_for_the_kv_over_the_network(
    start_sim: SimFactory,
) -> None:
    """No --kv-cache-transfer-* flag: the transfer takes the prompt's KV bytes (one GPU's
    shard: Llama-2-7B, 32 layers x 32 KV heads x 128 x K and V x 2 bytes = 512 KiB a token)
    over the accelerator's network (H100: 50 GB/s) plus 1 ms."""
    clock = VirtualClock()
    sim = await start_sim(*BATCH, "--max-model-len", "2048", clock=clock)
    prompt = " ".join(f"w{i}" for i in range(1000))
    call = _pd_call(sim, 2, "do_remote_prefill", prompt)
    for _ in range(2000):  # 1 ms at a time
        await clock.advance(0.001)
        if call.done():
            break
    resp = await call
    assert resp.usage is not None and resp.usage.prompt_tokens == 1000
    text = await sim.metrics()
    ttft = metric_value(text, "vllm:time_to_first_token_seconds_sum", model_name="m")
    transfer = 0.001 + 1000 * 524288 / 50e9  # 11.5 ms
    first = default_profile().first_token_s  # reading the request, before the engine
    assert ttft is not None and first + transfer < ttft < first + transfer + 0.015
