"""The flow-control queues (spec §8): pure, single-threaded, time passed in.

Requests are queued per flow (fairness id, priority); flows are grouped into
one band per priority. Dispatch is strictly by band priority; within a band
the fairness policy picks the flow and the ordering policy the item. Capacity
is checked per band and globally in bytes before an item is queued; items with
a deadline (TTL) are evicted once it passes.

The dispatch step (`dispatch.py`) decides what may leave now and the asyncio
controller (`extproc/flowcontroller.py`) when to ask; this module only decides
*what* is next and keeps the books.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from pyllmd.epp.flowcontrol.bands import BandConfig, FlowControlConfig
from pyllmd.epp.flowcontrol.policies import (
    FAIRNESS_POLICIES,
    ORDERING_POLICIES,
    FairnessPolicy,
    OrderingPolicy,
    OrderKey,
)

T = TypeVar("T")


class Outcome(StrEnum):
    """How a request left flow control (the `outcome` metric label)."""

    DISPATCHED = "Dispatched"
    REJECTED_CAPACITY = "RejectedCapacity"
    REJECTED_OTHER = "RejectedOther"
    EVICTED_TTL = "EvictedTTL"
    EVICTED_CONTEXT_CANCELLED = "EvictedContextCancelled"
    EVICTED_OTHER = "EvictedOther"


@dataclass(frozen=True, order=True)
class FlowKey:
    """A flow: the fairness id and the priority of its requests."""

    fairness_id: str
    priority: int


@dataclass(eq=False)
class QueueItem(Generic[T]):
    """One queued request; `payload` is whatever the controller attaches."""

    key: FlowKey
    size: int
    enqueued_at: float
    deadline: float | None
    seq: int
    payload: T
    outcome: Outcome | None = None  # set once, when the item leaves the queues


@dataclass(frozen=True)
class Rejection:
    """An enqueue that was refused, with why."""

    outcome: Outcome
    message: str


class _Flow(Generic[T]):
    """One flow's items ordered by the band's ordering key (heap, lazy removal)."""

    def __init__(self, key: FlowKey, seq: int, order: OrderingPolicy) -> None:
        self.key = key
        self.seq = seq
        self.order = order
        self.heap: list[tuple[OrderKey, int, QueueItem[T]]] = []
        self.live: dict[int, QueueItem[T]] = {}

    def push(self, item: QueueItem[T]) -> None:
        self.live[item.seq] = item
        heapq.heappush(self.heap, (self.order.key(item), item.seq, item))

    def head(self) -> QueueItem[T] | None:
        while self.heap and self.heap[0][1] not in self.live:
            heapq.heappop(self.heap)
        return self.heap[0][2] if self.heap else None

    def head_key(self) -> OrderKey | None:
        head = self.head()
        return self.heap[0][0] if head is not None else None

    def discard(self, item: QueueItem[T]) -> None:
        del self.live[item.seq]


@dataclass
class _Band(Generic[T]):
    config: BandConfig
    flows: dict[str, _Flow[T]] = field(default_factory=dict)
    bytes: int = 0
    items: int = 0
    last_served: int | None = None  # seq of the flow served last (round robin)
    flow_seq: Iterator[int] = field(default_factory=itertools.count)


class FlowQueues(Generic[T]):
    """All bands and flows; every state change goes through these methods."""

    def __init__(self, config: FlowControlConfig) -> None:
        self.config = config
        self.order: OrderingPolicy = ORDERING_POLICIES[config.ordering_policy]
        self.fairness: FairnessPolicy = FAIRNESS_POLICIES[config.fairness_policy]
        self._bands: dict[int, _Band[T]] = {}
        self._priorities: list[int] = []  # band priorities, highest first
        self._deadlines: list[tuple[float, int, QueueItem[T]]] = []
        self._seq = itertools.count()
        self.bytes = 0
        self.items = 0

    def __len__(self) -> int:
        return self.items

    def band_bytes(self, priority: int) -> int:
        """Bytes queued in the band of `priority`."""
        band = self._bands.get(priority)
        return band.bytes if band is not None else 0

    # ------------------------------------------------------------ enqueue

    def enqueue(
        self, key: FlowKey, size: int, now: float, payload: T, ttl: float | None = None
    ) -> QueueItem[T] | Rejection:
        """Queue a request, or refuse it when a byte capacity would be exceeded.

        `ttl` (seconds, None: the configured default; 0: none) sets the deadline.
        A zero-byte request always fits.
        """
        band_cfg = self.config.band(key.priority)
        if size > 0:
            global_max = self.config.max_bytes
            if global_max > 0 and self.bytes + size > global_max:
                return Rejection(
                    Outcome.REJECTED_CAPACITY,
                    f"flow control queues are full ({self.bytes} queued + {size} > "
                    f"{global_max} bytes)",
                )
            queued = self.band_bytes(key.priority)
            if queued + size > band_cfg.max_bytes:
                return Rejection(
                    Outcome.REJECTED_CAPACITY,
                    f"priority band {band_cfg.name} (priority {key.priority}) is full "
                    f"({queued} queued + {size} > {band_cfg.max_bytes} bytes)",
                )
        ttl = self.config.default_ttl if ttl is None else ttl
        deadline = now + ttl if ttl > 0 else None
        item = QueueItem(key, size, now, deadline, next(self._seq), payload)
        band = self._band(key.priority, band_cfg)
        flow = band.flows.get(key.fairness_id)
        if flow is None:
            flow = band.flows[key.fairness_id] = _Flow(key, next(band.flow_seq), self.order)
        flow.push(item)
        band.bytes += size
        band.items += 1
        self.bytes += size
        self.items += 1
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, item.seq, item))
        return item

    def _band(self, priority: int, cfg: BandConfig) -> _Band[T]:
        band = self._bands.get(priority)
        if band is None:
            band = self._bands[priority] = _Band(cfg)
            self._priorities = sorted(self._bands, reverse=True)
        return band

    # ------------------------------------------------------------ leave

    def dispatch(self, gate: Callable[[QueueItem[T]], bool]) -> QueueItem[T] | None:
        """Remove and return the next item if `gate` lets it go, else None.

        The candidate is the head chosen by the policies in the highest non-empty
        band; when the gate holds it, nothing else is dispatched either (strict
        priority: lower bands never overtake a waiting higher one).
        """
        for priority in self._priorities:
            band = self._bands[priority]
            if band.items == 0:
                continue
            flow = self.fairness.pick(list(band.flows.values()), band.last_served)
            head = flow.head() if flow is not None else None
            if flow is None or head is None:
                continue
            if not gate(head):
                return None
            band.last_served = flow.seq
            self._take(head, Outcome.DISPATCHED)
            return head
        return None

    def remove(self, item: QueueItem[T], outcome: Outcome) -> bool:
        """Take a still-queued item out (e.g. its client went away); False if it already left."""
        if item.outcome is not None:
            return False
        self._take(item, outcome)
        return True

    def expire(self, now: float) -> list[QueueItem[T]]:
        """Evict every queued item whose deadline is at or before `now`, oldest deadline first."""
        out: list[QueueItem[T]] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, item = heapq.heappop(self._deadlines)
            if item.outcome is None:
                self._take(item, Outcome.EVICTED_TTL)
                out.append(item)
        return out

    def next_deadline(self) -> float | None:
        """The earliest deadline of a queued item, if any."""
        while self._deadlines and self._deadlines[0][2].outcome is not None:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None

    def drain(self, outcome: Outcome) -> list[QueueItem[T]]:
        """Evict everything (shutdown), highest band first, in dispatch order per flow."""
        out: list[QueueItem[T]] = []
        for priority in list(self._priorities):
            for flow in list(self._bands[priority].flows.values()):
                while (head := flow.head()) is not None:
                    self._take(head, outcome)
                    out.append(head)
        return out

    def _take(self, item: QueueItem[T], outcome: Outcome) -> None:
        item.outcome = outcome
        band = self._bands[item.key.priority]
        flow = band.flows[item.key.fairness_id]
        flow.discard(item)
        band.bytes -= item.size
        band.items -= 1
        self.bytes -= item.size
        self.items -= 1
        if not flow.live:  # idle flows and bands are dropped at once: nothing to remember
            del band.flows[item.key.fairness_id]
            if not band.flows:
                del self._bands[item.key.priority]
                self._priorities.remove(item.key.priority)
