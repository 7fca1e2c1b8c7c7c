"""Tool calls through HTTP with the real openai client (spec §8, checks 41-45)."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletionMessageToolCall

from pyllmd.core.clock import SteppingClock
from pyllmd.sim.engine.toolcalls import STRING_VALUES

from .conftest import SimFactory, metric_value, serve_in_thread

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
BOOKING: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "book",
        "description": "Book a table",
        "parameters": {
            "type": "object",
            "properties": {
                "guests": {"type": "integer"},
                "price": {"type": "number"},
                "vegan": {"type": "boolean"},
                "when": {"type": "string", "enum": ["lunch", "dinner"]},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                "contact": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "phone": {"type": "string"}},
                    "required": ["name"],
                },
            },
            "required": ["guests", "when", "tags", "contact"],
        },
    },
}
MESSAGES: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOL_ID = re.compile(r"^chatcmpl-tool-\d{10}$")


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_in_thread() as url:
        yield url


@pytest.fixture(scope="module")
def sync_client(base_url: str) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="none", max_retries=0)
    yield client
    client.close()


def _tokenize(base_url: str, prompt: str) -> Any:
    req = urllib.request.Request(
        base_url + "/tokenize",
        data=json.dumps({"prompt": prompt}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _check_against_schema(call: ChatCompletionMessageToolCall, tools: list[Any]) -> None:
    schema = next(
        t["function"]["parameters"] for t in tools if t["function"]["name"] == call.function.name
    )
    jsonschema.validate(json.loads(call.function.arguments), schema)


def test_sim_acc_41_required_tool_call(sync_client: openai.OpenAI) -> None:
    resp = sync_client.chat.completions.create(
        model="m", messages=MESSAGES, tools=[WEATHER], tool_choice="required"
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == ""
    assert choice.logprobs is None
    calls = choice.message.tool_calls or []
    assert len(calls) == 1
    call = calls[0]
    assert isinstance(call, ChatCompletionMessageToolCall)
    assert call.type == "function" and call.function.name == "get_weather"
    assert TOOL_ID.match(call.id)
    assert json.loads(call.function.arguments)["city"] in STRING_VALUES
    _check_against_schema(call, [WEATHER])


def test_tool_arguments_are_valid_for_every_schema_and_counted(
    sync_client: openai.OpenAI, base_url: str
) -> None:
    tools = [WEATHER, BOOKING]
    seen: set[str] = set()
    for _ in range(40):
        resp = sync_client.chat.completions.create(
            model="m", messages=MESSAGES, tools=tools, tool_choice="required"
        )
        calls = resp.choices[0].message.tool_calls or []
        assert 1 <= len(calls) <= 2
        assert [c.index for c in calls] == list(range(len(calls)))  # type: ignore[attr-defined]
        for call in calls:
            assert isinstance(call, ChatCompletionMessageToolCall)
            _check_against_schema(call, tools)
            seen.add(call.function.name)
            args = call.function.arguments
            assert args == json.dumps(json.loads(args), separators=(",", ":"), sort_keys=True)
        # usage: 3 per call plus the tokens of its arguments (as /tokenize counts them)
        expected = 0
        for call in calls:
            expected += 3 + _tokenize(base_url, call.function.arguments)["count"]
        assert resp.usage is not None and resp.usage.completion_tokens == expected
    assert seen == {"get_weather", "book"}


def test_auto_choice_sometimes_answers_with_text(sync_client: openai.OpenAI) -> None:
    reasons = set()
    for _ in range(30):
        resp = sync_client.chat.completions.create(
            model="m", messages=MESSAGES, tools=[WEATHER], max_tokens=5
        )
        choice = resp.choices[0]
        reasons.add(choice.finish_reason)
        if choice.finish_reason == "tool_calls":
            assert choice.message.content == "" and choice.message.tool_calls
        else:
            assert choice.message.content and not choice.message.tool_calls
    assert "tool_calls" in reasons and reasons & {"stop", "length"}


def test_named_choice_calls_exactly_that_tool(sync_client: openai.OpenAI) -> None:
    for _ in range(10):
        resp = sync_client.chat.completions.create(
            model="m",
            messages=MESSAGES,
            tools=[WEATHER, BOOKING],
            tool_choice={"type": "function", "function": {"name": "book"}},
        )
        calls = resp.choices[0].message.tool_calls or []
        assert [c.function.name for c in calls] == ["book"]  # type: ignore[union-attr]


def test_sim_acc_42_named_choice_not_found(sync_client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        sync_client.chat.completions.create(
            model="m",
            messages=MESSAGES,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "missing"}},
        )
    assert exc.value.status_code == 500
    message = exc.value.body["message"]  # type: ignore[index]
    assert message.startswith("failed to create response for chat completion request (req id ")
    assert message.endswith(
        "tool with name 'missing' requested in tool_choice but not found in the tools list"
    )


def test_sim_acc_43_tool_without_parameters(sync_client: openai.OpenAI) -> None:
    for function in (
        {"name": "f", "description": "d"},
        {"name": "f", "description": "d", "parameters": {}},
        {"name": "f", "parameters": {"type": "object"}},  # object without properties
        {"name": "f", "parameters": {"type": "array", "items": {"type": "date"}}},
        {"name": "f", "parameters": {"type": "object", "properties": {}, "enum": ["a"]}},
        {"name": "f", "parameters": {"type": "string", "enum": [1, 2]}},
        {"name": "f", "parameters": {"type": "array", "items": {"type": "string"}, "minItems": -1}},
    ):
        with pytest.raises(openai.BadRequestError) as exc:
            sync_client.chat.completions.create(
                model="m",
                messages=MESSAGES,
                tools=[{"type": "function", "function": function}],  # type: ignore[list-item]
            )
        assert exc.value.body["message"].startswith("Tool validation failed: ")  # type: ignore[index]


def test_valid_tool_definitions_pass(sync_client: openai.OpenAI) -> None:
    good = {
        "name": "f",
        "parameters": {
            "type": "object",
            "description": "all the allowed keys",
            "additionalProperties": False,
            "properties": {
                "n": {"type": "integer", "enum": [1, 2, 3]},
                "x": {"type": "number", "enum": [1.5, 2]},
                "flag": {"type": "boolean", "enum": [True]},
                "none": {"type": "null"},
                "list": {"type": "array", "items": {"type": "integer"}, "maxItems": 2},
            },
            "required": ["n", "x", "flag", "list"],
        },
    }
    resp = sync_client.chat.completions.create(
        model="m",
        messages=MESSAGES,
        tools=[{"type": "function", "function": good}],  # type: ignore[list-item]
        tool_choice="none",
    )
    assert resp.choices[0].finish_reason in ("stop", "length")


async def test_sim_acc_44_fixed_integer_parameter(start_sim: SimFactory) -> None:
    sim = await start_sim(
        "--min-tool-call-integer-param", "5", "--max-tool-call-integer-param", "5"
    )
    tool = {
        "type": "function",
        "function": {
            "name": "count",
            "description": "",
            "parameters": {
                "type": "object",
                "properties": {
                    "n": {"type": "integer"},
                    "many": {"type": "array", "items": {"type": "integer"}},
                },
                "required": ["n", "many"],
            },
        },
    }
    for _ in range(20):
        resp = await sim.client.chat.completions.create(
            model="m",
            messages=MESSAGES,
            tools=[tool],
            tool_choice="required",  # type: ignore[list-item]
        )
        for call in resp.choices[0].message.tool_calls or []:
            args = json.loads(call.function.arguments)  # type: ignore[union-attr]
            assert args["n"] == 5 and set(args["many"]) == {5}
            assert 1 <= len(args["many"]) <= 5


async def test_sim_acc_45_tool_choice_none(start_sim: SimFactory) -> None:
    sim = await start_sim("--mode", "echo")
    resp = await sim.client.chat.completions.create(
        model="m", messages=MESSAGES, tools=[WEATHER], tool_choice="none"
    )
    choice = resp.choices[0]
    assert choice.message.content == "What is the weather in Paris?"
    assert choice.message.tool_calls is None and choice.finish_reason == "stop"


async def test_array_and_number_limits_from_flags(start_sim: SimFactory) -> None:
    sim = await start_sim(
        "--min-tool-call-array-param-length",
        "3",
        "--max-tool-call-array-param-length",
        "3",
        "--min-tool-call-number-param",
        "2.5",
        "--max-tool-call-number-param",
        "3",
        "--tool-call-not-required-param-probability",
        "0",
    )
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "description": "",
            "parameters": {
                "type": "object",
                "properties": {
                    "xs": {"type": "array", "items": {"type": "number"}},
                    "optional": {"type": "string"},
                },
                "required": ["xs"],
            },
        },
    }
    for _ in range(10):
        resp = await sim.client.chat.completions.create(
            model="m",
            messages=MESSAGES,
            tools=[tool],
            tool_choice="required",  # type: ignore[list-item]
        )
        args = json.loads(resp.choices[0].message.tool_calls[0].function.arguments)  # type: ignore[index,union-attr]
        assert list(args) == ["xs"]  # never the optional parameter at probability 0
        assert len(args["xs"]) == 3 and all(2.5 <= x < 3 for x in args["xs"])


async def test_tool_call_errors_are_500_and_release_the_worker(start_sim: SimFactory) -> None:
    sim = await start_sim("--max-num-seqs", "1")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"tools": [], "tool_choice": "required"}, "no tools available to create tool calls"),
        ({"tools": []}, "no tools available to create tool calls"),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "null"}},
                    }
                ],
                "tool_choice": {"type": "function", "function": {"name": "f"}},
            },
            "",  # a null top-level schema has no properties: an empty argument object
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {
                                "type": "object",
                                "properties": {"z": {"type": "null"}},
                                "required": ["z"],
                            },
                        },
                    }
                ],
                "tool_choice": "required",
            },
            "tool parameters of type null are not supported",
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {
                                "type": "object",
                                "properties": {
                                    "a": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                        "minItems": 4,
                                        "maxItems": 2,
                                    }
                                },
                                "required": ["a"],
                            },
                        },
                    }
                ],
                "tool_choice": "required",
            },
            "minItems (4) is greater than maxItems(2)",
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {
                                "type": "object",
                                "properties": {
                                    "a": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                        "minItems": 10**12,
                                        "maxItems": 10**12,
                                    }
                                },
                                "required": ["a"],
                            },
                        },
                    }
                ],
                "tool_choice": "required",
            },
            "tool arguments would exceed 10000 values",
        ),
    ]
    for extra, message in cases:
        r = await sim.post("/v1/chat/completions", {"model": "m", "messages": MESSAGES, **extra})
        body = await r.json()
        if not message:
            assert r.status == 200
            assert body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{}"
            continue
        assert r.status == 500, body
        assert body["error"]["type"] == "InternalServerError"
        assert body["error"]["message"].endswith(message)
    metrics = await sim.metrics()
    assert metric_value(metrics, "vllm:num_requests_running", model_name="m") == 0
    resp = await sim.client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=2)
    assert resp.choices[0].message.content


@pytest.mark.parametrize(
    "choice,message",
    [
        (None, "unknown ToolChoice type: "),
        ({"type": "bogus"}, "unknown ToolChoice type: bogus"),
        ({"function": {"name": "x"}}, "unknown ToolChoice type: "),
        (7, "tool_choice must be a string or an object"),
    ],
)
async def test_bad_tool_choice_is_a_parse_error(
    start_sim: SimFactory, choice: object, message: str
) -> None:
    sim = await start_sim()
    r = await sim.post(
        "/v1/chat/completions",
        {"model": "m", "messages": MESSAGES, "tools": [WEATHER], "tool_choice": choice},
    )
    assert r.status == 400
    text = (await r.json())["error"]["message"]
    assert text.startswith("Failed to read and parse request body") and text.endswith(message)


async def test_custom_and_other_choices_act_as_auto(start_sim: SimFactory) -> None:
    sim = await start_sim()
    for choice in (
        {"type": "custom", "custom": {"name": "x"}},
        {"type": "allowed_tools"},
        "whatever",
    ):
        reasons = set()
        for _ in range(20):
            r = await sim.post(
                "/v1/chat/completions",
                {"model": "m", "messages": MESSAGES, "tools": [WEATHER], "tool_choice": choice},
            )
            assert r.status == 200
            reasons.add((await r.json())["choices"][0]["finish_reason"])
        assert "tool_calls" in reasons and len(reasons) > 1


async def test_tool_calls_metrics_and_non_streaming_latency(start_sim: SimFactory) -> None:
    clock = SteppingClock()
    sim = await start_sim(
        "--time-to-first-token", "200ms", "--inter-token-latency", "10ms", clock=clock
    )
    before = clock.now()
    resp = await sim.client.chat.completions.create(
        model="m", messages=MESSAGES, tools=[WEATHER], tool_choice="required"
    )
    assert resp.usage is not None
    tokens = resp.usage.completion_tokens
    # TTFT, then an inter-token gap before every further completion token
    assert clock.now() - before == pytest.approx(0.2 + 0.01 * (tokens - 1))
    metrics = await sim.metrics()
    assert (
        metric_value(
            metrics, "vllm:request_success_total", finish_reason="tool_calls", model_name="m"
        )
        == 1
    )
    assert metric_value(metrics, "vllm:generation_tokens_total", model_name="m") == tokens
