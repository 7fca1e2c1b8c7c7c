"""`kv-cache-utilization-scorer`: prefers free KV cache (1 − usage)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyllmd.epp.plugins.base import PluginBase
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest

TYPE = "kv-cache-utilization-scorer"


class KVCacheUtilizationScorer(PluginBase):
    """Scores 1 − KVCacheUsagePercent."""

    TYPE = TYPE

    def score(
        self, state: CycleState, request: LLMRequest, endpoints: Sequence[Endpoint]
    ) -> dict[str, float]:
        return {ep.namespaced_name: 1.0 - ep.metrics.kv_cache_usage_percent for ep in endpoints}


def factory(name: str, raw: Any, handle: Handle) -> KVCacheUtilizationScorer:
    """No parameters."""
    return KVCacheUtilizationScorer(name)
