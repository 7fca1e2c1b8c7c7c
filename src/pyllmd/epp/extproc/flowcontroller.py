"""The asyncio side of flow control (spec §8): hold each request until it may be scheduled.

`FlowController.enqueue_and_wait` queues a request in the pure `FlowQueues`
and waits on a future. One dispatch loop per controller (started with the
first request) runs the synchronous dispatch step (`flowcontrol/dispatch.py`:
expired items evicted at their exact deadline, queued heads released while the
dispatch gate reads their candidates as unsaturated) and answers the requests
that left; with a backlog it re-checks every `POLL_INTERVAL` seconds, so a
metrics scrape is acted on within that time, and it sleeps on an event while
the queues are empty. Arrivals and cancellations update the queues at once.
The flow-control metrics (`FlowMetrics`) are upstream's names, label names and
buckets: the autoscaler's scale-from-zero reads
`inference_extension_flow_control_queue_size{target_model_name}`
(`pyllmd.autoscaler.collect.epp`), as it reads the Go EPP's.

Candidates are re-read on every check rather than cached for 50 ms as
upstream does: the datastore snapshot is already shared, and a cached list
would carry metrics up to 50 ms older than the datastore's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyllmd.core.clock import Clock
from pyllmd.core.metricset import Family, Registry
from pyllmd.epp.flowcontrol.bands import FlowControlConfig
from pyllmd.epp.flowcontrol.dispatch import Dispatcher, fairness_id
from pyllmd.epp.flowcontrol.queues import FlowKey, FlowQueues, Outcome, QueueItem, Rejection
from pyllmd.epp.requests import (
    INTERNAL,
    RESOURCE_EXHAUSTED,
    SERVICE_UNAVAILABLE,
    EppError,
)
from pyllmd.epp.saturation import SaturationConfig
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.01  # seconds between gate checks while requests wait

Candidates = Callable[[], Sequence[Endpoint]]

QUEUE_DURATION = "inference_extension_flow_control_request_queue_duration_seconds"
QUEUE_SIZE = "inference_extension_flow_control_queue_size"
QUEUE_BYTES = "inference_extension_flow_control_queue_bytes"
QUEUE_LABELS = ("fairness_id", "priority", "inference_pool", "model_name", "target_model_name")
DURATION_LABELS = (
    "fairness_id",
    "priority",
    "outcome",
    "inference_pool",
    "model_name",
    "target_model_name",
)
DURATION_BUCKETS = (
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)  # fmt: skip
ALPHA = "[ALPHA] "


@dataclass(frozen=True)
class FlowLabels:
    """The label values that describe one request in flow control."""

    fairness_id: str
    priority: int
    model_name: str
    target_model_name: str


class FlowMetrics:
    """The three flow-control families on a shared registry."""

    def __init__(self, registry: Registry, pool_name: str) -> None:
        self.pool_name = pool_name
        self.duration = registry.add(
            Family(
                QUEUE_DURATION,
                "histogram",
                ALPHA + "Time requests spent in flow control, by outcome.",
                DURATION_LABELS,
                DURATION_BUCKETS,
            )
        )
        self.size = registry.add(
            Family(QUEUE_SIZE, "gauge", ALPHA + "Requests waiting in flow control.", QUEUE_LABELS)
        )
        self.bytes = registry.add(
            Family(
                QUEUE_BYTES,
                "gauge",
                ALPHA + "Bytes of request bodies waiting in flow control.",
                QUEUE_LABELS,
            )
        )

    def _values(self, labels: FlowLabels) -> tuple[str, ...]:
        return (
            labels.fairness_id,
            str(labels.priority),
            self.pool_name,
            labels.model_name,
            labels.target_model_name,
        )

    def queued(self, labels: FlowLabels, size: int, delta: int) -> None:
        """A request entered (+1) or left (−1) the queues."""
        values = self._values(labels)
        count = self.size.gauge(*values)
        count.set(count.value + delta)
        queued_bytes = self.bytes.gauge(*values)
        queued_bytes.set(queued_bytes.value + delta * size)

    def finished(self, labels: FlowLabels, outcome: str, waited: float) -> None:
        """A request left flow control with `outcome` after `waited` seconds."""
        v = self._values(labels)
        self.duration.histogram(v[0], v[1], outcome, *v[2:]).observe(waited)


@dataclass(eq=False, slots=True)
class _Waiter:
    labels: FlowLabels
    candidates: Candidates
    future: asyncio.Future[Outcome]


def _candidates(item: QueueItem[_Waiter]) -> Sequence[Endpoint]:
    return item.payload.candidates()


class FlowController:
    """Queues, the dispatch loop and the metrics; one per EPP."""

    def __init__(
        self,
        config: FlowControlConfig,
        saturation: SaturationConfig,
        clock: Clock,
        metrics: FlowMetrics | None = None,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.config = config
        self.saturation = saturation
        self.clock = clock
        self.metrics = metrics
        self.poll_interval = poll_interval
        self.dispatcher: Dispatcher[_Waiter] = Dispatcher(FlowQueues(config), saturation)
        self.queues = self.dispatcher.queues
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def enqueue_and_wait(
        self, request: LLMRequest, byte_size: int, candidates: Candidates
    ) -> None:
        """Return once the request may be scheduled; raise `EppError` when it may not.

        429 when a capacity is exceeded, 503 when its TTL passes, 500 when the
        controller stops. Cancelling the caller (client gone) takes it out of the
        queue, counted as `EvictedContextCancelled`.
        """
        labels = FlowLabels(
            fairness_id(request.headers),
            request.priority,
            request.incoming_model,
            request.target_model,
        )
        if self._closed:
            self._observe(labels, Outcome.REJECTED_OTHER, 0.0)
            raise EppError(INTERNAL, "internal flow control error: flow controller is not running")
        now = self.clock.now()
        waiter = _Waiter(labels, candidates, asyncio.get_running_loop().create_future())
        key = FlowKey(labels.fairness_id, labels.priority)
        item = self.queues.enqueue(key, byte_size, now, waiter)
        if isinstance(item, Rejection):
            self._observe(labels, item.outcome, 0.0)
            raise EppError(RESOURCE_EXHAUSTED, f"request rejected by flow control: {item.message}")
        if self.metrics is not None:
            self.metrics.queued(labels, item.size, 1)
        self._ensure_running()
        try:
            self.pump(now)
        except Exception:  # noqa: BLE001 - the queued request stays; the loop retries
            log.exception("flow control dispatch cycle failed")
        try:
            outcome = await waiter.future
        except asyncio.CancelledError:
            if self.queues.remove(item, Outcome.EVICTED_CONTEXT_CANCELLED):
                self._left(item, self.clock.now())
            raise
        if outcome is not Outcome.DISPATCHED:
            raise self._error(item, outcome)

    def pump(self, now: float) -> None:
        """One dispatch step: answer every request that left the queues."""
        for item in self.dispatcher.step(now, _candidates):
            self._left(item, now)

    def _left(self, item: QueueItem[_Waiter], now: float) -> None:
        outcome = item.outcome or Outcome.EVICTED_OTHER
        waiter = item.payload
        if self.metrics is not None:
            self.metrics.queued(waiter.labels, item.size, -1)
        self._observe(waiter.labels, outcome, now - item.enqueued_at)
        if not waiter.future.done():
            waiter.future.set_result(outcome)

    def _observe(self, labels: FlowLabels, outcome: Outcome, waited: float) -> None:
        if self.metrics is not None:
            self.metrics.finished(labels, outcome.value, waited)

    def _error(self, item: QueueItem[_Waiter], outcome: Outcome) -> EppError:
        waited = self.clock.now() - item.enqueued_at
        if outcome is Outcome.EVICTED_TTL:
            ttl = (item.deadline or item.enqueued_at) - item.enqueued_at
            return EppError(
                SERVICE_UNAVAILABLE,
                f"request timed out in queue: not dispatched within its {ttl:g}s TTL "
                f"(priority {item.key.priority}, flow {item.key.fairness_id})",
            )
        if outcome is Outcome.EVICTED_CONTEXT_CANCELLED:
            return EppError(
                SERVICE_UNAVAILABLE, f"client disconnected: after {waited:.3f}s in queue"
            )
        return EppError(INTERNAL, f"internal flow control error: request {outcome.value}")

    # ------------------------------------------------------------ dispatch loop

    def _ensure_running(self) -> None:
        self._wake.set()
        if self._task is None or self._task.done():
            if self._task is not None and not self._task.cancelled() and self._task.exception():
                log.error("flow control loop had stopped: %r; restarting", self._task.exception())
            self._task = asyncio.get_running_loop().create_task(self.run(), name="flow control")

    async def run(self) -> None:
        """Dispatch and expire until cancelled (started with the first request)."""
        while True:
            now = self.clock.now()
            try:
                self.pump(now)
            except Exception:  # noqa: BLE001 - a broken candidate source must not stop the loop
                log.exception("flow control dispatch cycle failed")
            if not self.queues:
                self._wake.clear()
                await self._wake.wait()
                continue
            delay = self.poll_interval
            deadline = self.queues.next_deadline()
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - now))
            await self.clock.sleep(delay)

    async def close(self) -> None:
        """Stop the loop; every queued request fails with 500 (`EvictedOther`)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        now = self.clock.now()
        for item in self.queues.drain(Outcome.EVICTED_OTHER):
            self._left(item, now)
