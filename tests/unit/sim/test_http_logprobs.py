"""Synthetic logprobs (spec §2.8) through the real openai client, streamed and not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat.chat_completion_token_logprob import ChatCompletionTokenLogprob

from .conftest import SimFactory, serve_in_thread
from .test_http_tools import WEATHER

PROMPT = "Hello, world! How are you?"
TOKENS = ["Hello", ", ", "world", "! ", "How ", "are ", "you", "?"]
MESSAGES: list[Any] = [{"role": "user", "content": PROMPT}]


def expected(position: int, alternative: int = 0) -> float:
    return -1.0 - 0.1 * (position % 3) - 0.5 * alternative


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    with serve_in_thread(["--mode", "echo"]) as url:
        yield url + "/v1"


def test_chat_logprobs_typed(echo_url: str) -> None:
    client = openai.OpenAI(base_url=echo_url, api_key="none", max_retries=0)
    resp = client.chat.completions.create(
        model="m", messages=MESSAGES, logprobs=True, top_logprobs=3
    )
    logprobs = resp.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert [e.token for e in logprobs.content] == TOKENS
    for p, entry in enumerate(logprobs.content):
        assert isinstance(entry, ChatCompletionTokenLogprob)
        assert entry.logprob == pytest.approx(expected(p))
        assert entry.bytes == list(entry.token.encode())
        assert [t.token for t in entry.top_logprobs] == [
            entry.token,
            f"{entry.token}_1",
            f"{entry.token}_2",
        ]
        assert [t.logprob for t in entry.top_logprobs] == pytest.approx(
            [expected(p, j) for j in range(3)]
        )
    # logprobs without top_logprobs: one alternative, the token itself
    resp = client.chat.completions.create(model="m", messages=MESSAGES, logprobs=True)
    content = resp.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and all(len(e.top_logprobs) == 1 for e in content)
    # not requested: no key
    resp = client.chat.completions.create(model="m", messages=MESSAGES)
    assert resp.choices[0].logprobs is None
    client.close()


def test_text_logprobs_typed(echo_url: str) -> None:
    client = openai.OpenAI(base_url=echo_url, api_key="none", max_retries=0)
    resp = client.completions.create(model="m", prompt=PROMPT, logprobs=2)
    lp = resp.choices[0].logprobs
    assert lp is not None
    assert lp.tokens == TOKENS
    assert lp.token_logprobs == pytest.approx([expected(p) for p in range(len(TOKENS))])
    assert lp.text_offset == [PROMPT.encode().index(t.encode()) for t in TOKENS]
    assert lp.top_logprobs is not None
    for p, (token, top) in enumerate(zip(TOKENS, lp.top_logprobs, strict=True)):
        assert top == pytest.approx({token: expected(p), f"{token}_1": expected(p, 1)})
    assert (
        client.completions.create(model="m", prompt=PROMPT, logprobs=0).choices[0].logprobs is None
    )
    client.close()


async def test_streamed_chat_logprobs_equal_the_non_streamed(start_sim: SimFactory) -> None:
    """Real token positions (beyond upstream, which uses `created % 1000` for every token)."""
    sim = await start_sim("--mode", "echo")
    whole = await sim.client.chat.completions.create(
        model="m", messages=MESSAGES, logprobs=True, top_logprobs=2
    )
    async with sim.client.chat.completions.stream(
        model="m", messages=MESSAGES, logprobs=True, top_logprobs=2
    ) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    streamed = final.choices[0].logprobs
    assert streamed is not None and whole.choices[0].logprobs is not None
    assert streamed.content == whole.choices[0].logprobs.content


async def test_streamed_text_logprobs_equal_the_non_streamed(start_sim: SimFactory) -> None:
    sim = await start_sim("--mode", "echo")
    whole = await sim.client.completions.create(model="m", prompt=PROMPT, logprobs=3)
    stream = await sim.client.completions.create(model="m", prompt=PROMPT, logprobs=3, stream=True)
    merged: dict[str, list[Any]] = {
        "tokens": [],
        "token_logprobs": [],
        "top_logprobs": [],
        "text_offset": [],
    }
    async for chunk in stream:
        lp = chunk.choices[0].logprobs
        if chunk.choices[0].text == "":
            assert lp is None  # the final stop chunk carries no token
            continue
        assert lp is not None
        for key, values in merged.items():
            values.extend(getattr(lp, key))
    expected_lp = whole.choices[0].logprobs
    assert expected_lp is not None
    assert merged == expected_lp.model_dump()


async def test_no_logprobs_for_tool_calls_or_empty_replies(start_sim: SimFactory) -> None:
    sim = await start_sim()
    r = await sim.post(
        "/v1/chat/completions",
        {
            "model": "m",
            "messages": MESSAGES,
            "logprobs": True,
            "tools": [WEATHER],
            "tool_choice": "required",
        },
    )
    assert "logprobs" not in (await r.json())["choices"][0]
    for path, extra in (
        ("/v1/chat/completions", {"messages": MESSAGES, "logprobs": True}),
        ("/v1/completions", {"prompt": PROMPT, "logprobs": 2}),
    ):
        r = await sim.post(
            path,
            {"model": "m", **extra},
            headers={"X-Cache-Threshold-Finish-Reason": "true"},
        )
        choice = (await r.json())["choices"][0]
        assert choice["finish_reason"] == "cache_threshold" and "logprobs" not in choice


async def test_top_logprobs_zero_omits_alternatives(start_sim: SimFactory) -> None:
    sim = await start_sim("--mode", "echo")
    r = await sim.post(
        "/v1/chat/completions",
        {"model": "m", "messages": MESSAGES, "logprobs": True, "top_logprobs": 0},
    )
    content = (await r.json())["choices"][0]["logprobs"]["content"]
    assert [list(e) for e in content] == [["token", "logprob", "bytes"]] * len(TOKENS)


@pytest.mark.parametrize(
    "path,extra,field",
    [
        ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ("/v1/chat/completions", {"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
        ("/v1/completions", {"logprobs": 10**9}, "logprobs"),
    ],
)
async def test_logprob_counts_out_of_range_are_400(
    start_sim: SimFactory, path: str, extra: dict[str, Any], field: str
) -> None:
    sim = await start_sim()
    r = await sim.post(path, {"model": "m", "messages": MESSAGES, "prompt": PROMPT, **extra})
    assert r.status == 400
    assert (await r.json())["error"]["message"].startswith(f"{field} must be between 0 and 20")


async def test_sse_chunk_key_order_with_logprobs(start_sim: SimFactory) -> None:
    sim = await start_sim("--mode", "echo")
    async with sim.http.post(
        sim.url + "/v1/completions",
        json={"model": "m", "prompt": "a b", "stream": True, "logprobs": 1},
    ) as r:
        raw = await r.text()
    first = json.loads(raw.split("\n\n")[0].removeprefix("data: "))
    assert list(first["choices"][0]) == ["index", "finish_reason", "text", "logprobs"]
    assert first["choices"][0]["logprobs"]["text_offset"] == [0]
