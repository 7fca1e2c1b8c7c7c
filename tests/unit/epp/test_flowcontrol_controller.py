"""The asyncio flow controller on a virtual clock: hold, release, expire, reject, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from pyllmd.core.clock import VirtualClock
from pyllmd.core.metricset import Registry
from pyllmd.core.promtext import parse_samples
from pyllmd.epp.extproc.flowcontroller import POLL_INTERVAL, FlowController, FlowMetrics
from pyllmd.epp.flowcontrol import FlowControlConfig
from pyllmd.epp.flowcontrol.bands import BandConfig
from pyllmd.epp.flowcontrol.dispatch import fairness_id
from pyllmd.epp.requests import EppError
from pyllmd.epp.saturation import SaturationConfig
from pyllmd.epp.scheduling.types import Endpoint
from tests.unit.epp.plugin_helpers import endpoint, request

SIZE = "inference_extension_flow_control_queue_size"
BYTES = "inference_extension_flow_control_queue_bytes"
DURATION = "inference_extension_flow_control_request_queue_duration_seconds"


class Pool:
    """One endpoint whose metrics the test sets; `scraped_at` None means always fresh."""

    def __init__(self, clock: VirtualClock, waiting: int = 0) -> None:
        self.clock = clock
        self.waiting = waiting
        self.scraped_at: float | None = None

    def __call__(self) -> Sequence[Endpoint]:
        at = self.clock.now() if self.scraped_at is None else self.scraped_at
        return [endpoint("e-rank-0", waiting_queue_size=self.waiting, update_time=at)]


def _controller(
    clock: VirtualClock, config: FlowControlConfig | None = None, queue_depth: int = 100
) -> tuple[FlowController, Registry]:
    registry = Registry()
    sat = SaturationConfig(queue_depth_threshold=queue_depth)
    ctl = FlowController(config or FlowControlConfig(), sat, clock, FlowMetrics(registry, "pool"))
    return ctl, registry


def _series(registry: Registry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in parse_samples(registry.render().decode())
        if s.name == name
    }


def _outcomes(registry: Registry, outcome: str) -> list[float]:
    counts = _series(registry, DURATION + "_count")
    return [v for k, v in counts.items() if ("outcome", outcome) in k]


def _total(registry: Registry, name: str) -> float:
    return sum(_series(registry, name).values())


async def test_unsaturated_request_is_dispatched_at_once() -> None:
    clock = VirtualClock(start=100.0)
    ctl, registry = _controller(clock)
    await ctl.enqueue_and_wait(request(), 42, Pool(clock))
    labels = (
        ("fairness_id", "default-flow"),
        ("inference_pool", "pool"),
        ("model_name", "m"),
        ("target_model_name", "m"),
        ("priority", "0"),
    )
    assert _series(registry, SIZE) == {tuple(sorted(labels)): 0.0}
    assert _total(registry, BYTES) == 0
    counts = _series(registry, DURATION + "_count")
    assert counts == {tuple(sorted((*labels, ("outcome", "Dispatched")))): 1.0}
    await ctl.close()


async def test_requests_wait_while_saturated_then_leave_in_band_order() -> None:
    clock = VirtualClock(start=100.0)
    ctl, registry = _controller(clock, queue_depth=5)
    pool = Pool(clock, waiting=10)
    order: list[str] = []

    async def send(name: str, priority: int, flow: str = "") -> None:
        headers = {"x-gateway-inference-fairness-id": flow} if flow else {}
        await ctl.enqueue_and_wait(request(headers=headers, priority=priority), 100, pool)
        order.append(name)

    tasks = [
        asyncio.create_task(send("low-1", 0)),
        asyncio.create_task(send("sheddable", -1)),
        asyncio.create_task(send("low-2", 0, flow="tenant-b")),
        asyncio.create_task(send("high", 10)),
    ]
    await clock.advance(5.0)
    assert order == [] and len(ctl.queues) == 4
    assert _total(registry, SIZE) == 4 and _total(registry, BYTES) == 400
    pool.waiting = 0
    await clock.advance(POLL_INTERVAL)
    await asyncio.gather(*tasks)
    assert order == ["high", "low-1", "low-2", "sheddable"]
    assert _total(registry, SIZE) == 0 and _total(registry, BYTES) == 0
    await ctl.close()


async def test_ttl_expiry_is_503_at_the_deadline() -> None:
    clock = VirtualClock(start=100.0)
    ctl, registry = _controller(clock, FlowControlConfig(default_ttl=2.0), queue_depth=5)
    task = asyncio.create_task(ctl.enqueue_and_wait(request(), 10, Pool(clock, waiting=10)))
    await clock.advance(1.999)
    assert not task.done()
    await clock.advance(0.001)
    with pytest.raises(EppError) as err:
        await task
    assert err.value.status == 503
    assert err.value.message.startswith("request timed out in queue: ")
    assert _total(registry, SIZE) == 0
    ttl_count = [
        v
        for k, v in _series(registry, DURATION + "_count").items()
        if ("outcome", "EvictedTTL") in k
    ]
    assert ttl_count == [1.0]
    assert _total(registry, DURATION + "_sum") == pytest.approx(2.0)
    await ctl.close()


async def test_capacity_rejection_is_429_without_queueing() -> None:
    clock = VirtualClock(start=100.0)
    config = FlowControlConfig(bands={5: BandConfig(5, "priority-5", 150)})
    ctl, registry = _controller(clock, config, queue_depth=5)
    pool = Pool(clock, waiting=10)
    first = asyncio.create_task(ctl.enqueue_and_wait(request(priority=5), 100, pool))
    await clock.advance(0)
    with pytest.raises(EppError) as err:
        await ctl.enqueue_and_wait(request(priority=5), 100, pool)
    assert err.value.status == 429
    assert "priority-5" in err.value.message
    assert _outcomes(registry, "RejectedCapacity") == [1.0]
    assert _total(registry, SIZE) == 1  # the first one still waits
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await ctl.close()


async def test_cancelled_waiter_leaves_the_queue() -> None:
    clock = VirtualClock(start=100.0)
    ctl, registry = _controller(clock, queue_depth=5)
    task = asyncio.create_task(ctl.enqueue_and_wait(request(), 10, Pool(clock, waiting=10)))
    await clock.advance(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(ctl.queues) == 0 and _total(registry, SIZE) == 0
    assert _outcomes(registry, "EvictedContextCancelled") == [1.0]
    await ctl.close()


async def test_close_fails_waiting_requests_with_500() -> None:
    clock = VirtualClock(start=100.0)
    ctl, _ = _controller(clock, queue_depth=5)
    task = asyncio.create_task(ctl.enqueue_and_wait(request(), 10, Pool(clock, waiting=10)))
    await clock.advance(0.5)
    await ctl.close()
    with pytest.raises(EppError) as err:
        await task
    assert err.value.status == 500 and "internal flow control error" in err.value.message
    with pytest.raises(EppError, match="not running"):
        await ctl.enqueue_and_wait(request(), 10, Pool(clock))


async def test_dispatches_wait_for_a_scrape_that_can_show_them() -> None:
    clock = VirtualClock(start=100.0)
    ctl, _ = _controller(clock, queue_depth=1)
    pool = Pool(clock, waiting=0)
    pool.scraped_at = clock.now()
    tasks = [asyncio.create_task(ctl.enqueue_and_wait(request(), 10, pool)) for _ in range(3)]
    await clock.advance(0.05)
    assert [t.done() for t in tasks] == [True, False, False]  # one already fills the queue
    pool.scraped_at = clock.now()  # a new scrape: the first request is running, none waits
    await clock.advance(POLL_INTERVAL)
    assert [t.done() for t in tasks] == [True, True, False]
    pool.waiting = 1  # the second one waits on the server now
    pool.scraped_at = clock.now()
    await clock.advance(0.05)
    assert not tasks[2].done()
    pool.waiting = 0
    pool.scraped_at = clock.now()
    await clock.advance(POLL_INTERVAL)
    await asyncio.gather(*tasks)
    await ctl.close()


async def test_empty_pool_holds_requests_for_scale_from_zero() -> None:
    clock = VirtualClock(start=100.0)
    ctl, registry = _controller(clock)
    endpoints: list[Endpoint] = []
    task = asyncio.create_task(ctl.enqueue_and_wait(request(), 10, lambda: endpoints))
    await clock.advance(3.0)
    assert not task.done() and _total(registry, SIZE) == 1
    endpoints.append(endpoint("new-rank-0", update_time=clock.now()))
    await clock.advance(POLL_INTERVAL)
    await task
    await ctl.close()


def test_fairness_id_header_is_case_insensitive_with_a_default() -> None:
    assert fairness_id({}) == "default-flow"
    assert fairness_id({"X-Gateway-Inference-Fairness-Id": "tenant"}) == "tenant"
    assert fairness_id({"x-gateway-inference-fairness-id": ""}) == "default-flow"


async def test_a_failing_candidate_source_does_not_stop_the_loop() -> None:
    clock = VirtualClock(start=100.0)
    ctl, _ = _controller(clock)
    broken = [True]

    def candidates() -> Sequence[Endpoint]:
        if broken[0]:
            raise RuntimeError("datastore unavailable")
        return [endpoint("e-rank-0", update_time=clock.now())]

    task = asyncio.create_task(ctl.enqueue_and_wait(request(), 10, candidates))
    await clock.advance(0.5)
    assert not task.done()
    broken[0] = False
    await clock.advance(POLL_INTERVAL)
    await task
    await ctl.close()
