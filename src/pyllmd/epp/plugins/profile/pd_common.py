"""What the P/D and data-parallel plugins share (spec §6.4, §6.6).

Header names the routing sidecar reads, the P/D decider contract, the prefix
match a decider looks at, the token estimate and the port rewrite used when a
`primaryPort` fronts the data-parallel ranks of a pod.

Where the prefix match comes from differs from upstream on purpose: upstream's
`prefix-based-pd-decider` reads an endpoint attribute that only the approximate
prefix scorer's PrepareData step sets (feature gate `prepareDataPlugins`);
without the gate it never disaggregates once `nonCachedTokens > 0`. Here the
profile handler hands the decider the match the prefix plugin named by its
`prefixPluginName` computed while scoring the decode profile, gate or not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from pyllmd.epp.scheduling.interfaces import CycleState, PdDecision, Plugin
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest

PREFILL_HEADER = "x-prefiller-host-port"
DATA_PARALLEL_HEADER = "x-data-parallel-host-port"
AVERAGE_CHARS_PER_TOKEN = 4  # the request is not tokenized: upstream's estimate
DECODE_ONLY = "decode-only"
PREFILL_DECODE = "prefill-decode"
DEFAULT_PREFIX_PLUGIN = "prefix-cache-scorer"


@dataclass(frozen=True, slots=True)
class PrefixMatch:
    """How much of a request's prompt an endpoint is believed to hold (upstream's
    `PrefixCacheMatchInfo`)."""

    match_blocks: int
    total_blocks: int
    block_size_tokens: int


class PdDecider(Plugin, Protocol):
    """Decides whether a request runs a separate prefill before decoding."""

    def disaggregate(
        self, input_tokens: int, endpoint: Endpoint, match: PrefixMatch | None
    ) -> bool: ...


def is_decider(plugin: object) -> bool:
    """Whether a plugin implements the decider contract (duck-typed, like a Go interface)."""
    return callable(getattr(plugin, "disaggregate", None))


def pd_decisions(state: CycleState) -> list[PdDecision]:
    """The decisions profile handlers recorded in one cycle."""
    return list(state.pd_decisions)


def input_tokens(request: LLMRequest) -> int:
    """Prompt length estimate: prompt bytes (completions) or JSON of the messages
    (chat; responses/conversations likewise their JSON) divided by 4."""
    return len(request.prompt_bytes()) // AVERAGE_CHARS_PER_TOKEN


def prefix_match(state: CycleState, plugin_name: str, endpoint: Endpoint) -> PrefixMatch | None:
    """The match a prefix plugin (approximate or precise) left in the cycle state for
    `endpoint`, if any."""
    found = state.prefix.get(plugin_name)
    if found is None:
        return None
    matched = found.matches.get(endpoint.namespaced_name, 0)
    return PrefixMatch(matched, len(found.hashes), found.block_size_tokens)


def has_prefix_hit(state: CycleState, plugin_name: str) -> bool | None:
    """Whether the prefix plugin's state shows any server holding a prefix; None
    when the plugin left no state in this cycle."""
    found = state.prefix.get(plugin_name)
    if found is None:
        return None
    return any(v > 0 for v in found.matches.values())


def with_port(targets: Iterable[Endpoint], port: int) -> tuple[Endpoint, ...]:
    """The same endpoints addressed on `port` (names, labels and metrics unchanged)."""
    return tuple(dataclasses.replace(t, port=port) for t in targets)
