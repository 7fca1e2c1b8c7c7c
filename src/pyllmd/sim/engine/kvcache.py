"""The simulator's KV block cache (spec §4.3, §4.5, §4.6) and the events it emits.

Blocks are keyed by their v0.4.0 block key (`pyllmd.core.prefix.block_keys`). A
block is *used* (reference-counted by running requests) or *unused* (kept for
reuse until evicted, oldest first). Events go to an injected sink; publishing
them (ZMQ, msgpack) is the shell's job.

Unused blocks live in an OrderedDict in the order they became unused: `now` comes
from a monotonic clock, so that order is the timestamp order and the oldest block
is always first (O(1) eviction instead of upstream's scan). Among blocks freed at
the same instant, upstream's choice is arbitrary; we free a request's blocks tail
first, so its tail is evicted first and its prefix survives longest, as in vLLM.

Deviations (deliberate, per the kv-events contract and spec §15): BlockStored
carries parent key, token ids and block size, and the LoRA adapter (id and name)
as vLLM fills them; `CacheLookup.prefix_blocks` is computed before insertion, so
a hit rate is meaningful. As the contract says, one BlockStored per block (vLLM
may group consecutive blocks in one event; consumers accept both), and the LoRA
is not hashed into the block key, so a base-model and an adapter request with the
same prompt share blocks (upstream behaviour).

Sleep (spec §4.6) uses `disable()` (clear and stop recording) and `enable()`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pyllmd.core.prefix import block_keys

log = logging.getLogger(__name__)

CAPACITY_ERROR = "the kv cache does not have sufficient capacity to store this request"


@dataclass(frozen=True, slots=True)
class LoraTag:
    """The adapter a request runs on, as vLLM reports it: `lora_int_id` and name."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class BlockStored:
    """A block entered the cache; parent is the previous block's key in the request."""

    block_hash: int
    parent_block_hash: int | None
    token_ids: tuple[int, ...]
    block_size: int
    lora_id: int | None = None
    lora_name: str | None = None


@dataclass(frozen=True, slots=True)
class BlockRemoved:
    """A block was evicted from the cache."""

    block_hash: int


@dataclass(frozen=True, slots=True)
class AllBlocksCleared:
    """Every block was dropped (sleep)."""


KVEvent = BlockStored | BlockRemoved | AllBlocksCleared


class EventSink(Protocol):
    """Receives KV events in the order they happen."""

    def publish(self, event: KVEvent) -> None:
        """Take one event; must not block."""
        ...


class ListSink:
    """Collects events in a list (tests, and callers that batch themselves)."""

    def __init__(self) -> None:
        self.events: list[KVEvent] = []

    def publish(self, event: KVEvent) -> None:
        """Append `event`."""
        self.events.append(event)


