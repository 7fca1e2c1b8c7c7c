"""Streamed tool calls: rebuilt by the openai client's stream helpers; TTFT applied once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest

from pyllmd.core.clock import SteppingClock

from .conftest import SimFactory, metric_value, serve_in_thread
from .test_http_tools import BOOKING, MESSAGES, TOOL_ID, WEATHER

TOOLS: list[Any] = [WEATHER, BOOKING]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_in_thread(["--time-to-first-token", "2ms", "--inter-token-latency", "1ms"]) as url:
        yield url + "/v1"


def _check_calls(calls: list[Any]) -> None:
    assert calls
    for index, call in enumerate(calls):
        assert call.index == index and call.type == "function"
        assert TOOL_ID.match(call.id), call.id  # one id, not one per chunk glued together
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_sync_stream_helper_rebuilds_tool_calls(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0)
    for _ in range(5):
        with client.chat.completions.stream(
            model="m", messages=MESSAGES, tools=TOOLS, tool_choice="required"
        ) as stream:
            kinds = [event.type for event in stream]
            final = stream.get_final_completion()
        choice = final.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content == ""
        _check_calls(choice.message.tool_calls or [])
        assert "tool_calls.function.arguments.delta" in kinds
    client.close()


async def test_async_stream_helper_rebuilds_tool_calls(base_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0)
    async with client.chat.completions.stream(
        model="m",
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "book"}},
        stream_options={"include_usage": True},
    ) as stream:
        deltas = [e async for e in stream if e.type == "tool_calls.function.arguments.delta"]
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    _check_calls(calls)
    assert [c.function.name for c in calls] == ["book"]
    assert "".join(d.arguments_delta for d in deltas) == calls[0].function.arguments
    assert final.usage is not None
    assert final.usage.completion_tokens == 3 + len(deltas)  # one chunk per argument token
    await client.close()


async def test_raw_stream_shape_and_single_finish(start_sim: SimFactory) -> None:
    sim = await start_sim()
    async with sim.http.post(
        sim.url + "/v1/chat/completions",
        json={
            "model": "m",
            "stream": True,
            "messages": MESSAGES,
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        },
    ) as r:
        raw = await r.text()
    events = [e.removeprefix("data: ") for e in raw.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"] for c in chunks[1:]]
    first = deltas[0]["tool_calls"][0]
    assert first["function"]["name"] == "get_weather" and first["type"] == "function"
    assert all(set(d["tool_calls"][0]) == {"function", "index"} for d in deltas[1:])
    assert all(d["content"] == "" for d in deltas)
    reasons = [c["choices"][0]["finish_reason"] for c in chunks]
    assert reasons[-1] == "tool_calls" and reasons.count("tool_calls") == 1
    assert all(c["kv_transfer_params"] is None and c["usage"] is None for c in chunks)


async def test_streamed_tool_calls_wait_ttft_once(start_sim: SimFactory) -> None:
    """Beyond upstream, which waits the time to first token again before every call."""
    clock = SteppingClock()
    sim = await start_sim(
        "--time-to-first-token", "500ms", "--inter-token-latency", "10ms", clock=clock
    )
    for _ in range(3):
        before = clock.now()
        stream = await sim.client.chat.completions.create(
            model="m",
            messages=MESSAGES,
            tools=[WEATHER, WEATHER, WEATHER],
            tool_choice="required",
            stream=True,
        )
        chunks = [c async for c in stream]
        argument_chunks = sum(len(c.choices[0].delta.tool_calls or []) for c in chunks)
        assert clock.now() - before == pytest.approx(0.5 + 0.01 * (argument_chunks - 1))
    metrics = await sim.metrics()
    assert metric_value(metrics, "vllm:time_to_first_token_seconds_count", model_name="m") == 3
    assert metric_value(
        metrics, "vllm:time_to_first_token_seconds_sum", model_name="m"
    ) == pytest.approx(1.5)
