"""`max-score-picker`: highest total score first; ties broken at random."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyllmd.epp.plugins.base import PluginBase
from pyllmd.epp.plugins.picker.common import max_endpoints, shuffle
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle
from pyllmd.epp.scheduling.types import Endpoint

TYPE = "max-score-picker"


class MaxScorePicker(PluginBase):
    """Shuffle, then stable sort by score descending, keep the first N."""

    TYPE = TYPE

    def __init__(self, name: str = "", max_num_of_endpoints: int = 1) -> None:
        super().__init__(name)
        self.max_num_of_endpoints = max(1, max_num_of_endpoints)

    def pick(self, state: CycleState, scored: Sequence[tuple[Endpoint, float]]) -> list[Endpoint]:
        order = list(scored)
        shuffle(state.rng, order)
        if self.max_num_of_endpoints == 1 and order:  # the first best in the shuffled order
            return [max(order, key=_score)[0]]
        order.sort(key=_score, reverse=True)  # stable: ties stay shuffled
        return [ep for ep, _ in order[: self.max_num_of_endpoints]]


def _score(item: tuple[Endpoint, float]) -> float:
    return item[1]


def factory(name: str, raw: Any, handle: Handle) -> MaxScorePicker:
    """Parameter `maxNumOfEndpoints`."""
    return MaxScorePicker(name, max_endpoints(raw))
