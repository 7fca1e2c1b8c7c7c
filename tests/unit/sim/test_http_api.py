"""Acceptance checks of the HTTP API (spec §14), through real HTTP and the openai client."""

from __future__ import annotations

import json

import openai
import pytest

from .conftest import SimFactory, metric_value


def sse_events(raw: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    return [line[len("data: ") :] for line in raw.split("\n\n") if line.startswith("data: ")]


async def test_sim_acc_06_served_model_names(start_sim: SimFactory) -> None:
    sim = await start_sim("--served-model-name", "a", "b")
    models = await sim.client.models.list()
    assert [m.id for m in models.data] == ["a", "b"]
    resp = await sim.client.completions.create(model="b", prompt="hi", max_tokens=3)
    assert resp.model == "a"
    with pytest.raises(openai.NotFoundError):
        await sim.client.completions.create(model="m", prompt="hi", max_tokens=3)


async def test_sim_acc_07_unknown_model_body(start_sim: SimFactory) -> None:
    sim = await start_sim()
    r = await sim.post("/v1/completions", {"model": "x", "prompt": "hi"})
    assert r.status == 404
    assert await r.json() == {
        "error": {
            "message": "The model `x` does not exist.",
            "type": "NotFoundError",
            "param": None,
            "code": 404,
        }
    }


async def test_sim_acc_08_bad_json(start_sim: SimFactory) -> None:
    sim = await start_sim()
    async with sim.http.post(sim.url + "/v1/completions", data=b"{") as r:
        assert r.status == 400
        body = await r.json()
    # Deviation (see differences-from-upstream.md): the text is wrapped in an OpenAI error.
    assert body["error"]["message"].startswith("Failed to read and parse request body")
    assert body["error"]["type"] == "BadRequestError"


@pytest.mark.parametrize(
    "body,message",
    [
        ({"max_tokens": 0}, "Max completion tokens and max tokens should be positive"),
        ({"ignore_eos": True}, "Ignore_eos is true but max_completion_tokens"),
        (
            {"stream": True, "kv_transfer_params": {"do_remote_decode": True}},
            "Prefill does not support streaming",
        ),
    ],
    ids=["09_max_tokens_zero", "10_ignore_eos", "11_prefill_stream"],
)
async def test_sim_acc_09_10_11_validation(
    start_sim: SimFactory, body: dict[str, object], message: str
) -> None:
    sim = await start_sim()
    r = await sim.post("/v1/completions", {"model": "m", "prompt": "hi", **body})
    assert r.status == 400
    err = (await r.json())["error"]
    assert err["message"].startswith(message)
    assert err["type"] == "BadRequestError"


async def test_sim_acc_12_context_length(start_sim: SimFactory) -> None:
    sim = await start_sim("--max-model-len", "10")
    with pytest.raises(openai.BadRequestError) as exc:
        await sim.client.completions.create(
            model="m", prompt="one two three four five six seven eight", max_tokens=5
        )
    assert (
        "maximum context length is 10 tokens. However, you requested 13 tokens "
        "(8 in the messages, 5 in the completion)" in str(exc.value)
    )


async def test_sim_acc_13_echo(start_sim: SimFactory) -> None:
    sim = await start_sim("--mode", "echo")
    resp = await sim.client.completions.create(model="m", prompt="Hello, world!")
    assert resp.choices[0].text == "Hello, world!"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (
        4,
        4,
        8,
    )
    assert resp.choices[0].finish_reason == "stop"


async def test_sim_acc_14_echo_length(start_sim: SimFactory) -> None:
    sim = await start_sim("--mode", "echo")
    resp = await sim.client.completions.create(model="m", prompt="Hello, world!", max_tokens=2)
    assert resp.choices[0].text == "Hello, world!"
    assert resp.choices[0].finish_reason == "length"


async def test_sim_acc_15_echo_chat(start_sim: SimFactory) -> None:
    sim = await start_sim("--mode", "echo")
    resp = await sim.client.chat.completions.create(
        model="m",
        messages=[{"role": "system", "content": "A"}, {"role": "user", "content": "B"}],
    )
    assert resp.choices[0].message.content == "A B"


async def test_sim_acc_16_one_token(start_sim: SimFactory) -> None:
    sim = await start_sim()
    resp = await sim.client.completions.create(model="m", prompt="hi", max_tokens=1)
    assert resp.usage is not None and resp.usage.completion_tokens == 1
    assert resp.choices[0].finish_reason == "length"


async def test_sim_acc_17_ignore_eos(start_sim: SimFactory) -> None:
    sim = await start_sim()
    resp = await sim.client.completions.create(
        model="m", prompt="hi", max_tokens=37, extra_body={"ignore_eos": True}
    )
    assert resp.usage is not None and resp.usage.completion_tokens == 37
    assert resp.choices[0].finish_reason == "length"


async def test_sim_acc_18_length_histogram(start_sim: SimFactory) -> None:
    sim = await start_sim()
    lengths: list[int] = []
    for _ in range(2000):
        r = await sim.post("/v1/completions", {"model": "m", "prompt": "hi", "max_tokens": 200})
        body = await r.json()
        n = body["usage"]["completion_tokens"]
        assert (body["choices"][0]["finish_reason"] == "length") == (n == 200)
        lengths.append(n)
    assert all(1 <= n <= 200 for n in lengths)
    share = lambda lo, hi: sum(lo <= n <= hi for n in lengths) / len(lengths)  # noqa: E731
    assert share(1, 60) == pytest.approx(0.70, abs=0.04)
    assert share(61, 180) == pytest.approx(0.05, abs=0.02)
    assert share(181, 199) == pytest.approx(0.10, abs=0.03)
    assert share(200, 200) == pytest.approx(0.15, abs=0.03)


async def test_sim_acc_19_default_length(start_sim: SimFactory) -> None:
    sim = await start_sim()
    lengths = []
    for _ in range(1000):
        r = await sim.post("/v1/completions", {"model": "m", "prompt": "hi"})
        lengths.append((await r.json())["usage"]["completion_tokens"])
    assert min(lengths) >= 1
    assert sum(lengths) / len(lengths) == pytest.approx(40, abs=3)


async def test_sim_acc_20_ids_and_objects(start_sim: SimFactory) -> None:
    sim = await start_sim()
    chat = await sim.post(
        "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    )
    text = await sim.post("/v1/completions", {"model": "m", "prompt": "hi"})
    cb, tb = await chat.json(), await text.json()
    assert cb["id"].startswith("chatcmpl-") and cb["object"] == "chat.completion"
    assert tb["id"].startswith("cmpl-") and tb["object"] == "text_completion"
    assert cb["kv_transfer_params"] is None and tb["kv_transfer_params"] is None
    assert list(cb) == [
        "id",
        "created",
        "model",
        "usage",
        "object",
        "kv_transfer_params",
        "choices",
    ]


async def _stream(sim_post_body: dict[str, object], sim: object) -> list[str]:
    async with sim.http.post(sim.url + sim_post_body.pop("_path"), json=sim_post_body) as r:  # type: ignore[attr-defined]
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        return sse_events(await r.text())


async def test_sim_acc_21_stream_chat_stop(start_sim: SimFactory) -> None:
    sim = await start_sim("--mode", "echo")
    events = await _stream(
        {
            "_path": "/v1/chat/completions",
            "model": "m",
            "stream": True,
            "messages": [{"role": "user", "content": "Hello, world!"}],
        },
        sim,
    )
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = chunks[1:-1]
    assert [c["choices"][0]["delta"]["content"] for c in content] == ["Hello", ", ", "world", "!"]
    assert all(c["choices"][0]["finish_reason"] is None for c in content)
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "finish_reason": "stop",
        "delta": {"content": ""},
    }
    assert all(c["usage"] is None for c in chunks)


async def test_sim_acc_22_stream_usage(start_sim: SimFactory) -> None:
    sim = await start_sim("--mode", "echo")
    events = await _stream(
        {
            "_path": "/v1/completions",
            "model": "m",
            "stream": True,
            "prompt": "Hello, world!",
            "stream_options": {"include_usage": True},
        },
        sim,
    )
    usage_chunk = json.loads(events[-2])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}


