"""The pure tool-call and logprob functions: Go-compatible JSON, choice rules, value ranges."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from pyllmd.core.errors import LlmdError
from pyllmd.core.tokenize import SimpleTokenizer
from pyllmd.sim.api.tools import parse_tool_choice, validate_tools
from pyllmd.sim.engine.logprobs import chat_logprobs, logprob, text_logprobs
from pyllmd.sim.engine.toolcalls import (
    FunctionDef,
    ToolChoice,
    ToolError,
    ToolLimits,
    completion_tokens,
    go_json,
    make_tool_calls,
)

OBJ = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}


def tokenize(text: str) -> list[str]:
    return SimpleTokenizer().tokens(text)


@pytest.mark.parametrize(
    "value,text",
    [
        (5.0, "5"),
        (0.1, "0.1"),
        (1e21, "1e+21"),
        (1e-7, "1e-7"),
        (1.5e-10, "1.5e-10"),
        (1e16, "10000000000000000"),
        (1e-6, "0.000001"),
        (-0.0, "-0"),
        (12, "12"),
        ({"b": 1, "a": [True, None]}, '{"a":[true,null],"b":1}'),
        ("<a & b>", '"\\u003ca \\u0026 b\\u003e"'),
        ("line\u2028sep", '"line\\u2028sep"'),
        ("é\n", '"é\\n"'),
    ],
)
def test_go_json_matches_go_encoding(value: object, text: str) -> None:
    assert go_json(value) == text


def test_go_json_refuses_non_finite_numbers() -> None:
    with pytest.raises(ToolError):
        go_json(float("inf"))


def test_tool_choice_parsing() -> None:
    assert parse_tool_choice("none") == ToolChoice("none")
    assert parse_tool_choice("required") == ToolChoice("required")
    assert parse_tool_choice("anything") == ToolChoice("auto")
    assert parse_tool_choice({"type": "function", "function": {"name": "f"}}) == ToolChoice(
        "function", "f"
    )
    assert parse_tool_choice({"type": "allowed_tools"}) == ToolChoice("auto")
    for bad in (None, {"type": "x"}, {}, 3):
        with pytest.raises(ValueError):
            parse_tool_choice(bad)


def test_validation_messages() -> None:
    validate_tools([FunctionDef("f", "", OBJ)])
    with pytest.raises(LlmdError) as exc:
        validate_tools([FunctionDef("f", "", {})])
    assert exc.value.status == 400
    assert exc.value.message == (
        "Tool validation failed: at '/': 'parameters' is a required property"
    )
    with pytest.raises(LlmdError) as exc:
        validate_tools([FunctionDef("f", "", {"type": "object", "properties": {"a": {}}})])
    assert exc.value.message.startswith("Tool validation failed: at '/parameters/properties/a'")


def test_call_counts_follow_the_choice() -> None:
    rng = random.Random(1)
    tools = [FunctionDef("f", "", OBJ), FunctionDef("g", "", OBJ)]
    auto = Counter(
        len(make_tool_calls(tools, ToolChoice(), ToolLimits(), rng, tokenize)) for _ in range(600)
    )
    assert set(auto) == {0, 1, 2} and min(auto.values()) > 150
    required = Counter(
        len(make_tool_calls(tools, ToolChoice("required"), ToolLimits(), rng, tokenize))
        for _ in range(300)
    )
    assert set(required) == {1, 2}
    one = [
        make_tool_calls(tools[:1], ToolChoice("required"), ToolLimits(), rng, tokenize)
        for _ in range(20)
    ]
    assert all(len(c) == 1 for c in one)


def test_arguments_tokens_and_usage() -> None:
    calls = make_tool_calls(
        [FunctionDef("f", "", OBJ)],
        ToolChoice("required"),
        ToolLimits(),
        random.Random(2),
        tokenize,
    )
    (call,) = calls
    assert "".join(call.tokens) == call.arguments
    assert json.loads(call.arguments)["a"]
    assert completion_tokens(calls) == 3 + len(tokenize(call.arguments))


def test_enum_numbers_are_written_as_go_floats() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "number", "enum": [2, 10**20]}},
        "required": ["n"],
    }
    seen = {
        make_tool_calls(
            [FunctionDef("f", "", schema)],
            ToolChoice("required"),
            ToolLimits(),
            random.Random(s),
            tokenize,
        )[0].arguments
        for s in range(20)
    }
    assert seen == {'{"n":2}', '{"n":100000000000000000000}'}


def test_logprob_formula_and_shapes() -> None:
    assert [logprob(p) for p in range(4)] == pytest.approx([-1.0, -1.1, -1.2, -1.0])
    assert logprob(1, 2) == pytest.approx(-2.1)
    chat = chat_logprobs(["é"], 2, start=4)
    assert chat["content"][0]["bytes"] == [0xC3, 0xA9]
    assert chat["content"][0]["top_logprobs"][1]["token"] == "é_1"
    text = text_logprobs(["ab", "c"], 11, offset=3)
    assert text["text_offset"] == [3, 5]
    assert list(text["top_logprobs"][0])[:3] == ["ab", "ab_1", "ab_10"]  # sorted, as Go maps
