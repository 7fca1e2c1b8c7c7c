"""P/D disaggregation and data parallel end to end (spec §6.4, §6.6; checks 51, 53-55).

Real processes on loopback: Envoy in front of `pyllmd epp --static-endpoints`,
a prefill simulator (labelled `llm-d.ai/role=prefill`) and a decode simulator
behind `pyllmd pd-sidecar`, talked to only through Envoy with the `openai`
client. Which server did what is read from the simulators' own metrics
(`vllm:request_success_total` by finish reason) and `x-inference-port`.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from openai import AsyncOpenAI

from pyllmd.core.promtext import parse_samples
from pyllmd.epp.datastore import static_pod_name
from tests.e2e.eppgateway import EppGateway, static_args
from tests.e2e.harness import (
    LOOPBACK,
    ManagedProcess,
    SimProcess,
    free_port,
    http_get,
    two_free_ports,
)

pytestmark = pytest.mark.e2e

MODEL = "m"
ROLE = "llm-d.ai/role"
PD_CONFIG = """
plugins:
- type: prefill-header-handler
- type: prefix-cache-scorer
  parameters: {{autoTune: false, blockSizeTokens: 16}}
- type: queue-scorer
- type: prefill-filter
- type: decode-filter
- type: max-score-picker
- type: {decider}
  parameters: {params}
- type: pd-profile-handler
  parameters: {{deciderPluginName: {decider}}}
schedulingProfiles:
- name: prefill
  plugins: [{{pluginRef: prefill-filter}}, {{pluginRef: queue-scorer}}]
- name: decode
  plugins:
  - {{pluginRef: decode-filter}}
  - {{pluginRef: prefix-cache-scorer, weight: 2}}
  - {{pluginRef: queue-scorer}}
"""


@dataclass
class Stack:
    client: AsyncOpenAI
    epp_metrics_url: str


StackFactory = Callable[[str, Sequence[str]], Awaitable[Stack]]
SidecarFactory = Callable[..., tuple[ManagedProcess, int]]


@pytest.fixture
def start_sidecar(_processes: Any) -> SidecarFactory:
    """Factory: `start_sidecar(*flags, port=None, ranks=1, env=None)` → a healthy
    `pyllmd pd-sidecar` on loopback (stopped, with its log on failure, at test end)."""

    def start(
        *args: str, port: int | None = None, ranks: int = 1, env: dict[str, str] | None = None
    ) -> tuple[ManagedProcess, int]:
        port = port or free_port()
        argv = [
            sys.executable, "-m", "pyllmd", "pd-sidecar", f"--port={port}", "--secure-proxy=false",
            f"--bind-address={LOOPBACK}", *args,
        ]  # fmt: skip
        proc = ManagedProcess("pd-sidecar", argv, env)
        _processes.items.append(proc)
        for p in range(port, port + ranks):
            proc.wait_until(partial(_healthy, p), 20.0, f"listening on {p}")
        return proc, port

    return start


def _healthy(port: int) -> bool:
    return http_get(f"http://{LOOPBACK}:{port}/health")[0] == 200


@pytest.fixture
def make_stack(epp_gateway: Callable[..., EppGateway]) -> StackFactory:
    """Factory: `await make_stack(config, static_endpoints)` → EPP and Envoy in front."""

    async def make(config: str, endpoints: Sequence[str]) -> Stack:
        gw = epp_gateway(*static_args(endpoints, config))
        await gw.start()
        return Stack(gw.client, gw.metrics_url)

    return make


def successes(text: str) -> dict[str, float]:
    """`vllm:request_success_total` by finish reason."""
    out: dict[str, float] = {}
    for s in parse_samples(text):
        if s.name == "vllm:request_success_total" and s.value:
            reason = s.labels["finish_reason"]
            out[reason] = out.get(reason, 0) + s.value
    return out


def pd_decisions(url: str) -> dict[str, float]:
    status, body = http_get(url)
    assert status == 200
    return {
        s.labels["decision_type"]: s.value
        for s in parse_samples(body.decode())
        if s.name == "llm_d_inference_scheduler_pd_decision_total"
        and s.labels["model_name"] == MODEL
    }


@pytest.fixture
def pd_pods(
    start_sim: Callable[..., SimProcess], start_sidecar: SidecarFactory
) -> tuple[SimProcess, SimProcess, int]:
    """A prefill simulator, and a decode simulator behind a sidecar (its port)."""
    prefill = start_sim("--model", MODEL, env={"POD_NAME": "prefill-0"})
    decode = start_sim("--model", MODEL, env={"POD_NAME": "decode-0"})
    _, port = start_sidecar(f"--vllm-port={decode.port}")
    return prefill, decode, port


def pd_endpoints(prefill: SimProcess, sidecar_port: int) -> list[str]:
    return [f"{LOOPBACK}:{prefill.port};{ROLE}=prefill", f"{LOOPBACK}:{sidecar_port};{ROLE}=decode"]


async def test_epp_acc_53_request_is_prefilled_then_decoded(
    make_stack: StackFactory, pd_pods: tuple[SimProcess, SimProcess, int]
) -> None:
    prefill, decode, sidecar_port = pd_pods
    config = PD_CONFIG.format(decider="always-disagg-pd-decider", params="{}")
    stack = await make_stack(config, pd_endpoints(prefill, sidecar_port))
    raw = await stack.client.completions.with_raw_response.create(
        model=MODEL, prompt="tell me a story", max_tokens=5
    )
    assert raw.parse().choices[0].text
    assert raw.headers["x-inference-port"] == str(decode.port)  # decode served the answer
    assert successes(prefill.metrics()) == {"remote_decode": 1}
    decoded = successes(decode.metrics())
    assert sum(decoded.values()) == 1 and "remote_decode" not in decoded
    assert pd_decisions(stack.epp_metrics_url) == {"prefill-decode": 1}

    chunks = await stack.client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    assert text  # SSE streamed from the decoder through the sidecar and Envoy
    assert successes(prefill.metrics()) == {"remote_decode": 2}
    assert pd_decisions(stack.epp_metrics_url) == {"prefill-decode": 2}


async def test_sglang_connector_prefills_and_decodes_the_same_request(
    make_stack: StackFactory,
    start_sim: Callable[..., SimProcess],
    start_sidecar: SidecarFactory,
) -> None:
    prefill = start_sim("--model", MODEL, env={"POD_NAME": "prefill-0"})
    decode = start_sim("--model", MODEL, env={"POD_NAME": "decode-0"})
    _, sidecar_port = start_sidecar(
        f"--vllm-port={decode.port}", "--connector=sglang", env={"SGLANG_BOOTSTRAP_PORT": "9100"}
    )
    config = PD_CONFIG.format(decider="always-disagg-pd-decider", params="{}")
    stack = await make_stack(config, pd_endpoints(prefill, sidecar_port))
    raw = await stack.client.completions.with_raw_response.create(
        model=MODEL, prompt="tell me a story", max_tokens=5
    )
    assert raw.parse().choices[0].text
    assert raw.headers["x-inference-port"] == str(decode.port)  # the decoder's answer
    assert sum(successes(decode.metrics()).values()) == 1
    for _ in range(100):  # the prefill request runs in the background: bounded wait (~5 s)
        if successes(prefill.metrics()):
            break
        await asyncio.sleep(0.05)
    # the prefiller ran the whole request (no kv_transfer_params: not a vLLM remote decode)
    prefilled = successes(prefill.metrics())
    assert sum(prefilled.values()) == 1 and "remote_decode" not in prefilled
    assert pd_decisions(stack.epp_metrics_url) == {"prefill-decode": 1}


async def test_epp_acc_54_prefix_based_decider_on_the_wire(
    make_stack: StackFactory, pd_pods: tuple[SimProcess, SimProcess, int]
) -> None:
    prefill, decode, sidecar_port = pd_pods
    config = PD_CONFIG.format(decider="prefix-based-pd-decider", params="{nonCachedTokens: 16}")
    stack = await make_stack(config, pd_endpoints(prefill, sidecar_port))
    closed = free_port()
    short = await stack.client.completions.create(
        model=MODEL,
        prompt="x" * 40,  # 10 tokens by the EPP's estimate: below the threshold
        max_tokens=2,
        extra_headers={"x-prefiller-host-port": f"{LOOPBACK}:{closed}"},  # must be cleared
    )
    assert short.choices[0].text
    assert successes(prefill.metrics()) == {}
    assert pd_decisions(stack.epp_metrics_url) == {"decode-only": 1}
    long_prompt = "".join(
        f"block {i} of a long document the requests share.".ljust(64) for i in range(8)
    )
    assert len(long_prompt) == 8 * 64  # 128 estimated tokens: exactly 8 prefix blocks of 16
    for _ in range(2):
        await stack.client.completions.create(model=MODEL, prompt=long_prompt, max_tokens=2)
    # cold: prefilled remotely; then the decode endpoint holds the prefix: decoded in place
    assert pd_decisions(stack.epp_metrics_url) == {"decode-only": 2, "prefill-decode": 1}
    assert successes(prefill.metrics()) == {"remote_decode": 1}
    assert sum(successes(decode.metrics()).values()) == 3


DP_CONFIG = """
plugins:
- type: decode-filter
- type: session-affinity-scorer
- type: queue-scorer
- type: data-parallel-profile-handler
  parameters: {{primaryPort: {primary}}}
