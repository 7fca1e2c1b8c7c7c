"""The ext_proc servicer with flow control on (spec §8, §2.5): held streams, 429, 503, cleanup."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from pyllmd.core.clock import VirtualClock
from pyllmd.core.promtext import parse_samples
from pyllmd.epp.extproc import wire
from pyllmd.epp.extproc.flowcontroller import POLL_INTERVAL, FlowController, FlowMetrics
from pyllmd.epp.extproc.servicer import ExtProcServicer
from pyllmd.epp.flowcontrol import FlowControlConfig
from pyllmd.epp.metrics import EppMetrics
from pyllmd.epp.saturation import SaturationConfig
from pyllmd.epp.scheduling.types import Endpoint
from tests.unit.epp.plugin_helpers import endpoint
from tests.unit.epp.test_server import (
    COMPLETION,
    FirstScheduler,
    Metrics,
    Observer,
    body_msg,
    headers_msg,
    immediate,
    kinds,
    run,
)

QUEUE_SIZE = "inference_extension_flow_control_queue_size"
PRIORITIES = {"batch": -1, "chat": 10}


class LivePool:
    """Endpoints scraped "just now", with a waiting queue the test sets."""

    synced = True

    def __init__(self, clock: VirtualClock, waiting: int) -> None:
        self.clock = clock
        self.waiting = waiting

    def __call__(self) -> Sequence[Endpoint]:
        return [
            endpoint("pod1-rank-0", waiting_queue_size=self.waiting, update_time=self.clock.now())
        ]


def _servicer(
    clock: VirtualClock, pool: LivePool, config: FlowControlConfig, **kw: Any
) -> tuple[ExtProcServicer, FlowController, EppMetrics]:
    registry = EppMetrics("pool")
    flow = FlowController(config, SaturationConfig(), clock, FlowMetrics(registry.registry, "pool"))
    servicer = ExtProcServicer(
        kw.pop("scheduler", None) or FirstScheduler(),
        pool,
        flow_control=flow,
        objective_priority=PRIORITIES.get,
        clock=clock,
        rng=random.Random(1),
        **kw,
    )
    return servicer, flow, registry


def _queued(metrics: EppMetrics) -> float:
    return sum(s.value for s in parse_samples(metrics.render().decode()) if s.name == QUEUE_SIZE)


def _request(objective: str = "") -> list[Any]:
    headers = {"x-gateway-inference-objective": objective} if objective else {}
    return [headers_msg(headers), body_msg(COMPLETION)]


async def test_epp_acc_63_flow_control_capacity_ttl_and_queue_gauge() -> None:
    clock = VirtualClock(start=100.0)
    pool = LivePool(clock, waiting=10)  # saturated: 10 ≥ queueDepthThreshold 5
    config = FlowControlConfig(default_ttl=2.0, default_band_max_bytes=len(COMPLETION) + 10)
    servicer, _, metrics = _servicer(clock, pool, config)
    waiting = asyncio.create_task(run(servicer, _request()))
    await clock.advance(1.0)
    assert not waiting.done()
    assert _queued(metrics) == 1  # the gauge rises while the request waits

    over = await run(servicer, _request())  # the band would exceed its maxBytes
    status, body = immediate(over)
    assert status == 429
    assert body.startswith(b"inference gateway: InferencePoolResourceExhausted - ")
    assert b"request rejected by flow control" in body

    await clock.advance(1.0)  # the first one reaches its 2s TTL
    status, body = immediate(await waiting)
    assert status == 503
    assert body.startswith(b"inference gateway: ServiceUnavailable - request timed out in queue: ")
    assert _queued(metrics) == 0  # and falls back


async def test_held_request_is_scheduled_once_the_pool_has_room() -> None:
    clock = VirtualClock(start=100.0)
    pool = LivePool(clock, waiting=10)
    recorded = Metrics()
    servicer, _, metrics = _servicer(clock, pool, FlowControlConfig(), metrics=recorded)
    task = asyncio.create_task(run(servicer, _request()))
    await clock.advance(30.0)  # no TTL: it just waits
    assert not task.done() and recorded.calls == []
    pool.waiting = 0
    await clock.advance(POLL_INTERVAL)
    replies = await task
    assert kinds(replies) == ["request_headers", "request_body"]
    destination = wire.headers_of(replies[0], "request_headers")["x-gateway-destination-endpoint"]
    assert destination == "10.0.0.1:8000"
    assert recorded.of("request") == [("request", "m", "m", len(COMPLETION))]
    assert recorded.running == 0 and _queued(metrics) == 0


async def test_higher_priority_is_routed_first() -> None:
    clock = VirtualClock(start=100.0)
    pool = LivePool(clock, waiting=10)
    scheduler = FirstScheduler()
    servicer, _, _ = _servicer(clock, pool, FlowControlConfig(), scheduler=scheduler)
    names = ["batch", "", "chat"]
    tasks = []
    for name in names:
        tasks.append(asyncio.create_task(run(servicer, _request(name))))
        await clock.advance(0.1)
    pool.waiting = 0
    await clock.advance(POLL_INTERVAL)
    await asyncio.gather(*tasks)
    assert [r.priority for r in scheduler.requests] == [10, 0, -1]


async def test_sheddable_request_waits_instead_of_being_dropped() -> None:
    clock = VirtualClock(start=100.0)
    servicer, flow, _ = _servicer(clock, LivePool(clock, waiting=10), FlowControlConfig())
    task = asyncio.create_task(run(servicer, _request("batch")))
    await clock.advance(1.0)
    assert not task.done() and len(flow.queues) == 1  # no legacy 429 with flow control on
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_client_disconnect_while_queued_cleans_up() -> None:
    clock = VirtualClock(start=100.0)
    recorded, observer, scheduler = Metrics(), Observer(), FirstScheduler()
    servicer, flow, metrics = _servicer(
        clock,
        LivePool(clock, waiting=10),
        FlowControlConfig(),
        metrics=recorded,
        observer=observer,
        scheduler=scheduler,
    )
    task = asyncio.create_task(run(servicer, _request()))
    await clock.advance(1.0)
    task.cancel()  # what grpc.aio does when Envoy resets the stream
    await asyncio.gather(task, return_exceptions=True)
    assert len(flow.queues) == 0 and _queued(metrics) == 0
    assert recorded.of("error") == [("error", "m", "m", "ServiceUnavailable")]
    assert scheduler.requests == [] and observer.completed == [] and recorded.running == 0


async def test_trailers_answer_comes_after_the_released_request() -> None:
    clock = VirtualClock(start=100.0)
    pool = LivePool(clock, waiting=10)
    servicer, _, _ = _servicer(clock, pool, FlowControlConfig())
    trailers = pb.ProcessingRequest(request_trailers=pb.HttpTrailers())
    msgs = [headers_msg(), body_msg(COMPLETION, eos=False), trailers]
    task = asyncio.create_task(run(servicer, msgs))
    await clock.advance(0.5)
    assert not task.done()
    pool.waiting = 0
    await clock.advance(POLL_INTERVAL)
    assert kinds(await task) == ["request_headers", "request_body", "request_trailers"]
