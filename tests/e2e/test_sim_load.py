"""The simulator under load as a real process: Prometheus sees in-flight requests, queue limits."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import openai
import pytest

from tests.e2e.harness import PrometheusServer, SimProcess, free_port, http_get, sample_value

pytestmark = pytest.mark.e2e

StartSim = Callable[..., SimProcess]


def _client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=60)


def _status(client: openai.OpenAI, max_tokens: int = 2) -> int:
    """One completion with the sync openai client; returns the HTTP status."""
    try:
        client.completions.create(model="m", prompt="Hello there", max_tokens=max_tokens)
    except openai.APIStatusError as e:
        return e.status_code
    return 200


def _complete(base_url: str, max_tokens: int = 2) -> int:
    return _status(_client(base_url), max_tokens)


def test_prometheus_sees_running_and_waiting_during_load(
    start_sim: StartSim, prometheus: Callable[..., PrometheusServer]
) -> None:
    sim = start_sim("--model", "m", "--max-num-seqs", "2", "--time-to-first-token", "4s")
    prom = prometheus([f"127.0.0.1:{sim.port}"])
    prom.wait_for('up{job="sim"} == 1 or up == 1', timeout=30)
    prom.wait_for('vllm:num_requests_running{model_name="m"}', timeout=30)
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(_complete, sim.base_url) for _ in range(6)]
        running = prom.wait_for(
            'vllm:num_requests_running{model_name="m"}',
            lambda rows: bool(rows) and sample_value(rows[0]) == 2,
            timeout=30,
        )
        waiting = prom.wait_for(
            'vllm:num_requests_waiting{model_name="m"}',
            lambda rows: bool(rows) and sample_value(rows[0]) >= 2,
            timeout=30,
        )
        assert sample_value(running[0]) == 2 and sample_value(waiting[0]) >= 2
        statuses = [f.result(timeout=60) for f in futures]
    assert statuses == [200] * 6
    peak = prom.query('max_over_time(vllm:num_requests_running{model_name="m"}[1m])')
    assert sample_value(peak[0]) == 2  # never more than max-num-seqs
    done = prom.wait_for(
        'vllm:num_requests_running{model_name="m"} + vllm:num_requests_waiting{model_name="m"}',
        lambda rows: bool(rows) and sample_value(rows[0]) == 0,
        timeout=30,
    )
    assert sample_value(done[0]) == 0


def test_queue_limit_refuses_excess_at_once(start_sim: StartSim) -> None:
    sim = start_sim(
        "--model", "m", "--max-num-seqs", "1", "--max-waiting-queue-length", "2",
        "--time-to-first-token", "1s",
    )  # fmt: skip
    # the clients are built first and released together: all six arrive while the first runs
    clients = [_client(sim.base_url) for _ in range(6)]
    barrier = threading.Barrier(6)

    def send(client: openai.OpenAI) -> int:
        barrier.wait(timeout=10)
        return _status(client)

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(send, clients))
    assert sorted(statuses) == [200, 200, 200, 429, 429, 429]


def test_sim_acc_05_yaml_port_and_cli_override(
    start_sim: StartSim, tmp_path: Path, run_sim: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    yaml_port, cli_port = free_port(), free_port()
    config = tmp_path / "sim.yaml"
    config.write_text(f"model: m\nport: {yaml_port}\nmode: echo\n")
    sim = start_sim("--config", str(config), "--port", str(cli_port))
    assert sim.port == cli_port
    status, body = http_get(f"http://127.0.0.1:{cli_port}/v1/models")
    assert status == 200 and json.loads(body)["data"][0]["id"] == "m"
    sim.stop()
    from_yaml = start_sim("--config", str(config), "--port", str(yaml_port))
    assert http_get(from_yaml.base_url + "/health")[0] == 200


def test_sim_acc_58_data_parallel_ranks(start_sim: StartSim) -> None:
    base = free_port()
    while not _port_free(base + 1):
        base = free_port()
    start_sim(
        "--model", "m", "--port", str(base), "--data-parallel-size", "2", env={"POD_NAME": "p"}
    )
    for port in (base, base + 1):
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["m"]
        raw = client.completions.with_raw_response.create(model="m", prompt="hi", max_tokens=2)
        assert raw.headers["x-inference-port"] == str(port)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_sse_is_readable_with_curl(start_sim: StartSim) -> None:
    sim = start_sim("--model", "m", "--mode", "echo", "--inter-token-latency", "5ms")
    body = json.dumps({"model": "m", "prompt": "Hello, world!", "stream": True, "max_tokens": 10})
    out = subprocess.run(
        ["curl", "-sN", "-H", "Content-Type: application/json", "-d", body,
         sim.base_url + "/v1/completions"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    events = [e for e in out.stdout.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    texts = [json.loads(e.removeprefix("data: "))["choices"][0]["text"] for e in events[:-1]]
    assert "".join(texts) == "Hello, world!"
