"""The KV-block index (kv-events contract §3.1, §3.3): which pods hold which prompt blocks.

Main index, as upstream's in-memory v0.5.0 one: request key → an LRU of pod
entries (pod, device tier), plus engine key → request key, both LRUs of at most
`size` keys, each key holding at most `pod_cache_size` pod entries.

Beyond upstream, two deliberate additions:

* Engine-key fallback: blocks an event cannot map to request keys (no
  `token_ids`, as the pinned llm-d-inference-sim sends; or a parent never seen)
  are kept under their engine keys, per model. Scoring also computes the
  request's engine keys (vLLM `sha256_cbor` = kv-cache v0.4.0 scheme, with the
  scorer's `hashSeed` and block size) and counts a pod at a block when it holds
  either key. When the engine hashes some other way these entries never match
  and only cost memory (bounded by the same LRU).
* `AllBlocksCleared` is honoured (upstream ignores it and keeps routing to a
  cache that no longer exists): each pod has an epoch, bumped by a clear, and
  entries written under an older epoch are ignored (and purged as met).

Hand-written LRUs over `OrderedDict`: the index needs per-key nested LRUs with
lazy purging that no well-kept cache package offers in this shape.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import NamedTuple, TypeVar

DEFAULT_TIER = "GPU"  # an event without `medium` (upstream's spelling: upper case)
DEFAULT_SIZE = 100_000_000
DEFAULT_POD_CACHE_SIZE = 10


class PodEntry(NamedTuple):
    """A pod (its address, as in the event topic) holding a block on one device tier.

    A NamedTuple, not a dataclass: scoring hashes entries once per block and pod, and a
    tuple's hash is computed in C."""

    pod: str
    tier: str = DEFAULT_TIER


class AddRefused(ValueError):
    """An `add` the index refuses (empty or mismatched keys), as upstream's `Add` does."""