class KVCacheError(Exception):
    """A request the cache cannot take; `message` is upstream's text (HTTP 500)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class CacheLookup:
    """What the cache held for a request's full blocks.

    `cached_blocks` is upstream's count (blocks found anywhere in the request, used
    for cached tokens); `prefix_blocks` counts leading blocks found before this
    request was inserted (vLLM prefix-caching semantics, used for hit rate).
    """

    total_blocks: int
    cached_blocks: int
    prefix_blocks: int

    @property
    def hit_rate(self) -> float:
        """Leading cached blocks / full blocks; 0 for a prompt without a full block."""
        return self.prefix_blocks / self.total_blocks if self.total_blocks else 0.0


class KVCache:
    """Block cache of `capacity` blocks with reference counts and oldest-unused eviction."""

    def __init__(
        self, capacity: int, block_size: int, hash_seed: str, sink: EventSink | None = None
    ) -> None:
        if block_size <= 0:
            raise ValueError(f"block_size must be > 0, got {block_size}")
        self.capacity = capacity
        self.block_size = block_size
        self.hash_seed = hash_seed
        self.sink = sink
        self.enabled = True
        self._used: dict[int, int] = {}  # key -> reference count
        self._unused: OrderedDict[int, float] = OrderedDict()  # key -> time it became unused
        self._requests: dict[str, list[int]] = {}

    @property
    def usage(self) -> float:
        """Fraction of capacity held by running requests (vllm:kv_cache_usage_perc)."""
        return len(self._used) / self.capacity if self.capacity > 0 else 0.0

    def block_state(self, key: int) -> tuple[int, bool]:
        """(reference count, present): (n, True) used, (0, True) unused, (0, False) absent."""
        if key in self._used:
            return self._used[key], True
        return 0, key in self._unused

    def peek(self, token_ids: Sequence[int]) -> CacheLookup:
        """The lookup `start` would report for these tokens, without changing anything."""
        return self._lookup(block_keys(token_ids, self.block_size, self.hash_seed))

    def start(
        self,
        request_id: str,
        token_ids: Sequence[int],
        now: float,
        lora: LoraTag | None = None,
    ) -> CacheLookup:
        """Record a starting request's blocks; raise KVCacheError if it cannot be held.

        `lora` only labels the BlockStored events of new blocks (the key ignores it).
        """
        if not self.enabled:
            return CacheLookup(len(token_ids) // self.block_size, 0, 0)
        if request_id in self._requests:
            raise KVCacheError(f"request already exists for id {request_id}")
        keys = block_keys(token_ids, self.block_size, self.hash_seed)
        lookup = self._lookup(keys)
        # Upstream counts per occurrence against the state before this request.
        in_use = [k for k in keys if k in self._used]
        reactivate = [k for k in keys if k in self._unused]
        new = [i for i, k in enumerate(keys) if k not in self._used and k not in self._unused]
        if len(self._used) + len(new) + len(reactivate) > self.capacity:
            raise KVCacheError(CAPACITY_ERROR)
        for k in in_use:
            self._used[k] += 1
        for k in reactivate:
            self._used[k] = 1
            self._unused.pop(k, None)
        for i in new:
            self._store(keys, i, token_ids, lora)
        self._requests[request_id] = keys
        return lookup

    def finish(self, request_id: str, now: float) -> None:
        """Release a finished request's blocks; the last user makes a block unused at `now`."""
        if not self.enabled:
            return
        keys = self._requests.pop(request_id, None)
        if keys is None:
            return
        for k in reversed(keys):  # tail first: evicted before the prefix (see module doc)
            count = self._used.get(k)
            if count is None:
                log.warning("kv cache: unknown block %d of request %s", k, request_id)
            elif count > 1:
                self._used[k] = count - 1
            else:
                del self._used[k]
                self._unused[k] = now

    def clear(self) -> None:
        """Drop every block and request and emit AllBlocksCleared (sleep)."""
        self._used.clear()
        self._unused.clear()
        self._requests.clear()
        self._emit(AllBlocksCleared())

    def disable(self) -> None:
        """Accepted `/sleep`: clear (one AllBlocksCleared per call, even when already
        disabled, as upstream) and record nothing until `enable()`."""
        self.clear()
        self.enabled = False

    def enable(self) -> None:
        """`/wake_up`: record requests again, starting from the empty cache."""
        self.enabled = True

    def _lookup(self, keys: list[int]) -> CacheLookup:
        cached = sum(1 for k in keys if k in self._used or k in self._unused)
        prefix = 0
        for k in keys:
            if k not in self._used and k not in self._unused:
                break
            prefix += 1
        return CacheLookup(len(keys), cached, prefix)

    def _store(
        self, keys: list[int], index: int, token_ids: Sequence[int], lora: LoraTag | None
    ) -> None:
        key = keys[index]
        if key not in self._used:  # a repeated key of this request takes no new slot
            if len(self._used) + len(self._unused) >= self.capacity and self._unused:
                evicted, _ = self._unused.popitem(last=False)
                self._emit(BlockRemoved(evicted))
        self._used[key] = 1
        start = index * self.block_size
        self._emit(
            BlockStored(
                block_hash=key,
                parent_block_hash=keys[index - 1] if index > 0 else None,
                token_ids=tuple(token_ids[start : start + self.block_size]),
                block_size=self.block_size,
                lora_id=lora.id if lora is not None else None,
                lora_name=lora.name if lora is not None else None,
            )
        )

    def _emit(self, event: KVEvent) -> None:
        if self.sink is not None:
            self.sink.publish(event)