async def test_sim_acc_23_stream_length(start_sim: SimFactory) -> None:
    sim = await start_sim()
    events = await _stream(
        {
            "_path": "/v1/chat/completions",
            "model": "m",
            "stream": True,
            "max_tokens": 5,
            "ignore_eos": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
        sim,
    )
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) == 1 + 5
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"][0]["delta"]["content"] != ""


async def test_sim_acc_24_stream_text_no_role(start_sim: SimFactory) -> None:
    sim = await start_sim("--mode", "echo")
    events = await _stream(
        {"_path": "/v1/completions", "model": "m", "stream": True, "prompt": "a b"}, sim
    )
    chunks = [json.loads(e) for e in events[:-1]]
    assert all("delta" not in c["choices"][0] for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == "a b"
    assert chunks[0]["object"] == "text_completion"


async def test_sim_acc_25_request_id_header(start_sim: SimFactory) -> None:
    sim = await start_sim("--enable-request-id-headers")
    r = await sim.post(
        "/v1/completions", {"model": "m", "prompt": "hi"}, headers={"X-Request-Id": "abc"}
    )
    assert r.headers["X-Request-Id"] == "abc"
    assert (await r.json())["id"] == "cmpl-abc"


async def test_sim_acc_26_pod_headers(start_sim: SimFactory) -> None:
    sim = await start_sim(env={"POD_NAME": "p", "POD_NAMESPACE": "n"})
    for stream in (False, True):
        r = await sim.post("/v1/completions", {"model": "m", "prompt": "hi", "stream": stream})
        assert r.headers["x-inference-pod"] == "p"
        assert r.headers["x-inference-port"] == "8000"
        assert r.headers["x-inference-namespace"] == "n"


async def test_sim_acc_34_success_counters_http(start_sim: SimFactory) -> None:
    sim = await start_sim("--mode", "echo")
    await sim.client.completions.create(model="m", prompt="Hello, world!")
    text = await sim.metrics()
    assert (
        metric_value(text, "vllm:request_success_total", finish_reason="stop", model_name="m") == 1
    )
    assert metric_value(text, "vllm:prompt_tokens_total", model_name="m") == 4


async def test_sim_acc_49_tokenize(start_sim: SimFactory) -> None:
    sim = await start_sim()
    r = await sim.post("/tokenize", {"prompt": "Hello, world!"})
    body = await r.json()
    assert body["max_model_len"] == 1024 and body["count"] == 4 and body["token_strs"] is None
    assert len(body["tokens"]) == 4 and all(isinstance(t, int) for t in body["tokens"])
    r = await sim.post("/tokenize", {"prompt": "x", "messages": []})
    assert r.status == 400
    assert (await r.json())["error"][
        "message"
    ] == "both prompt and messages fields in tokenize request"


async def test_sim_acc_50_health_ready(start_sim: SimFactory) -> None:
    sim = await start_sim()
    for path in ("/health", "/ready"):
        async with sim.http.get(sim.url + path) as r:
            assert r.status == 200 and await r.json() == {}
            assert r.headers["Content-Type"].startswith("application/json")


async def test_sim_acc_57_cache_threshold_header(start_sim: SimFactory) -> None:
    sim = await start_sim()
    r = await sim.post(
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "hi there"}]},
        headers={"X-Cache-Threshold-Finish-Reason": "true"},
    )
    body = await r.json()
    assert body["choices"][0]["finish_reason"] == "cache_threshold"
    assert body["choices"][0]["message"]["content"] == ""
    assert body["usage"]["completion_tokens"] == 0


