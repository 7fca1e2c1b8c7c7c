"""Sleep mode and LoRA adapters of a real `pyllmd sim` process (env var, logs, openai client)."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable

import pytest
from openai import NotFoundError, OpenAI

from tests.e2e.harness import SimProcess, http_get

pytestmark = pytest.mark.e2e

StartSim = Callable[..., SimProcess]


def post(url: str, body: object = None) -> tuple[int, bytes]:
    data = b"" if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return int(resp.status), bytes(resp.read())


def sleeping(sim: SimProcess) -> bool:
    status, body = http_get(sim.base_url + "/is_sleeping")
    assert status == 200
    return bool(json.loads(body)["is_sleeping"])


def test_sim_acc_51_sleep_without_dev_mode_is_a_logged_no_op(start_sim: StartSim) -> None:
    sim = start_sim("--model", "m", "--enable-sleep-mode", env={"VLLM_SERVER_DEV_MODE": ""})
    assert post(sim.base_url + "/sleep") == (200, b"")
    assert sleeping(sim) is False
    sim.wait_until(lambda: "/sleep ignored" in sim.output, 5, "a log line for the ignored /sleep")


def test_sim_acc_51_dev_mode_sleep_holds_requests_until_wake_up(start_sim: StartSim) -> None:
    sim = start_sim("--model", "m", "--enable-sleep-mode", env={"VLLM_SERVER_DEV_MODE": "1"})
    assert post(sim.base_url + "/sleep") == (200, b"")
    assert sleeping(sim) is True
    client = OpenAI(base_url=f"{sim.base_url}/v1", api_key="unused", max_retries=0, timeout=10)
    result: list[str] = []
    worker = threading.Thread(
        target=lambda: result.append(
            client.completions.create(model="m", prompt="hi", max_tokens=1).choices[0].text
        )
    )
    worker.start()
    sim.wait_until(
        lambda: 'vllm:num_requests_waiting{model_name="m"} 1' in sim.metrics(), 5, "a held request"
    )
    assert 'vllm:engine_sleep_state{engine="0",model_name="m",sleep_state="awake"} 0' in (
        sim.metrics()
    )
    assert not result
    assert post(sim.base_url + "/wake_up") == (200, b"")
    worker.join(timeout=10)
    assert len(result) == 1 and result[0]
    assert sleeping(sim) is False


def test_sim_acc_39_lora_load_chat_unload(start_sim: StartSim) -> None:
    sim = start_sim("--model", "m")
    url = sim.base_url + "/v1/load_lora_adapter"
    assert post(url, {"lora_name": "l1", "lora_path": "x"}) == (200, b"")
    client = OpenAI(base_url=f"{sim.base_url}/v1", api_key="unused", max_retries=0)
    assert [(m.id, m.model_extra) for m in client.models.list().data][1] == (
        "l1",
        {"root": "l1", "parent": "m"},
    )
    chat = client.chat.completions.create(
        model="l1", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert chat.model == "l1"
    assert post(sim.base_url + "/v1/unload_lora_adapter", {"lora_name": "l1"}) == (200, b"")
    with pytest.raises(NotFoundError):
        client.chat.completions.create(
            model="l1", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
