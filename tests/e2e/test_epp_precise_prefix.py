"""`precise-prefix-cache-scorer` end to end (spec §6.5, kv-events contract): two `pyllmd sim`
processes publish KV events over ZMQ to `pyllmd epp`, which routes through a real Envoy.

The simulators listen on distinct loopback addresses (127.0.0.2 and 127.0.0.3) with
`POD_IP` set to the same address, because the scorer matches the pod in the event
topic `kv@<POD_IP>@<model>` to endpoints by address. They connect their publishers
to the EPP's global subscriber (`kvEventsConfig.zmqEndpoint`, bind mode).

Each simulator is first warmed directly (not through the gateway) with its own long
prompt; requests through Envoy that share one of those prompts must then land on the
simulator holding it, although the queue scorer sees two idle, equal endpoints.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from openai import AsyncOpenAI

from pyllmd.core.promtext import parse_samples
from tests.e2e.eppgateway import EppGateway, static_args, value
from tests.e2e.harness import ManagedProcess, SimProcess, free_port, http_get

pytestmark = pytest.mark.e2e

MODEL = "m"
HOSTS = ("127.0.0.2", "127.0.0.3")
SIM_ARGS = (
    "--model", MODEL, "--enable-kvcache", "--event-batch-size", "1",
    "--time-to-first-token", "0", "--max-model-len", "4096",
)  # fmt: skip
CONFIG = """
plugins:
- type: precise-prefix-cache-scorer
  parameters:
    indexerConfig:
      tokenizersPoolConfig: {{modelName: {model}}}
      kvBlockIndexConfig: {{enableMetrics: true}}
    kvEventsConfig: {{zmqEndpoint: "tcp://127.0.0.1:{zmq_port}", discoverPods: false}}
- type: queue-scorer
schedulingProfiles:
- name: default
  plugins:
  - {{pluginRef: precise-prefix-cache-scorer, weight: 10}}
  - {{pluginRef: queue-scorer, weight: 1}}
"""


def prefix(topic: str) -> str:
    """A prompt of 360 simple-tokenizer tokens (22 full blocks of 16)."""
    return " ".join(f"{topic} context line {i} of the shared document." for i in range(40))


def free_port_on(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    sims: dict[str, SimProcess]  # host → simulator
    epp: ManagedProcess
    metrics_url: str
    client: AsyncOpenAI

    def epp_counter(self, name: str, **labels: str) -> float:
        return scraped(self.metrics_url, name, **labels)


def scraped(url: str, name: str, **labels: str) -> float:
    """The sum of the samples `name{labels}` on a `/metrics` page."""
    status, body = http_get(url)
    assert status == 200
    return value(list(parse_samples(body.decode())), name, **labels)


@pytest.fixture
async def stack(_processes: Any, epp_gateway: Callable[..., EppGateway]) -> Stack:
    """The simulators, the EPP (once it scraped both), then Envoy; all stopped (with
    logs on failure) by the shared fixtures.

    The simulators' publishers connect before the EPP binds: ZMQ reconnects, and
    they hold their events until a subscriber is there.
    """
    zmq_port = free_port()
    ports = {host: free_port_on(host) for host in HOSTS}
    sims: dict[str, SimProcess] = {}
    for host, port in ports.items():
        args = ("--host", host, "--port", str(port))
        zmq = ("--zmq-endpoint", f"tcp://127.0.0.1:{zmq_port}")
        sim = SimProcess((*args, *zmq, *SIM_ARGS), {"POD_IP": host, "POD_NAME": f"sim-{host}"})
        _processes.items.append(sim)
        sim.base_url = f"http://{host}:{port}"  # the harness assumes 127.0.0.1
        sims[host] = sim
    for sim in sims.values():
        sim.wait_healthy()
    config = CONFIG.format(model=MODEL, zmq_port=zmq_port)
    endpoints = [f"{h}:{p}" for h, p in ports.items()]
    refresh = "--refresh-prometheus-metrics-interval=100ms"
    gw = epp_gateway(*static_args(endpoints, config, refresh))
    await gw.start(ready_pods=len(sims))
    return Stack(sims, gw.epp, gw.metrics_url, gw.client)


def _warm(sim: SimProcess, prompt: str) -> None:
    """One completion sent straight to a simulator, bypassing the gateway."""
    body = json.dumps({"model": MODEL, "prompt": prompt, "max_tokens": 1}).encode()
    headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(f"{sim.base_url}/v1/completions", body, headers)
    with urllib.request.urlopen(req, timeout=10) as reply:
        assert reply.status == 200


async def _served_by(stack: Stack, prompt: str) -> str:
    """One completion through Envoy; the host of the simulator that served it."""
    raw = await stack.client.completions.with_raw_response.create(
        model=MODEL, prompt=prompt, max_tokens=1
    )
    assert raw.parse().choices
    port = int(raw.headers["x-inference-port"])
    return next(h for h, s in stack.sims.items() if s.base_url.endswith(f":{port}"))


def _wait_indexed(stack: Stack, blocks: float) -> None:
    """Poll the EPP until it indexed `blocks` BlockStored events (one per block)."""
    stack.epp.wait_until(
        lambda: stack.epp_counter("pyllmd:epp_kv_events_total", outcome="indexed") >= blocks,
        10.0,
        f"indexing {blocks} blocks",
    )


async def test_requests_go_to_the_simulator_holding_their_prefix(stack: Stack) -> None:
    first, second = HOSTS
    _warm(stack.sims[first], prefix("alpha"))
    _warm(stack.sims[second], prefix("beta"))
    _wait_indexed(stack, 2 * 22)
    served = [await _served_by(stack, f"{prefix('beta')} Question {n}?") for n in range(8)]
    served += [await _served_by(stack, f"{prefix('alpha')} Question {n}?") for n in range(8)]
    # by chance (two idle endpoints, equal queue scores) this would happen once in 65536 runs
    assert served == [second] * 8 + [first] * 8
    assert stack.epp_counter("kvcache_index_lookup_requests_total") >= 16
    assert stack.epp_counter("pyllmd:epp_kv_event_batches_total", outcome="lost") == 0
    assert stack.epp.stop() == 0  # SIGTERM: subscribers closed, clean exit