_Holders = OrderedDict[PodEntry, int]  # entry → epoch it was written in
_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class KVBlockIndex:
    """Request-key index with the engine-key map, the engine-key fallback and pod epochs."""

    def __init__(
        self, size: int = DEFAULT_SIZE, pod_cache_size: int = DEFAULT_POD_CACHE_SIZE
    ) -> None:
        self.size = max(1, size)
        self.pod_cache_size = max(1, pod_cache_size)
        self._data: OrderedDict[int, _Holders] = OrderedDict()
        self._engine: OrderedDict[int, int] = OrderedDict()
        self._fallback: OrderedDict[tuple[str, int], _Holders] = OrderedDict()
        self._epoch: dict[str, int] = {}
        self.admissions = 0  # request keys added (upstream's kvcache_index_admissions_total)
        self.evictions = 0  # pod entries named in evictions

    def __len__(self) -> int:
        """Keys held: request keys plus fallback engine keys."""
        return len(self._data) + len(self._fallback)

    # ------------------------------------------------------------------ writes

    def add(self, engine_keys: Sequence[int], request_keys: Sequence[int], entry: PodEntry) -> None:
        """Maps each engine key to its request key and records `entry` under the latter."""
        if not engine_keys or not request_keys:
            raise AddRefused("no keys or entries provided for adding to index")
        if len(engine_keys) != len(request_keys):
            raise AddRefused("mismatch between engine keys and request keys length")
        for engine_key, request_key in zip(engine_keys, request_keys, strict=True):
            _put(self._engine, engine_key, request_key, self.size)
            self._hold(self._data, request_key, entry)
        self.admissions += len(request_keys)

    def add_fallback(self, model: str, engine_keys: Iterable[int], entry: PodEntry) -> None:
        """Records `entry` under engine keys that have no request key (see module doc)."""
        for engine_key in engine_keys:
            self._hold(self._fallback, (model, engine_key), entry)
            self.admissions += 1

    def evict(self, engine_key: int, entry: PodEntry, models: Iterable[str] = ()) -> None:
        """Removes `entry` for one engine key (also from the fallback under `models`).

        A key left without live holders is dropped, with its engine-key mapping.
        """
        self.evictions += 1
        request_key = self._engine.get(engine_key)
        if request_key is not None:
            holders = self._data.get(request_key)
            if holders is None:
                del self._engine[engine_key]
            else:
                holders.pop(entry, None)
                if not self._live(holders):
                    del self._data[request_key]
                    del self._engine[engine_key]
        for model in models:
            found = self._fallback.get((model, engine_key))
            if found is not None:
                found.pop(entry, None)
                if not self._live(found):
                    del self._fallback[(model, engine_key)]

    def clear_pod(self, pod: str) -> None:
        """Forgets everything `pod` holds, in O(1): its older entries stop counting."""
        self._epoch[pod] = self._epoch.get(pod, 0) + 1

    def _hold(self, table: OrderedDict[_K, _Holders], key: _K, entry: PodEntry) -> None:
        holders = table.get(key)
        if holders is None:
            holders = OrderedDict()
            _put(table, key, holders, self.size)
        else:
            table.move_to_end(key)
        holders[entry] = self._epoch.get(entry.pod, 0)
        holders.move_to_end(entry)
        while len(holders) > self.pod_cache_size:
            holders.popitem(last=False)

    def _live(self, holders: _Holders) -> bool:
        """Purges entries of older epochs; whether any entry is left."""
        epochs = self._epoch
        if not epochs:  # no pod was ever cleared: every entry is current
            return bool(holders)
        stale = [e for e, epoch in holders.items() if epoch != epochs.get(e.pod, 0)]
        for e in stale:
            del holders[e]
        return bool(holders)

    # ------------------------------------------------------------------ reads

    def request_key(self, engine_key: int) -> int | None:
        """The request key an engine key was mapped to, if known (marks it recently used)."""
        found = self._engine.get(engine_key)
        if found is not None:
            self._engine.move_to_end(engine_key)
        return found

    def holders(
        self, request_key: int, engine_key: int | None = None, model: str = ""
    ) -> list[PodEntry]:
        """Live entries holding a block: under its request key, and under its engine key
        in the fallback for `model` when `engine_key` is given."""
        out = _take(self._data, request_key, self._live)
        if engine_key is not None and self._fallback:
            out += _take(self._fallback, (model, engine_key), self._live)
        return out

    @property
    def has_fallback(self) -> bool:
        """Whether any engine-key-only entries exist (scoring then computes engine keys)."""
        return bool(self._fallback)


def _put(table: OrderedDict[_K, _V], key: _K, value: _V, size: int) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > size:
        table.popitem(last=False)


def _take(
    table: OrderedDict[_K, _Holders], key: _K, live: Callable[[_Holders], bool]
) -> list[PodEntry]:
    """The live holders under `key` (marking it recently used); drops a key left empty."""
    found = table.get(key)
    if found is None:
        return []
    if not live(found):
        del table[key]
        return []
    table.move_to_end(key)
    return list(found)


def longest_prefix_scores(
    per_block: Iterable[Sequence[PodEntry]], weights: Mapping[str, float]
) -> dict[str, float]:
    """Raw score per pod: the weighted count of consecutive leading blocks it holds.

    A pod's weight at a block is the largest weight of the tiers it holds the block
    on (`weights` by tier name; an unlisted tier weighs 1.0). The walk stops once no
    pod holds every block so far.
    """
    scores: dict[str, float] = {}
    active: set[str] | None = None
    for entries in per_block:
        best: dict[str, float] = {}
        for pod, tier in entries:
            best[pod] = max(best.get(pod, 0.0), weights.get(tier, 1.0))
        if active is None:
            active = set(best)
        else:
            active &= best.keys()
        if not active:
            break
        for pod in active:
            scores[pod] = scores.get(pod, 0.0) + best[pod]
    return scores