schedulingProfiles:
- name: default
  plugins:
  - {{pluginRef: decode-filter}}
  - {{pluginRef: session-affinity-scorer, weight: 10}}
  - {{pluginRef: queue-scorer}}
"""


async def test_epp_acc_51_55_session_affinity_over_data_parallel_ranks(
    make_stack: StackFactory,
    start_sim: Callable[..., SimProcess],
    start_sidecar: SidecarFactory,
) -> None:
    vllm, port = two_free_ports(), two_free_ports()
    start_sim(
        "--model", MODEL, "--port", str(vllm), "--data-parallel-size", "2",
        env={"POD_NAME": "dp-0"},
    )  # fmt: skip
    start_sidecar(
        f"--vllm-port={vllm}", "--data-parallel-size=2", port=port, ranks=2,
        env={"POD_IP": LOOPBACK},
    )  # fmt: skip
    ranks = [f"{LOOPBACK}:{port}", f"{LOOPBACK}:{port + 1}"]
    stack = await make_stack(DP_CONFIG.format(primary=port), ranks)
    served: dict[str, set[str]] = {}
    for rank in (0, 1):
        name = f"default/{static_pod_name(LOOPBACK, port + rank)}-rank-0"
        token = base64.b64encode(name.encode()).decode()
        for n in range(4):
            raw = await stack.client.completions.with_raw_response.create(
                model=MODEL, prompt=f"turn {n}", max_tokens=2,
                extra_headers={"x-session-token": token},
            )  # fmt: skip
            assert raw.headers["x-session-token"] == token  # handed back to the client
            served.setdefault(name, set()).add(raw.headers["x-inference-port"])
    # each session stays on its rank: rank i of the sidecar is simulator rank i
    assert list(served.values()) == [{str(vllm)}, {str(vllm + 1)}]
