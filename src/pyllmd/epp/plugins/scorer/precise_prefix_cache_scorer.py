"""`precise-prefix-cache-scorer` (llm-d): prefix affinity from the engines' own KV events.

Engines publish which KV blocks they store and evict (`kvindex.subscriber`); the
index maps them to request keys (`kvindex.processor`). Scoring tokenizes the
request (`kvindex.prompt`), computes its request keys (kv-events contract §1.2),
and gives each pod the tier-weighted count of consecutive leading blocks it
holds, looked up over every indexed pod. Endpoints are matched to pods by
address; the scores are min-max scaled over all raw entries (candidates or not),
all equal → 1.0, absent → 0. Raw counts go to the cycle state's `prefix` slot
for the P/D deciders and `no-hit-lru-scorer`, as the approximate scorer's do.

The scorer is pure given its index. Its data source is the KV-event feed of
`datalayer/kvevents.py` (the ZMQ subscribers), which applies events to
`processor` and, with `discoverPods`, sets `on_endpoints` so that `Score` reports
the endpoints it saw and per-pod subscriptions follow the pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyllmd.core.prefix import block_keys
from pyllmd.core.tokenize import Tokenizer
from pyllmd.epp.kvindex.index import KVBlockIndex, longest_prefix_scores
from pyllmd.epp.kvindex.keys import RequestKeyer
from pyllmd.epp.kvindex.params import TYPE, PreciseSettings, parse_settings
from pyllmd.epp.kvindex.processor import EventProcessor
from pyllmd.epp.kvindex.prompt import request_tokens, resolve_tokenizer
from pyllmd.epp.plugins.base import PluginBase
from pyllmd.epp.scheduling.interfaces import CycleState, PrefixLookup
from pyllmd.epp.scheduling.registry import Handle
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest

__all__ = ["TYPE", "PrecisePrefixCacheScorer", "SeenHook", "factory", "normalize"]

log = logging.getLogger(__name__)

SeenHook = Callable[[Sequence[tuple[str, str]], float], None]
"""Told the (namespaced name, address) of the endpoints `Score` saw, and the cycle's `now`."""


@dataclass
class LookupStats:
    """Upstream's `kvcache_index_lookup_*` counters (exported with `enableMetrics`)."""

    lookups: int = 0
    hits: int = 0  # the best pod's matched blocks, summed over lookups


def normalize(raw: Mapping[str, float], endpoints: Sequence[Endpoint]) -> dict[str, float]:
    """Min-max over all raw entries; endpoints matched by address, absent ones 0."""
    if not raw:
        return {ep.namespaced_name: 0.0 for ep in endpoints}
    low, high = min(raw.values()), max(raw.values())
    out: dict[str, float] = {}
    for ep in endpoints:
        value = raw.get(ep.address)
        if value is None:
            out[ep.namespaced_name] = 0.0
        elif high == low:
            out[ep.namespaced_name] = 1.0
        else:
            out[ep.namespaced_name] = (value - low) / (high - low)
    return out


class PrecisePrefixCacheScorer(PluginBase):
    """Scores endpoints by the KV blocks their engines reported holding."""

    TYPE = TYPE
    category = "affinity"

    def __init__(
        self,
        name: str,
        settings: PreciseSettings,
        tokenizer: Tokenizer,
    ) -> None:
        super().__init__(name)
        self.settings = settings
        self.tokenizer = tokenizer
        self.kv_index = KVBlockIndex(settings.index_size, settings.pod_cache_size)
        self.keyer = RequestKeyer(settings.block_size, settings.hash_seed)
        self.processor = EventProcessor(
            self.kv_index, settings.block_size, settings.hash_seed, self.keyer
        )
        self.lookup_stats = LookupStats()
        self.on_endpoints: SeenHook | None = None  # set by the KV-event feed while it runs
        self._last: tuple[LLMRequest, tuple[list[int], list[int]] | None] | None = None

    def raw_scores(self, request: LLMRequest) -> tuple[tuple[int, ...], dict[str, float]] | None:
        """The request keys and raw score per pod; None when the request has no input."""
        found = self._keyed(request)
        if found is None:
            return None
        tokens, keys = found
        if not keys:
            return (), {}
        s, model = self.settings, request.target_model
        engine: list[int | None] = [None] * len(keys)
        if self.kv_index.has_fallback:
            engine = list(block_keys(tokens, s.block_size, s.hash_seed))
        per_block = (self.kv_index.holders(k, e, model) for k, e in zip(keys, engine, strict=True))
        scores = longest_prefix_scores(per_block, s.tier_weights)
        self.lookup_stats.lookups += 1
        self.lookup_stats.hits += int(max(scores.values(), default=0.0))
        return tuple(keys), scores

    def _keyed(self, request: LLMRequest) -> tuple[list[int], list[int]] | None:
        """Tokens and request keys; the last request's are reused (P/D scores it per profile)."""
        last = self._last
        if last is not None and last[0] is request:
            return last[1]
        tokens = request_tokens(self.tokenizer, request)
        found = None if tokens is None else (tokens, self.keyer.keys(tokens, request.target_model))
        self._last = (request, found)
        return found

    def score(
        self, state: CycleState, request: LLMRequest, endpoints: Sequence[Endpoint]
    ) -> dict[str, float]:
        if self.on_endpoints is not None and self.settings.discover_pods:
            self.on_endpoints([(ep.namespaced_name, ep.address) for ep in endpoints], state.now)
        found = self.raw_scores(request)
        if found is None:
            return {}
        keys, raw = found
        matches = {ep.namespaced_name: int(raw.get(ep.address, 0.0)) for ep in endpoints}
        state.prefix[self.name] = PrefixLookup(keys, matches, self.settings.block_size)
        return normalize(raw, endpoints)


def factory(name: str, raw: Any, handle: Handle) -> PrecisePrefixCacheScorer:
    """Parameters per kv-events contract §3.4; the tokenizer is resolved now, offline."""
    settings = parse_settings(raw)
    if settings.backend != "inMemoryConfig":
        log.warning(
            "%s: kvBlockIndexConfig.%s is not supported; using the in-memory index",
            TYPE,
            settings.backend,
        )
    return PrecisePrefixCacheScorer(name, settings, resolve_tokenizer(settings.tokenizer))
