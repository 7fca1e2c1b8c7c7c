"""Applies KV-event batches to the index (kv-events contract §3.2), synchronously.

`EventProcessor.process` takes one received `Message`; it is pure state change
(no I/O, no clock), so tests drive it directly and the ZMQ shell just calls it.
Messages are processed in arrival order on one asyncio loop, which keeps each
pod's events in order as upstream's per-pod worker shards do.

`BlockStored`: engine keys from `block_hashes`; request keys from `token_ids`
(FNV-1a-64 over CBOR, `keys.RequestKeyer`) chained from the
parent's request key or from the root of the model (the event's `lora_name`
when set, else the topic's model). A block count that does not match the
tokens is dropped, as upstream. Where upstream drops the event and indexes
nothing — no `token_ids`, or a parent it never saw — the blocks go to the
index's engine-key fallback instead (see `index.py`).
`BlockRemoved` removes the pod's entry per engine key; `AllBlocksCleared`
forgets everything the pod held (upstream ignores it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from pyllmd.epp.kvindex.events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    DecodeError,
    Event,
    Message,
    SequenceTracker,
    decode_batch,
)
from pyllmd.epp.kvindex.index import DEFAULT_TIER, KVBlockIndex, PodEntry
from pyllmd.epp.kvindex.keys import RequestKeyer

log = logging.getLogger(__name__)


@dataclass
class EventStats:
    """Counters of what the processor did (exported as `pyllmd:epp_kv_events_*`)."""

    batches: int = 0
    bad_batches: int = 0  # payload not decodable: dropped whole
    bad_events: int = 0  # event not decodable or unknown tag: skipped
    stored: int = 0  # BlockStored events indexed under request keys
    fallback: int = 0  # BlockStored events indexed under engine keys only
    dropped: int = 0  # BlockStored events indexed nowhere (block/token count mismatch)
    removed: int = 0  # BlockRemoved events
    cleared: int = 0  # AllBlocksCleared events


def tier_of(medium: str | None) -> str:
    """The device tier of an event: lower-cased `medium`, `GPU` when absent (upstream)."""
    return DEFAULT_TIER if medium is None else medium.lower()


class EventProcessor:
    """Turns batches from one or more subscribers into index updates."""

    def __init__(
        self,
        index: KVBlockIndex,
        block_size: int,
        hash_seed: str,
        keyer: RequestKeyer | None = None,
    ) -> None:
        self.keyer = keyer or RequestKeyer(block_size, hash_seed)
        self.index = index
        self.block_size = block_size
        self.stats = EventStats()
        self.sequences = SequenceTracker()
        self._fallback_models: dict[str, set[str]] = {}  # pod → models with fallback entries
        self._warned: set[tuple[str, int]] = set()

    def process(self, msg: Message) -> None:
        """Decode one message's batch and apply its events in order."""
        try:
            batch = decode_batch(msg.payload)
        except DecodeError as e:
            self.stats.bad_batches += 1
            log.debug("kv events: dropped batch from %s: %s", msg.topic, e)
            return
        self.stats.batches += 1
        missed = self.sequences.observe(msg.topic, batch.dp_rank, msg.seq)
        if missed:
            log.warning(
                "kv events: %d batch(es) from %s lost before seq %d", missed, msg.topic, msg.seq
            )
        self.digest(msg.pod, msg.model, batch.events)

    def digest(self, pod: str, model: str, events: Iterable[Event | None]) -> None:
        """Apply decoded events of `pod` (topic model `model`); None entries are skipped."""
        for event in events:
            if event is None:
                self.stats.bad_events += 1
            elif isinstance(event, BlockStored):
                self._stored(pod, model, event)
            elif isinstance(event, BlockRemoved):
                self.stats.removed += 1
                entry = PodEntry(pod, tier_of(event.medium))
                models = {model} | self._fallback_models.get(pod, set())
                for engine_key in event.block_hashes:
                    self.index.evict(engine_key, entry, models)
            elif isinstance(event, AllBlocksCleared):
                self.stats.cleared += 1
                self.index.clear_pod(pod)

    def _stored(self, pod: str, model: str, ev: BlockStored) -> None:
        if not ev.block_hashes:
            self.stats.dropped += 1
            return
        effective = ev.lora_name or model
        entry = PodEntry(pod, tier_of(ev.medium))
        parent_key = 0
        if ev.parent is not None:
            found = self.index.request_key(ev.parent)
            if found is None:
                self._fallback(pod, effective, ev, entry)
                return
            parent_key = found
        if not ev.token_ids:
            self._fallback(pod, effective, ev, entry)
            return
        keys = self.keyer.keys(ev.token_ids, effective, parent_key)
        if len(keys) != len(ev.block_hashes):
            self.stats.dropped += 1
            self._warn_mismatch(pod, ev)
            return
        self.index.add(ev.block_hashes, keys, entry)
        self.stats.stored += 1

    def _fallback(self, pod: str, model: str, ev: BlockStored, entry: PodEntry) -> None:
        self.index.add_fallback(model, ev.block_hashes, entry)
        self._fallback_models.setdefault(pod, set()).add(model)
        self.stats.fallback += 1

    def _warn_mismatch(self, pod: str, ev: BlockStored) -> None:
        key = (pod, ev.block_size)
        if key in self._warned:
            return
        self._warned.add(key)
        log.warning(
            "kv events from %s: %d block(s) with %d token(s) do not match blockSize=%d "
            "(the engine reports block_size=%d); such events are not indexed",
            pod,
            len(ev.block_hashes),
            len(ev.token_ids),
            self.block_size,
            ev.block_size,
        )
