"""The synchronous dispatch step of flow control (spec §8): what leaves the queues now.

`Dispatcher.step(now, candidates)` evicts the items whose TTL passed, then
releases queued heads, highest band first, while the dispatch gate (`gate.py`)
reads their candidate endpoints as unsaturated; it yields every item that left,
with its `outcome` set. It neither waits nor reads a clock: the asyncio
controller (`extproc/flowcontroller.py`) decides when to call it and answers the
waiting requests, and a simulation can call it on its own clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Generic, TypeVar

from pyllmd.epp.flowcontrol.bands import DEFAULT_FAIRNESS_ID
from pyllmd.epp.flowcontrol.gate import DispatchLog, gate_saturation, prune_horizon
from pyllmd.epp.flowcontrol.queues import FlowQueues, QueueItem
from pyllmd.epp.requests import FAIRNESS_HEADER
from pyllmd.epp.saturation import SaturationConfig
from pyllmd.epp.scheduling.types import Endpoint

__all__ = ["Dispatcher", "fairness_id"]

T = TypeVar("T")


def fairness_id(headers: Mapping[str, str]) -> str:
    """The request's flow id (`x-gateway-inference-fairness-id`, else `default-flow`)."""
    for key, value in headers.items():
        if key.lower() == FAIRNESS_HEADER and value:
            return value
    return DEFAULT_FAIRNESS_ID


class Dispatcher(Generic[T]):
    """The queues and the record of recent dispatches the gate counts as not yet scraped."""

    def __init__(self, queues: FlowQueues[T], saturation: SaturationConfig) -> None:
        self.queues = queues
        self.saturation = saturation
        self.dispatches = DispatchLog()
        self._named: tuple[tuple[Endpoint, ...], frozenset[str]] = ((), frozenset())

    def _names(self, endpoints: Sequence[Endpoint]) -> frozenset[str]:
        """The candidates' namespaced names; kept for the last tuple of candidates (a tuple
        cannot change, so a caller that passes the same one again gets the same set)."""
        if isinstance(endpoints, tuple):
            if endpoints is self._named[0]:
                return self._named[1]
            names = frozenset(e.namespaced_name for e in endpoints)
            self._named = (endpoints, names)
            return names
        return frozenset(e.namespaced_name for e in endpoints)

    def step(
        self, now: float, candidates: Callable[[QueueItem[T]], Sequence[Endpoint]]
    ) -> Iterator[QueueItem[T]]:
        """Expired items first, then dispatched ones, each as it leaves its queue.

        `candidates(item)` is read at every gate check (the endpoints the item could
        go to now); an exception from it ends the step, the items yielded so far
        having left.
        """
        yield from self.queues.expire(now)
        self.dispatches.prune(prune_horizon(self.saturation, now))
        checked: frozenset[str] = frozenset()

        def gate(item: QueueItem[T]) -> bool:
            nonlocal checked
            endpoints = candidates(item)
            checked = self._names(endpoints)
            return gate_saturation(endpoints, self.saturation, now, self.dispatches) < 1.0

        while (item := self.queues.dispatch(gate)) is not None:
            self.dispatches.record(checked, now)
            yield item
