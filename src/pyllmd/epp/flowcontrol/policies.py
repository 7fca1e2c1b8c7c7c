"""Band policies (spec §8): how items are ordered in a flow, and which flow a band serves.

An ordering policy is a sort key over queued items (smaller goes first); a
fairness policy picks, among a band's non-empty flows, the one whose head is
dispatched next. Both are pure and hold no per-band state: round robin reads
its position from the band.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

FCFS = "fcfs-ordering-policy"
EDF = "edf-ordering-policy"
GLOBAL_STRICT = "global-strict-fairness-policy"
ROUND_ROBIN = "round-robin-fairness-policy"


class Orderable(Protocol):
    """What ordering policies read from a queued item."""

    @property
    def seq(self) -> int: ...
    @property
    def enqueued_at(self) -> float: ...
    @property
    def deadline(self) -> float | None: ...


OrderKey = tuple[float, ...]


@dataclass(frozen=True)
class OrderingPolicy:
    """A named sort key over queued items."""

    name: str
    key: Callable[[Orderable], OrderKey]


def _fcfs(item: Orderable) -> OrderKey:
    return (item.enqueued_at, item.seq)


def _edf(item: Orderable) -> OrderKey:
    deadline = item.deadline if item.deadline is not None else math.inf
    return (deadline, item.enqueued_at, item.seq)


FCFS_POLICY = OrderingPolicy(FCFS, _fcfs)
EDF_POLICY = OrderingPolicy(EDF, _edf)  # no TTL → deadline ∞: such items go last, in arrival order


class FlowView(Protocol):
    """What fairness policies read from a flow queue."""

    @property
    def seq(self) -> int: ...  # creation order within its band

    def head_key(self) -> OrderKey | None: ...


F = TypeVar("F", bound=FlowView)


class FairnessPolicy(Protocol):
    """Chooses the flow a band serves next; `last` is the seq of the flow served before."""

    name: str

    def pick(self, flows: Sequence[F], last: int | None) -> F | None: ...


class GlobalStrict:
    """Serve the flow whose head item the ordering policy ranks best across the band."""

    name = GLOBAL_STRICT

    def pick(self, flows: Sequence[F], last: int | None) -> F | None:
        best: F | None = None
        best_key: OrderKey | None = None
        for flow in flows:
            key = flow.head_key()
            if key is not None and (best_key is None or key < best_key):
                best, best_key = flow, key
        return best


class RoundRobin:
    """Cycle through the band's non-empty flows in creation order, one item each."""

    name = ROUND_ROBIN

    def pick(self, flows: Sequence[F], last: int | None) -> F | None:
        ready = sorted((f for f in flows if f.head_key() is not None), key=lambda f: f.seq)
        if not ready:
            return None
        if last is not None:
            for flow in ready:
                if flow.seq > last:
                    return flow
        return ready[0]


ORDERING_POLICIES: dict[str, OrderingPolicy] = {FCFS: FCFS_POLICY, EDF: EDF_POLICY}
FAIRNESS_POLICIES: dict[str, FairnessPolicy] = {
    GLOBAL_STRICT: GlobalStrict(),
    ROUND_ROBIN: RoundRobin(),
}
