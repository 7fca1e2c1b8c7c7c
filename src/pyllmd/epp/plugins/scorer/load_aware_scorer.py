"""`load-aware-scorer` (llm-d): 0.5 for an empty queue, falling to 0 at `threshold`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyllmd.epp.plugins.base import PluginBase, params
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest

TYPE = "load-aware-scorer"
DEFAULT_THRESHOLD = 128


class LoadAwareScorer(PluginBase):
    """0.5 × (1 − min(q, threshold)/threshold); an idle endpoint never exceeds 0.5."""

    TYPE = TYPE

    def __init__(self, name: str = "", threshold: int = DEFAULT_THRESHOLD) -> None:
        super().__init__(name)
        self.threshold = threshold if threshold > 0 else DEFAULT_THRESHOLD

    def score(
        self, state: CycleState, request: LLMRequest, endpoints: Sequence[Endpoint]
    ) -> dict[str, float]:
        out: dict[str, float] = {}
        for ep in endpoints:
            q = ep.metrics.waiting_queue_size
            if q <= 0:
                out[ep.namespaced_name] = 0.5
            else:
                out[ep.namespaced_name] = 0.5 * (1.0 - min(q, self.threshold) / self.threshold)
        return out


def factory(name: str, raw: Any, handle: Handle) -> LoadAwareScorer:
    """Parameter `threshold` (128; ≤0 → 128)."""
    return LoadAwareScorer(name, params(raw, "scorer.Parameters").get_int("threshold", 128))
