"""The simulator as a real process: start-up, probes, the openai client, Prometheus."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest
from openai import OpenAI

from tests.e2e.harness import PrometheusServer, SimProcess, http_get, sample_value

pytestmark = pytest.mark.e2e

StartSim = Callable[..., SimProcess]


def test_sim_acc_01_no_model_exits_nonzero_without_listening(
    run_sim: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    result = run_sim("--port", "0")
    assert result.returncode != 0
    assert "model parameter is empty" in result.stderr


def test_sim_acc_50_health_and_ready(start_sim: StartSim) -> None:
    sim = start_sim("--model", "m")
    for path in ("/health", "/ready"):
        status, body = http_get(sim.base_url + path)
        assert (status, json.loads(body)) == (200, {})


def test_openai_client_streams_from_a_real_process(start_sim: StartSim) -> None:
    sim = start_sim("--model", "m", "--mode", "echo", "--inter-token-latency", "1ms")
    client = OpenAI(base_url=f"{sim.base_url}/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Hello, world!"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello, world!"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


def test_prometheus_stores_vllm_names_from_the_simulator(
    start_sim: StartSim, prometheus: Callable[..., PrometheusServer]
) -> None:
    sim = start_sim("--model", "m")
    client = OpenAI(base_url=f"{sim.base_url}/v1", api_key="unused", max_retries=0)
    client.completions.create(
        model="m", prompt="Hello", max_tokens=3, extra_body={"ignore_eos": True}
    )
    prom = prometheus([f"127.0.0.1:{sim.port}"])
    waiting = prom.wait_for('vllm:num_requests_waiting{model_name="m"}', timeout=30)
    assert sample_value(waiting[0]) == 0.0
    success = prom.wait_for('sum(vllm:request_success_total{model_name="m"})', timeout=30)
    assert sample_value(success[0]) == 1.0
    assert prom.query('{__name__=~"vllm_.+"}') == []


def test_increase_counts_the_first_requests_of_a_fresh_simulator(
    start_sim: StartSim, prometheus: Callable[..., PrometheusServer]
) -> None:
    """The success series exist at 0 before any request, so Prometheus' `increase()`
    sees the first requests (a series born at 1 would show an increase of 0)."""
    sim = start_sim("--model", "m", "--mode", "echo")
    prom = prometheus([f"127.0.0.1:{sim.port}"])
    stop = 'vllm:request_success_total{model_name="m",finish_reason="stop"}'
    before = prom.wait_for(stop, timeout=30)  # scraped at 0 before any request
    assert sample_value(before[0]) == 0.0
    client = OpenAI(base_url=f"{sim.base_url}/v1", api_key="unused", max_retries=0)
    for _ in range(3):
        assert client.completions.create(model="m", prompt="Hello").choices[0].finish_reason == (
            "stop"
        )
    grown = prom.wait_for(
        f"increase({stop}[5m])", lambda r: bool(r) and sample_value(r[0]) >= 3, timeout=30
    )
    assert sample_value(grown[0]) >= 3
