"""`kv-cache-utilization-scorer`: prefers free KV cache (1 − usage)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyllmd.epp.framework.interfaces import CycleState
from pyllmd.epp.framework.registry import Handle
from pyllmd.epp.framework.types import Endpoint, LLMRequest
from pyllmd.epp.plugins.base import PluginBase

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
