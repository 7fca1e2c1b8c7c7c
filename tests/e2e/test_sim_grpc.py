"""REST and the vLLM gRPC API on the same simulator port (spec §2.1, §11.1), as a process."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import grpc
import httpx2
import openai
import pytest

from pyllmd.sim.grpcgen import vllm_engine_pb2 as pb
from pyllmd.sim.grpcgen import vllm_engine_pb2_grpc as pb_grpc
from tests.e2e.harness import SimProcess, http_get, two_free_ports
from tests.e2e.test_sim_tls import start_https

pytestmark = pytest.mark.e2e


def _generate(port: int, **kwargs: Any) -> list[pb.GenerateResponse]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.VllmEngineStub(channel)  # type: ignore[no-untyped-call]
        return list(stub.Generate(pb.GenerateRequest(**kwargs), timeout=10))


def test_rest_and_grpc_share_the_port(start_sim: Callable[..., SimProcess]) -> None:
    port = two_free_ports()
    sim = start_sim(
        "--model", "m", "--mode", "echo", "--data-parallel-size", "2", "--port", str(port)
    )
    for port in (sim.port, sim.port + 1):  # every rank muxes its own port
        replies = _generate(port, request_id="a", text="Hello, world!")
        assert replies[0].complete.completion_tokens == 4
        assert http_get(f"http://127.0.0.1:{port}/health")[0] == 200
    client = openai.OpenAI(base_url=sim.base_url + "/v1", api_key="x", max_retries=0)
    done = client.completions.create(model="m", prompt="Hello, world!")
    assert done.choices[0].text == "Hello, world!"
    streamed = _generate(sim.port, request_id="b", text="Hello, world!", stream=True)
    assert sum(r.HasField("chunk") for r in streamed) == 4
    metrics = http_get(sim.base_url + "/metrics")[1].decode()
    assert 'vllm:request_success_total{finish_reason="stop",model_name="m"} 3' in metrics


def test_grpc_stays_cleartext_when_rest_is_https() -> None:
    sim, url = start_https(["--self-signed-certs"])
    with sim:
        insecure = ssl._create_unverified_context()
        assert http_get(url + "/health", context=insecure)[0] == 200
        replies = _generate(sim.port, request_id="tls", text="Hello, world!")
        assert replies[0].complete.finish_reason == "stop"
        insecure_client = httpx2.Client(verify=False)
        client = openai.OpenAI(
            base_url=url + "/v1", api_key="x", max_retries=0, http_client=insecure_client
        )
        assert client.completions.create(model="m", prompt="hi").choices[0].text == "hi"
