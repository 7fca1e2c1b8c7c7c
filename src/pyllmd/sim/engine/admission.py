"""Admission of requests: `max-num-seqs` workers, a bounded waiting queue, LoRA slots.

Pure bookkeeping over plain objects (`AdmissionQueue`); the HTTP shell turns
"started" into a resolved future. Upstream's semantics (spec §3.1, §7.2): a request runs at once
if a worker is free and its LoRA adapter (if any) can be loaded, else it waits;
with the queue full it is refused (429). A free worker takes the first queued
request whose adapter is already loaded (or that needs none), failing that the
first whose adapter can be loaded now (evicting an idle adapter); so the queue
is FIFO except that requests blocked on a LoRA slot are skipped.

Paused (sleep mode), nothing starts: new requests queue even with free workers,
and `resume` starts what the free workers can take.
"""

from __future__ import annotations

from collections import deque
from enum import Enum
from typing import Generic, Protocol, TypeVar

from pyllmd.sim.engine.lora import LoraRuntime


class Item(Protocol):
    """What the queue needs of a request: the LoRA adapter it runs on (None: base model)."""

    @property
    def lora(self) -> str | None: ...


T = TypeVar("T", bound=Item)


class Admission(Enum):
    """What happened to a submitted request."""

    STARTED = "started"
    QUEUED = "queued"
    REJECTED = "rejected"


QUEUE_FULL_MESSAGE = "Failed to enqueue request, waiting requests queue is full"


class AdmissionQueue(Generic[T]):
    """Workers, waiting queue and LoRA slots; items must hash by identity (`eq=False`).

    vLLM calls this part its scheduler; here it only decides which requests hold a
    worker and which wait (the EPP's scheduling framework is another thing).
    """

    def __init__(self, max_running: int, max_waiting: int, max_loras: int = 1) -> None:
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.loras = LoraRuntime(max_loras)
        self.running: set[T] = set()
        self.waiting: deque[T] = deque()
        self.paused = False

    @property
    def num_running(self) -> int:
        """Requests holding a worker."""
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        """Requests in the waiting queue."""
        return len(self.waiting)

    def submit(self, item: T) -> Admission:
        """Start `item` on a free worker, queue it, or refuse it when the queue is full.

        Outside a pause every queued request is blocked on a LoRA slot whenever
        a worker is free, so a new request that can run does not jump a runnable one.
        """
        if (
            not self.paused
            and len(self.running) < self.max_running
            and (item.lora is None or self.loras.can_load(item.lora))
        ):
            self.running.add(item)  # _start, written out (every request passes here)
            if item.lora is not None:
                self.loras.start(item.lora)
            return Admission.STARTED
        if len(self.waiting) >= self.max_waiting:
            return Admission.REJECTED
        self.waiting.append(item)
        if item.lora is not None:
            self.loras.enqueue(item.lora)
        return Admission.QUEUED

    def release(self, item: T) -> list[T]:
        """Free `item`'s worker (and its LoRA use); return the queued items that start now."""
        if item in self.running:
            self.running.remove(item)
            if item.lora is not None:
                self.loras.finish(item.lora)
        return self._fill()

    def withdraw(self, item: T) -> bool:
        """Remove a still-waiting item (its client went away); True if it was waiting."""
        try:
            self.waiting.remove(item)
        except ValueError:
            return False
        if item.lora is not None:
            self.loras.dequeue(item.lora)
        return True

    def pause(self) -> None:
        """Stop starting requests (running ones go on)."""
        self.paused = True

    def resume(self) -> list[T]:
        """Start requests again; return the queued items that start now."""
        self.paused = False
        return self._fill()

    def _start(self, item: T) -> None:
        self.running.add(item)
        if item.lora is not None:
            self.loras.start(item.lora)

    def _fill(self) -> list[T]:
        if not self.waiting:
            return []
        started: list[T] = []
        while not self.paused and len(self.running) < self.max_running:
            nxt = self._pop_runnable()
            if nxt is None:
                break
            self._start(nxt)
            started.append(nxt)
        return started

    def _pop_runnable(self) -> T | None:
        """The first queued item needing no load, else the first whose adapter can load."""
        loadable = -1
        for i, item in enumerate(self.waiting):
            lora = item.lora
            if lora is None or self.loras.is_loaded(lora):
                del self.waiting[i]
                if lora is not None:
                    self.loras.dequeue(lora)
                return item
            if loadable < 0 and self.loras.can_load(lora):
                loadable = i
        if loadable < 0:
            return None
        item = self.waiting[loadable]
        del self.waiting[loadable]
        self.loras.dequeue(item.lora or "")
        return item
