"""`weighted-random-picker`: sampling without replacement, probability ∝ score.

Efraimidis–Spirakis A-Res: each endpoint draws key u^(1/score) and the N
largest keys win. Without any positive score it behaves as `random-picker`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyllmd.epp.plugins.base import PluginBase
from pyllmd.epp.plugins.picker.common import max_endpoints
from pyllmd.epp.plugins.picker.random_picker import RandomPicker
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle
from pyllmd.epp.scheduling.types import Endpoint

TYPE = "weighted-random-picker"


class WeightedRandomPicker(PluginBase):
    """A-Res weighted sampling of N endpoints."""

    TYPE = TYPE

    def __init__(self, name: str = "", max_num_of_endpoints: int = 1) -> None:
        super().__init__(name)
        self.max_num_of_endpoints = max(1, max_num_of_endpoints)
        self._fallback = RandomPicker(name, self.max_num_of_endpoints)

    def pick(self, state: CycleState, scored: Sequence[tuple[Endpoint, float]]) -> list[Endpoint]:
        if not any(score > 0 for _, score in scored):
            return self._fallback.pick(state, scored)
        keyed: list[tuple[float, Endpoint]] = []
        for ep, score in scored:
            key = 0.0
            if score > 0:
                u = state.rng.random()
                while u == 0.0:  # u must lie in (0, 1)
                    u = state.rng.random()
                key = u ** (1.0 / score)
            keyed.append((key, ep))
        keyed.sort(key=lambda item: item[0], reverse=True)
        return [ep for _, ep in keyed[: self.max_num_of_endpoints]]


def factory(name: str, raw: Any, handle: Handle) -> WeightedRandomPicker:
    """Parameter `maxNumOfEndpoints`."""
    return WeightedRandomPicker(name, max_endpoints(raw))
