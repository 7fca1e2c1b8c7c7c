"""Admission of requests: at most `max-num-seqs` running, a bounded FIFO waiting queue.

Pure bookkeeping over plain objects; the HTTP shell turns "started" into a
resolved future. Upstream's semantics: a request runs at once if a worker is
free, else it waits; with the queue full it is refused (429). A finishing
request hands its worker to the head of the queue.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

T = TypeVar("T")


class Admission(Enum):
    """What happened to a submitted request."""

    STARTED = "started"
    QUEUED = "queued"
    REJECTED = "rejected"


QUEUE_FULL_MESSAGE = "Failed to enqueue request, waiting requests queue is full"


@dataclass
class Scheduler(Generic[T]):
    """Workers and waiting queue; items must hash by identity (e.g. `eq=False` dataclasses)."""

    max_running: int
    max_waiting: int
    running: set[T] = field(default_factory=set)
    waiting: deque[T] = field(default_factory=deque)

    @property
    def num_running(self) -> int:
        """Requests holding a worker."""
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        """Requests in the waiting queue."""
        return len(self.waiting)

    def submit(self, item: T) -> Admission:
        """Start `item` on a free worker, queue it, or refuse it when the queue is full."""
        if len(self.running) < self.max_running and not self.waiting:
            self.running.add(item)
            return Admission.STARTED
        if len(self.waiting) >= self.max_waiting:
            return Admission.REJECTED
        self.waiting.append(item)
        return Admission.QUEUED

    def release(self, item: T) -> list[T]:
        """Free `item`'s worker; return the queued items that start now (FIFO)."""
        self.running.discard(item)
        started: list[T] = []
        while self.waiting and len(self.running) < self.max_running:
            nxt = self.waiting.popleft()
            self.running.add(nxt)
            started.append(nxt)
        return started

    def withdraw(self, item: T) -> bool:
        """Remove a still-waiting item (its client went away); True if it was waiting."""
        try:
            self.waiting.remove(item)
        except ValueError:
            return False
        return True
