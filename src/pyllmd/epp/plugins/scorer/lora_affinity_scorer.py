"""`lora-affinity-scorer`: prefers servers with the adapter loaded, or room to load it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyllmd.epp.plugins.base import PluginBase
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest

TYPE = "lora-affinity-scorer"


def affinity(ep: Endpoint, model: str) -> float:
    """1 active; 0.8 room for one more adapter; 0.6 only waiting; else 0."""
    m = ep.metrics
    if model in m.active_models:
        return 1.0
    if len(m.active_models) + len(m.waiting_models) < m.max_active_models:
        return 0.8
    if model in m.waiting_models:
        return 0.6
    return 0.0


class LoraAffinityScorer(PluginBase):
    """Scores by the target model's presence in the LoRA adapter sets."""

    TYPE = TYPE

    def score(
        self, state: CycleState, request: LLMRequest, endpoints: Sequence[Endpoint]
    ) -> dict[str, float]:
        return {ep.namespaced_name: affinity(ep, request.target_model) for ep in endpoints}


def factory(name: str, raw: Any, handle: Handle) -> LoraAffinityScorer:
    """No parameters."""
    return LoraAffinityScorer(name)
