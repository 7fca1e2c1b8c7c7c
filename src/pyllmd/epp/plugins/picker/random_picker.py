"""`random-picker`: N endpoints uniformly at random, ignoring scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyllmd.epp.plugins.base import PluginBase
from pyllmd.epp.plugins.picker.common import max_endpoints, shuffle
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle
from pyllmd.epp.scheduling.types import Endpoint

TYPE = "random-picker"


class RandomPicker(PluginBase):
    """Shuffle and keep the first N."""

    TYPE = TYPE

    def __init__(self, name: str = "", max_num_of_endpoints: int = 1) -> None:
        super().__init__(name)
        self.max_num_of_endpoints = max(1, max_num_of_endpoints)

    def pick(self, state: CycleState, scored: Sequence[tuple[Endpoint, float]]) -> list[Endpoint]:
        order = [ep for ep, _ in scored]
        shuffle(state.rng, order)
        return order[: self.max_num_of_endpoints]


def factory(name: str, raw: Any, handle: Handle) -> RandomPicker:
    """Parameter `maxNumOfEndpoints`."""
    return RandomPicker(name, max_endpoints(raw))
