"""Data parallel in one process (spec §10.4, check 58): independent ranks on port + r,
each with its own metrics, random stream and KV-event stream (own rank, own sequence)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.e2e.harness import SimProcess, http_get, two_free_ports
from tests.e2e.kvevents_sub import ENV, Subscriber, subscriber, words

pytestmark = pytest.mark.e2e

__all__ = ["subscriber"]  # the fixture, imported for this module's tests


def has_events(n: int) -> Callable[[list[list[Any]]], bool]:
    return lambda events: len(events) == n


def prompt_tokens_total(port: int) -> float:
    _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    for line in body.decode().splitlines():
        if line.startswith('vllm:prompt_tokens_total{model_name="m"}'):
            return float(line.split()[-1])
    return 0.0


def test_sim_acc_58_ranks_have_their_own_metrics_events_and_randomness(
    start_sim: Callable[..., SimProcess], subscriber: Subscriber
) -> None:
    base = two_free_ports()
    start_sim(
        "--model", "m", "--port", str(base), "--data-parallel-size", "2", "--seed", "5",
        "--enable-kvcache", "--zmq-endpoint", subscriber.endpoint, "--block-size", "8",
        env={**ENV, "POD_NAME": "p"},
    )  # fmt: skip
    subscriber.wait(lambda _: True, 0)
    clients = {
        port: openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        for port in (base, base + 1)
    }
    texts = {}
    for rank, (port, client) in enumerate(clients.items()):
        assert [m.id for m in client.models.list().data] == ["m"]
        raw = client.completions.with_raw_response.create(
            model="m", prompt=words(f"r{rank}x", 8), max_tokens=20, extra_body={"ignore_eos": True}
        )
        assert raw.headers["x-inference-port"] == str(port)
        texts[rank] = raw.parse().choices[0].text
        subscriber.wait(has_events(rank + 1))
        if rank == 0:  # separate registries: rank 1 has not counted rank 0's request
            assert prompt_tokens_total(base) == 8 and prompt_tokens_total(base + 1) == 0
    assert prompt_tokens_total(base + 1) == 8
    assert texts[0] != texts[1]  # seed + rank: the ranks do not repeat one stream
    # One batch per rank; each says its own rank and starts its own sequence at 1.
    assert [(b.rank, b.seq) for b in subscriber.batches] == [(0, 1), (1, 1)]
    assert all(b.topic == b"kv@1.2.3.4@m" for b in subscriber.batches)
