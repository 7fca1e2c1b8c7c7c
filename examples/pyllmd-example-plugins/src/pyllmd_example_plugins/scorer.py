"""`prefer-pod-scorer`: scores 1 for endpoints whose pod name starts with `podNamePrefix`,
0 for the others (every endpoint scores 1 when the prefix is empty).

Used live by `pyllmd epp` and in virtual time by `pyllmd simulate` (`gateway: envoy-epp`):
both load the EndpointPickerConfig with the same loader, which calls `factory`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyllmd.epp.plugins.base import PluginBase, params
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest

TYPE = "prefer-pod-scorer"


class PreferPodScorer(PluginBase):
    """A scorer: it has a `score` method (pyllmd finds a plugin's roles by its methods)."""

    TYPE = TYPE

    def __init__(self, name: str, prefix: str) -> None:
        super().__init__(name)
        self.prefix = prefix

    def score(
        self, state: CycleState, request: LLMRequest, endpoints: Sequence[Endpoint]
    ) -> dict[str, float]:
        """Scores in [0, 1] by `namespace/name` of each endpoint, as in-tree scorers do."""
        return {
            ep.namespaced_name: 1.0 if ep.pod_name.startswith(self.prefix) else 0.0
            for ep in endpoints
        }


def factory(name: str, raw: Any, handle: Handle) -> PreferPodScorer:
    """Parameters: `podNamePrefix` (string, default empty). A wrong type is a config error."""
    p = params(raw, "PreferPodScorerParameters")
    return PreferPodScorer(name, p.get_str("podNamePrefix", ""))
