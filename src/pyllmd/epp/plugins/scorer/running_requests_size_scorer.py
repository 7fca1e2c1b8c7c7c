"""`running-requests-size-scorer`: prefers fewer running requests (min-max)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyllmd.epp.plugins.base import PluginBase
from pyllmd.epp.plugins.scorer.common import inverse_min_max
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest

TYPE = "running-requests-size-scorer"


class RunningRequestsSizeScorer(PluginBase):
    """Scores by RunningRequestsSize."""

    TYPE = TYPE

    def score(
        self, state: CycleState, request: LLMRequest, endpoints: Sequence[Endpoint]
    ) -> dict[str, float]:
        return inverse_min_max(endpoints, lambda ep: ep.metrics.running_requests_size)


def factory(name: str, raw: Any, handle: Handle) -> RunningRequestsSizeScorer:
    """No parameters."""
    return RunningRequestsSizeScorer(name)
