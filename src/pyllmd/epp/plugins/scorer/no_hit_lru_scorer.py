"""`no-hit-lru-scorer` (llm-d): spread requests that hit no cached prefix.

A request is cold when the prefix plugin (named by `prefixPluginName`) found
no server holding any of its prefix in this cycle, or left no state at all.
Cold requests prefer endpoints that never took a cold request (in candidate
order), then the least recently used ones: score = 1 − rank/(n − 1), floored
at 0, a single candidate 1. Warm requests score 0.5 everywhere. After a cold
request is scheduled, the first target of the primary profile and of profile
`prefill` become the most recently used. The state is matched by plugin name
only (upstream keys it by type and name).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from pyllmd.epp.plugins.base import PluginBase, params
from pyllmd.epp.plugins.profile.pd_common import DEFAULT_PREFIX_PLUGIN, has_prefix_hit
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle, ParamError
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest, SchedulingResult

TYPE = "no-hit-lru-scorer"
DEFAULT_LRU_SIZE = 1024
PREFILL_PROFILE = "prefill"


class NoHitLruScorer(PluginBase):
    """Least-recently-cold-used endpoints first, for cold requests only."""

    TYPE = TYPE

    def __init__(
        self,
        name: str = "",
        *,
        prefix_plugin_type: str = DEFAULT_PREFIX_PLUGIN,
        prefix_plugin_name: str = DEFAULT_PREFIX_PLUGIN,
        lru_size: int = DEFAULT_LRU_SIZE,
    ) -> None:
        super().__init__(name)
        self.prefix_plugin_type = prefix_plugin_type
        self.prefix_plugin_name = prefix_plugin_name
        self.lru_size = lru_size if lru_size > 0 else DEFAULT_LRU_SIZE
        self.lru: OrderedDict[str, None] = OrderedDict()  # oldest first

    def is_cold(self, state: CycleState) -> bool:
        """No prefix hit anywhere (or no prefix state) in this cycle."""
        return not has_prefix_hit(state, self.prefix_plugin_name)

    def score(
        self, state: CycleState, request: LLMRequest, endpoints: Sequence[Endpoint]
    ) -> dict[str, float]:
        cold = self.is_cold(state)
        state.cold[self.name] = cold  # read back by pre_request
        if not cold:
            return {ep.namespaced_name: 0.5 for ep in endpoints}
        n = len(endpoints)
        if n == 1:
            return {endpoints[0].namespaced_name: 1.0}
        position = {name: i for i, name in enumerate(self.lru)}
        never = [ep for ep in endpoints if ep.namespaced_name not in position]
        out = {ep.namespaced_name: 1.0 - i / (n - 1) for i, ep in enumerate(never)}
        for ep in endpoints:
            pos = position.get(ep.namespaced_name)
            if pos is not None:
                out[ep.namespaced_name] = max(0.0, 1.0 - (len(never) + pos) / (n - 1))
        return out

    def pre_request(self, state: CycleState, request: LLMRequest, result: SchedulingResult) -> None:
        if not state.cold.get(self.name, False):
            return
        for profile in (result.primary_profile, PREFILL_PROFILE):
            found = result.profile_results.get(profile)
            if found is not None and found.targets:
                self.touch(found.targets[0].namespaced_name)

    def touch(self, name: str) -> None:
        """Marks an endpoint most recently used, evicting the oldest beyond `lruSize`."""
        self.lru[name] = None
        self.lru.move_to_end(name)
        while len(self.lru) > self.lru_size:
            self.lru.popitem(last=False)


def factory(name: str, raw: Any, handle: Handle) -> NoHitLruScorer:
    """Parameters `prefixPluginType`, `prefixPluginName` (both `prefix-cache-scorer`),
    `lruSize` (1024; ≤ 0 → 1024)."""
    try:
        p = params(raw, "NoHitLRUParameters")
        prefix_type = p.get_str("prefixPluginType", "") or DEFAULT_PREFIX_PLUGIN
        prefix_name = p.get_str("prefixPluginName", "") or DEFAULT_PREFIX_PLUGIN
        size = p.get_int("lruSize", 0)
    except ParamError as err:
        raise ParamError(f"failed to parse the parameters of the '{TYPE}' scorer - {err}") from None
    return NoHitLruScorer(
        name, prefix_plugin_type=prefix_type, prefix_plugin_name=prefix_name, lru_size=size
    )
