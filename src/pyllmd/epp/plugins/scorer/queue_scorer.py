"""`queue-scorer`: prefers short waiting queues (min-max over the candidates)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyllmd.epp.plugins.base import PluginBase
from pyllmd.epp.plugins.scorer.common import inverse_min_max
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest

TYPE = "queue-scorer"


class QueueScorer(PluginBase):
    """Scores by WaitingQueueSize."""

    TYPE = TYPE

    def score(
        self, state: CycleState, request: LLMRequest, endpoints: Sequence[Endpoint]
    ) -> dict[str, float]:
        return inverse_min_max(endpoints, lambda ep: ep.metrics.waiting_queue_size)


def factory(name: str, raw: Any, handle: Handle) -> QueueScorer:
    """No parameters."""
    return QueueScorer(name)
