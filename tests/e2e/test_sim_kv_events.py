"""KV events from a `pyllmd sim` process to a SUB socket bound by the test (checks 52-54, 56).

Hashes are checked against spec §4.2 written out independently (tests/e2e/kvevents_sub.py),
over the token ids the simulator's own `/tokenize` reports.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.e2e.harness import SimProcess, free_port
from tests.e2e.kvevents_sub import ENV, Subscriber, reference_keys, subscriber, words

pytestmark = pytest.mark.e2e

__all__ = ["subscriber"]  # the fixture


def kv_sim(start_sim: Callable[..., SimProcess], sub: Subscriber, *args: str) -> SimProcess:
    sim = start_sim(
        "--model", "m", "--enable-kvcache", "--zmq-endpoint", sub.endpoint, *args, env=ENV
    )
    sub.wait(lambda _: True, 0)  # start reading: the subscription reaches the publisher
    return sim


def post(sim: SimProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        sim.base_url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def tokens_of(sim: SimProcess, prompt: str) -> list[int]:
    ids: list[int] = post(sim, "/tokenize", {"prompt": prompt})["tokens"]
    return ids


def usage(sim: SimProcess) -> float:
    for line in sim.metrics().splitlines():
        if line.startswith('vllm:kv_cache_usage_perc{model_name="m"}'):
            return float(line.split()[-1])
    raise AssertionError("no vllm:kv_cache_usage_perc")


def stored(events: list[list[Any]]) -> list[list[Any]]:
    return [e for e in events if e[0] == "BlockStored"]


def test_sim_acc_52_events_on_the_wire(
    start_sim: Callable[..., SimProcess], subscriber: Subscriber
) -> None:
    sim = kv_sim(start_sim, subscriber, "--block-size", "8")
    prompt = words("w", 20)
    post(sim, "/v1/completions", {"model": "m", "prompt": prompt, "max_tokens": 2})
    subscriber.wait(lambda events: len(events) >= 2)
    tokens = tokens_of(sim, prompt)
    h1, h2 = reference_keys(tokens[:16], 8)
    [batch] = subscriber.batches
    assert (batch.topic, batch.seq, batch.rank) == (b"kv@1.2.3.4@m", 1, 0)
    assert abs(batch.ts - time.time()) < 60
    assert batch.events == [
        ["BlockStored", [h1], None, tokens[:8], 8, None, None, None],
        ["BlockStored", [h2], h1, tokens[8:16], 8, None, None, None],
    ]


def test_sim_acc_53_54_eviction_gives_block_removed_for_exactly_the_evicted(
    start_sim: Callable[..., SimProcess], subscriber: Subscriber
) -> None:
    sim = kv_sim(start_sim, subscriber, "--block-size", "8", "--kv-cache-size", "2")
    client = openai.OpenAI(base_url=sim.base_url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.InternalServerError, match="sufficient capacity"):
        client.completions.create(model="m", prompt=words("z", 24), max_tokens=2)
    first, second = words("a", 16), words("b", 16)
    client.completions.create(model="m", prompt=first, max_tokens=2)
    subscriber.wait(lambda events: len(events) == 2)
    assert usage(sim) == 0
    client.completions.create(model="m", prompt=second, max_tokens=2)
    subscriber.wait(lambda events: len(events) == 6)
    a, b = reference_keys(tokens_of(sim, first), 8), reference_keys(tokens_of(sim, second), 8)
    later = subscriber.events[2:]
    assert {h for e in later if e[0] == "BlockRemoved" for h in e[1]} == set(a)
    assert [e[1] for e in stored(later)] == [[b[0]], [b[1]]]
    assert [e[2] for e in stored(later)] == [None, b[0]]
    assert usage(sim) == 0
    assert [batch.seq for batch in subscriber.batches] == list(
        range(1, len(subscriber.batches) + 1)
    )


def test_usage_gauge_agrees_with_the_event_stream(
    start_sim: Callable[..., SimProcess], subscriber: Subscriber
) -> None:
    sim = kv_sim(
        start_sim, subscriber, "--block-size", "8", "--kv-cache-size", "4",
        "--inter-token-latency", "100ms", "--event-batch-size", "1",
    )  # fmt: skip
    client = openai.OpenAI(base_url=sim.base_url + "/v1", api_key="x", max_retries=0)
    prompt = words("p", 24)
    keys = reference_keys(tokens_of(sim, prompt), 8)
    stream = client.completions.create(
        model="m", prompt=prompt, max_tokens=20, stream=True, extra_body={"ignore_eos": True}
    )
    next(iter(stream))  # running: its three blocks are used
    subscriber.wait(lambda events: len(events) == 3)
    assert usage(sim) == 0.75 and subscriber.held() == set(keys)
    for _ in stream:
        pass
    assert usage(sim) == 0  # finished: unused, still held (stored, not removed)
    done = client.completions.create(model="m", prompt=prompt, max_tokens=1)
    assert done.usage is not None and done.usage.prompt_tokens_details is not None
    assert done.usage.prompt_tokens_details.cached_tokens == 24  # all held: no new events
    client.completions.create(model="m", prompt=words("q", 16), max_tokens=1)
    subscriber.wait(lambda events: len(events) == 3 + 2 + 1)  # 2 stored, 1 evicted
    assert len(subscriber.held()) == 4 and usage(sim) == 0


def test_sim_acc_56_kvcache_without_pod_ip_and_bad_endpoint_exit_1(
    run_sim: Callable[..., Any],
) -> None:
    no_ip = run_sim("--model", "m", "--enable-kvcache", env={"POD_IP": ""})
    assert no_ip.returncode == 1
    assert "IP should be defined in the environment (POD_IP)" in no_ip.stderr
    no_port = run_sim(
        "--model", "m", "--enable-kvcache", "--zmq-endpoint", "tcp://127.0.0.1", env=ENV
    )
    assert no_port.returncode == 1
    assert no_port.stderr == "pyllmd sim: error: --zmq-endpoint: no port in 'tcp://127.0.0.1'\n"
    bad = run_sim(  # a wildcard host cannot be connected to: libzmq refuses it at start
        "--model", "m", "--port", str(free_port()), "--enable-kvcache", "--zmq-endpoint", "tcp://*:5557",
        "--zmq-max-connect-attempts", "1", env=ENV,
    )  # fmt: skip
    errors = [line for line in bad.stderr.splitlines() if "error:" in line]
    assert bad.returncode == 1 and len(errors) == 1
    assert errors[0].startswith("pyllmd sim: error: --zmq-endpoint: ")
    assert "tcp://*:5557" in errors[0] and "2 attempt(s)" in errors[0]
