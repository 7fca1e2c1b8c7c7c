"""Which pod a request goes to in `pyllmd simulate`.

Without an endpoint picker (the stack's `gateway: builtin`, or none), requests go round robin
over the pods. With `gateway: envoy-epp`, the endpoint picker's own scheduling code decides:
the EndpointPickerConfig of the stack (`eppConfig`, else the chart's default plugins) is loaded
by `epp.config`, and each request runs the same `ProfileRunner` cycle and `PreRequest` plugins
as `pyllmd epp` runs for it, over endpoint metrics as of the last scrape tick (every
`--refresh-metrics-interval`, 50 ms, as the picker's scrapers). Flow control and the
saturation detector are not applied here yet.

Prompts are token ids here, while the picker hashes prompt text: each id is rendered as four
characters (the picker's characters per token), so equal token prefixes are equal text
prefixes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Protocol, cast

from pyllmd.epp.config.loader import load_config_text
from pyllmd.epp.saturation import fresh_candidates
from pyllmd.epp.scheduling.interfaces import CycleState, PreRequest
from pyllmd.epp.scheduling.registry import ROLE_PRE_REQUEST, roles
from pyllmd.epp.scheduling.runner import SchedulingError
from pyllmd.epp.scheduling.types import Endpoint, EndpointMetrics, LLMRequest
from pyllmd.sim.batch.scheduler import Engine

SCRAPE_S = 0.05  # the picker's --refresh-metrics-interval
STALENESS_S = 2.0  # its --metrics-staleness-threshold
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def token_text(ids: Sequence[int]) -> str:
    """Four characters per token id, the same for the same id."""
    out = []
    n = len(_ALPHABET)
    for t in ids:
        out.append(
            _ALPHABET[t % n]
            + _ALPHABET[t // n % n]
            + _ALPHABET[t // (n * n) % n]
            + _ALPHABET[t // (n * n * n) % n]
        )
    return "".join(out)


class Router(Protocol):
    def pick(
        self,
        pods: Sequence[str],
        engines: Mapping[str, Engine],
        tokens: Sequence[int],
        model: str,
        now: float,
    ) -> str: ...


class RoundRobin:
    """Requests in turn over the pods."""

    def __init__(self) -> None:
        self.turn = 0

    def pick(self, pods: Sequence[str], engines: Mapping[str, Engine], tokens: Sequence[int],
             model: str, now: float) -> str:  # fmt: skip
        pod = pods[self.turn % len(pods)]
        self.turn += 1
        return pod


class EppRouter:
    """The endpoint picker's scheduling cycle over the pods' engines."""

    def __init__(self, config_text: str, namespace: str, seed: int) -> None:
        self.config = load_config_text(config_text)
        self.runner = self.config.scheduler
        self.pre_request = [
            cast(PreRequest, p)
            for p in self.config.plugins.values()
            if ROLE_PRE_REQUEST in roles(p)
        ]
        self.namespace = namespace
        self.rng = random.Random(seed)
        self.scraped_at = -math.inf
        self.snapshot: dict[str, Endpoint] = {}
        self.count = 0
        self.picks: dict[str, int] = {}

    def _scrape(self, pods: Sequence[str], engines: Mapping[str, Engine], now: float) -> None:
        """Endpoint metrics as the picker's scrapers read them at this tick."""
        ticks = math.floor(now / SCRAPE_S)
        at = ticks * SCRAPE_S
        if at <= self.scraped_at and set(self.snapshot) == set(pods):
            return
        self.scraped_at = at
        snap = {}
        for i, pod in enumerate(pods):
            eng = engines[pod]
            kv = eng.kv
            metrics = EndpointMetrics(
                waiting_queue_size=len(eng.waiting) + len(eng.loading),
                running_requests_size=len(eng.running),
                kv_cache_usage_percent=kv.used / kv.size if kv.size else 0.0,
                cache_block_size=eng.cfg.block_size,
                cache_num_gpu_blocks=kv.size,
                update_time=at,
            )
            snap[pod] = Endpoint(
                name=f"{pod}-rank-0",
                namespace=self.namespace,
                pod_name=pod,
                address=f"10.0.{i // 250}.{i % 250 + 1}",
                port=8000,
                metrics=metrics,
            )
        self.snapshot = snap

    def pick(
        self,
        pods: Sequence[str],
        engines: Mapping[str, Engine],
        tokens: Sequence[int],
        model: str,
        now: float,
    ) -> str:
        """The pod the picker's cycle sends this request to; SchedulingError when none fits."""
        self._scrape(pods, engines, now)
        self.count += 1
        request = LLMRequest(
            request_id=f"req-{self.count}",
            incoming_model=model,
            target_model=model,
            api="completions",
            body={"model": model, "prompt": token_text(tokens)},
        )
        candidates = fresh_candidates(list(self.snapshot.values()), now, STALENESS_S)
        state = CycleState(rng=self.rng, now=now)
        result = self.runner.schedule_in(state, request, candidates)
        for plugin in self.pre_request:
            plugin.pre_request(state, request, result)
        if not result.targets:
            raise SchedulingError("no endpoints available for the given request")
        pod = result.targets[0].pod_name
        self.picks[pod] = self.picks.get(pod, 0) + 1
        return pod
