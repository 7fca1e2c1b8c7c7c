"""Plugin contracts (upstream `framework/interface`), as Protocols.

Scoring is synchronous and CPU-only; async I/O happens before it, in the data
layer. Randomness comes from the cycle's injected `random.Random`, time from
the `now` passed in.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pyllmd.epp.scheduling.types import Endpoint, LLMRequest, ProfileResult, SchedulingResult


@dataclass(frozen=True, slots=True)
class PrefixLookup:
    """What a prefix plugin found for one request: the request's block keys and, per
    endpoint (namespaced name), how many of its leading blocks that endpoint holds.

    Written by the approximate and the precise prefix scorers while scoring; read by
    their PreRequest step, the P/D deciders, `no-hit-lru-scorer` and the prefix metrics.
    """

    hashes: tuple[int, ...]
    matches: dict[str, int]  # endpoint namespaced name → leading blocks matched
    block_size_tokens: int

    def hit_ratio(self, server: str) -> float:
        """Matched / total blocks for one endpoint (0 when nothing was hashed)."""
        return self.matches.get(server, 0) / len(self.hashes) if self.hashes else 0.0


@dataclass(frozen=True, slots=True)
class PdDecision:
    """One prefill/decode decision of a profile handler, counted by the shell
    (`llm_d_inference_scheduler_pd_decision_total`)."""

    model_name: str
    decision_type: str  # "decode-only" | "prefill-decode"


@dataclass
class CycleState:
    """Per-request scratch space shared by the plugins of one scheduling cycle.

    One typed slot per thing in-tree plugins hand each other, keyed by the
    producing plugin's name where several plugins of a type may run.
    """

    rng: random.Random
    now: float
    prefix: dict[str, PrefixLookup] = field(default_factory=dict)  # prefix plugin name → lookup
    pd_decisions: list[PdDecision] = field(default_factory=list)
    cold: dict[str, bool] = field(default_factory=dict)  # no-hit-lru scorer name → no prefix hit


class Plugin(Protocol):
    """Every plugin has its upstream type string and a configured name."""

    type_name: str
    name: str


class Filter(Plugin, Protocol):
    """Narrows the candidate endpoints."""

    def filter(
        self, state: CycleState, request: LLMRequest, endpoints: Sequence[Endpoint]
    ) -> list[Endpoint]: ...


class Scorer(Plugin, Protocol):
    """Scores candidates in [0, 1]; endpoints left out score 0."""

    def score(
        self, state: CycleState, request: LLMRequest, endpoints: Sequence[Endpoint]
    ) -> dict[str, float]:  # endpoint namespaced name → score
        ...


class Picker(Plugin, Protocol):
    """Chooses the target endpoints from scored candidates, best first."""

    def pick(
        self, state: CycleState, scored: Sequence[tuple[Endpoint, float]]
    ) -> list[Endpoint]: ...


class ProfileHandler(Plugin, Protocol):
    """Chooses which profiles run, and assembles their results."""

    def pick_profiles(
        self,
        state: CycleState,
        request: LLMRequest,
        profiles: Sequence[str],
        results: Mapping[str, ProfileResult | None],
    ) -> list[str]: ...

    def process_results(
        self,
        state: CycleState,
        request: LLMRequest,
        results: Mapping[str, ProfileResult | None],
    ) -> SchedulingResult: ...


class PreRequest(Plugin, Protocol):
    """Runs after scheduling, before the request is forwarded (e.g. prefix-index update)."""

    def pre_request(
        self, state: CycleState, request: LLMRequest, result: SchedulingResult
    ) -> None: ...


class ResponseReceived(Plugin, Protocol):
    """Runs when the model server's response headers arrive; may add response headers.

    `headers` is the response-header map the servicer re-emits to Envoy, so a
    key set here reaches the client (e.g. `x-session-token`).
    """

    def response_received(
        self, request: LLMRequest, result: SchedulingResult, headers: dict[str, str]
    ) -> None: ...


class ResponseComplete(Plugin, Protocol):
    """Runs once per scheduled request when its response ended (or its stream did)."""

    def response_complete(self, request: LLMRequest, result: SchedulingResult) -> None: ...
