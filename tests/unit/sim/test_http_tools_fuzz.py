"""Property-based: hostile `tools`, `tool_choice` and logprob fields never crash a request.

Every reply is a response or an OpenAI-style error; a 500 only with the spec's
`failed to create response ...` text (never the catch-all for unexpected errors).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import serve_in_thread
from .test_http_fuzz import Reply, json_values, request

SCALAR_TYPES = ["string", "number", "integer", "boolean"]
scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
)
leaf_params = st.fixed_dictionaries(
    {"type": st.sampled_from(SCALAR_TYPES)},
    optional={"description": st.text(max_size=5)},
) | st.fixed_dictionaries(
    {"type": st.just("string"), "enum": st.lists(st.text(max_size=6), max_size=3)}
)
valid_params = st.recursive(
    leaf_params,
    lambda inner: (
        st.fixed_dictionaries(
            {
                "type": st.just("object"),
                "properties": st.dictionaries(st.text(max_size=4), inner, max_size=3),
            },
            optional={"required": st.lists(st.text(max_size=4), max_size=3)},
        )
        | st.fixed_dictionaries(
            {"type": st.just("array"), "items": inner},
            optional={"minItems": st.integers(0, 4), "maxItems": st.integers(0, 4)},
        )
    ),
    max_leaves=8,
)
# anything a schema key could hold, including what validation must refuse
odd_params = st.recursive(
    st.fixed_dictionaries(
        {"type": st.sampled_from([*SCALAR_TYPES, "object", "array", "null", "date", ""])},
        optional={
            "enum": st.lists(scalars, max_size=3),
            "description": st.text(max_size=5) | st.integers(),
            "minItems": st.integers(-2, 6) | st.floats(0, 3),
            "maxItems": st.integers(-2, 6),
            "bogus": json_values,
        },
    ),
    lambda inner: st.fixed_dictionaries(
        {"type": st.sampled_from(["object", "array", "string"])},
        optional={
            "properties": st.dictionaries(st.text(max_size=4), inner, max_size=3),
            "items": inner | st.lists(inner, max_size=2),
            "required": st.lists(st.text(max_size=4), max_size=3) | json_values,
            "additionalProperties": st.booleans() | json_values,
        },
    ),
    max_leaves=10,
)
functions = st.fixed_dictionaries(
    {"name": st.sampled_from(["f", "g", ""]), "parameters": valid_params},
    optional={"description": st.text(max_size=5), "strict": st.booleans()},
) | st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["f", "g"]) | json_values,
        "description": json_values,
        "parameters": odd_params | json_values,
    },
)
tools = st.lists(
    st.fixed_dictionaries({"type": st.just("function"), "function": functions}), max_size=3
)
choices = st.sampled_from(["none", "auto", "required", "bogus"]) | st.fixed_dictionaries(
    {"type": st.sampled_from(["function", "custom", "allowed_tools", "x"])},
    optional={"function": st.fixed_dictionaries({"name": st.sampled_from(["f", "g", "h"])})},
)
plausible = st.fixed_dictionaries(
    {
        "model": st.just("m"),
        "messages": st.just([{"role": "user", "content": "Hi <there> & you"}]),
        "tools": tools,
    },
    optional={
        "tool_choice": choices,
        "stream": st.booleans(),
        "logprobs": st.booleans(),
        "top_logprobs": st.integers(-3, 25),
        "max_tokens": st.integers(1, 8),
        "kv_transfer_params": st.fixed_dictionaries(
            {}, optional={"do_remote_decode": st.booleans(), "remote_block_ids": json_values}
        ),
    },
)
junk = st.fixed_dictionaries(
    {"model": st.just("m"), "messages": st.just([{"role": "user", "content": "x"}])},
    optional={
        "tools": st.lists(json_values, max_size=2) | json_values,
        "tool_choice": json_values,
        "logprobs": json_values,
        "top_logprobs": json_values,
    },
)
bodies = plausible | junk


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_in_thread() as url:
        yield url


def _check(resp: Reply) -> None:
    assert resp.status_code in (200, 400, 500), resp.text
    if resp.status_code == 200:
        if resp.headers["content-type"].startswith("text/event-stream"):
            events = [e.removeprefix("data: ") for e in resp.text.split("\n\n") if e]
            assert events[-1] == "[DONE]"
            chunks = [json.loads(e) for e in events[:-1]]
            for c in chunks:
                for call in (c["choices"] or [{}])[0].get("delta", {}).get("tool_calls") or []:
                    assert isinstance(call["function"]["arguments"], str)
        else:
            message = resp.json()["choices"][0]["message"]
            for call in message.get("tool_calls", []):
                json.loads(call["function"]["arguments"])
        return
    err: Any = resp.json()["error"]
    assert err["code"] == resp.status_code and isinstance(err["message"], str)
    if resp.status_code == 500:
        assert err["message"].startswith("failed to create response for chat completion request")


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies)
def test_hostile_tool_bodies_get_well_formed_replies(base_url: str, body: dict[str, Any]) -> None:
    _check(request(base_url, "POST", "/v1/chat/completions", json.dumps(body).encode()))


def test_deeply_nested_parameters_are_refused_not_crashed(base_url: str) -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(300):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
    }
    resp = request(base_url, "POST", "/v1/chat/completions", json.dumps(body).encode())
    assert resp.status_code == 400
    assert resp.json()["error"]["message"].startswith("Failed to read and parse") or resp.json()[
        "error"
    ]["message"].startswith("Tool validation failed: ")