async def test_sim_acc_60_remote_decode(start_sim: SimFactory) -> None:
    sim = await start_sim()
    r = await sim.post(
        "/v1/completions",
        {"model": "m", "prompt": "hi", "kv_transfer_params": {"do_remote_decode": True}},
    )
    body = await r.json()
    assert body["choices"][0]["finish_reason"] == "remote_decode"
    assert body["kv_transfer_params"]["remote_port"] == 1234
    assert body["kv_transfer_params"]["do_remote_prefill"] is True


async def test_router_not_found_and_method(start_sim: SimFactory) -> None:
    sim = await start_sim()
    async with sim.http.get(sim.url + "/nope") as r:
        assert r.status == 404 and await r.text() == "Not Found"
    async with sim.http.get(sim.url + "/v1/completions") as r:
        assert r.status == 405 and await r.text() == "Method Not Allowed"
        assert "POST" in r.headers["Allow"] and "OPTIONS" in r.headers["Allow"]
    async with sim.http.get(sim.url + "/health/", allow_redirects=False) as r:
        assert r.status == 301 and r.headers["Location"] == "/health"


async def test_same_seed_same_texts(start_sim: SimFactory) -> None:
    """Two simulators with the same --seed answer the same requests with the same texts."""
    texts = []
    for _ in range(2):
        sim = await start_sim("--seed", "42")
        run = []
        for max_tokens in (5, 50, None):
            resp = await sim.client.completions.create(
                model="m", prompt="hi", max_tokens=max_tokens
            )
            run.append(resp.choices[0].text)
        texts.append(run)
    assert texts[0] == texts[1]
    other = await start_sim("--seed", "43")
    resp = await other.client.completions.create(model="m", prompt="hi", max_tokens=50)
    assert resp.choices[0].text != texts[0][1]
