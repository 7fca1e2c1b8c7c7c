"""Analyzers, registered under upstream's `analyzerName` values (`""` → V1, `saturation` → V2).

Other packages add analyzers through the `pyllmd.autoscaler.analyzers` entry-point group
(name = `analyzerName`, value = a callable like the `ANALYZERS` values); in-tree names win.

Each analyzer turns one model group's metrics into per-variant decisions. V1 is
stateless; V2 (with the cost-aware optimizer) keeps a `V2State` across cycles,
which the caller creates once per process and hands to `make_analyzer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, cast

from pyllmd.autoscaler.decide.analyze import saturation_v1, saturation_v2
from pyllmd.autoscaler.decide.analyze.capacity_store import V2State
from pyllmd.autoscaler.decide.analyze.saturation_v1 import SaturationV1Analyzer
from pyllmd.autoscaler.decide.analyze.vllm_args import parse_vllm_args
from pyllmd.autoscaler.decide.model import Decision, ModelGroup, SaturationConfig
from pyllmd.autoscaler.decide.optimize import cost_aware
from pyllmd.core import plugins

__all__ = [
    "ANALYZERS",
    "Analyzer",
    "SaturationV1Analyzer",
    "SaturationV2Analyzer",
    "V2State",
    "make_analyzer",
    "parse_vllm_args",
]


class Analyzer(Protocol):
    """Turns one model group's metrics into per-variant decisions; pure."""

    version: str
    """`v1` or `v2`: which saturation model (enforcement and the limiter depend on it)."""

    def analyze(self, group: ModelGroup, config: SaturationConfig, now: float) -> list[Decision]:
        """Decisions for the variants of `group` that get one this cycle.

        `now` (wall seconds, from the caller's Clock) stamps whatever the analyzer
        learns, so that its state can expire (`V2State.evict`).
        """
        ...


class SaturationV2Analyzer:
    """The V2 token-capacity analyzer followed by the cost-aware optimizer."""

    version = "v2"

    def __init__(self, state: V2State | None = None) -> None:
        self.state = state if state is not None else V2State()

    def analyze(self, group: ModelGroup, config: SaturationConfig, now: float) -> list[Decision]:
        """Decisions for every variant of `group`; `now` (wall seconds) stamps what is learned."""
        analysis = saturation_v2.analyze_capacity(group, config, self.state, now)
        return cost_aware(analysis)


def _v1(_state: V2State | None) -> Analyzer:
    return SaturationV1Analyzer()


def _v2(state: V2State | None) -> Analyzer:
    return SaturationV2Analyzer(state)


ANALYZERS: Mapping[str, Callable[[V2State | None], Analyzer]] = {
    saturation_v1.NAME: _v1,
    saturation_v2.NAME: _v2,
}
"""Analyzer factories keyed by `analyzerName`."""


def make_analyzer(name: str, state: V2State | None = None) -> Analyzer:
    """The analyzer for `analyzerName`: in-tree, else an installed entry point of that name,
    else V1 (any other value selects V1, as upstream). Raises `plugins.PluginLoadError` (one
    line naming the entry point) when the named plugin cannot be imported."""
    factory = ANALYZERS.get(name)
    if factory is None and name:
        found = plugins.load_callable(plugins.ANALYZERS, name, ANALYZERS)
        if found is not None:
            return cast(Callable[[V2State | None], Analyzer], found)(state)
    return (factory or _v1)(state)
