"""Leader election: the decision table, two replicas on one Lease, the controller gated on it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pyllmd.autoscaler.collect.epp import EppScraper
from pyllmd.autoscaler.collect.prometheus import PrometheusClient
from pyllmd.autoscaler.config import load_controller_config
from pyllmd.autoscaler.kube.cluster import KubeCluster, connect
from pyllmd.autoscaler.loops.controller import Controller, LeaderElectionLost
from pyllmd.autoscaler.loops.metrics import ControllerMetrics
from pyllmd.autoscaler.run import build_controller, prometheus_options
from pyllmd.cli import _run_until_signal
from pyllmd.core.clock import VirtualClock
from pyllmd.core.leader import (
    Action,
    LeaderElector,
    LeaseRecord,
    decide,
    default_identity,
    format_micro_time,
    parse_micro_time,
    record_from_spec,
    released,
    renew_deadline_exceeded,
    spec_from_record,
)
from tests.unit.autoscaler import kubefake_api as api
from tests.unit.autoscaler.kubefake import KubeFake

NS = "workload-variant-autoscaler-system"
LEASE = "72dd1cf1.llm-d.ai"
WALL = 1_700_000_000.0

# -- the decision table ---------------------------------------------------------------------


def _decide(current: LeaseRecord | None, observed_at: float = 0.0, now: float = 0.0) -> Any:
    return decide(
        current, identity="me", observed_at=observed_at, now=now, wall=WALL + now, lease_duration=60
    )


def test_empty_lease_is_acquired() -> None:
    verdict = _decide(None, now=5.0)
    assert verdict.action is Action.ACQUIRE
    assert verdict.record == LeaseRecord("me", 60, WALL + 5, WALL + 5, 0)


def test_released_lease_is_acquired_at_once() -> None:
    verdict = _decide(released(LeaseRecord("other", 60, WALL, WALL, 3), WALL), now=0.5)
    assert verdict.action is Action.ACQUIRE
    assert verdict.record == LeaseRecord("me", 60, WALL + 0.5, WALL + 0.5, 4)


@pytest.mark.parametrize(
    ("now", "action"),
    [(0.0, Action.FOLLOW), (69.9, Action.FOLLOW), (70.0, Action.ACQUIRE), (95.0, Action.ACQUIRE)],
)
def test_lease_held_by_other_expires_a_lease_duration_after_it_was_seen(
    now: float, action: Action
) -> None:
    held = LeaseRecord("other", 60, WALL - 500, WALL - 30, 2)
    verdict = _decide(held, observed_at=10.0, now=now)
    assert verdict.action is action
    if action is Action.ACQUIRE:
        assert verdict.record == LeaseRecord("me", 60, WALL + now, WALL + now, 3)
    else:
        assert verdict.record is None


def test_lease_held_by_me_is_renewed_keeping_acquire_time_and_transitions() -> None:
    mine = LeaseRecord("me", 60, WALL - 100, WALL - 10, 5)
    verdict = _decide(mine, observed_at=0.0, now=500.0)  # even long after it was seen
    assert verdict.action is Action.RENEW
    assert verdict.record == LeaseRecord("me", 60, WALL - 100, WALL + 500, 5)


@pytest.mark.parametrize(("now", "exceeded"), [(149.9, False), (150.0, True), (151.0, True)])
def test_renew_deadline(now: float, exceeded: bool) -> None:
    assert renew_deadline_exceeded(100.0, now, 50.0) is exceeded


def test_released_record_clears_holder_with_a_one_second_lease() -> None:
    assert released(LeaseRecord("me", 60, WALL, WALL + 9, 2), WALL + 10) == LeaseRecord(
        "", 1, WALL + 10, WALL + 10, 2
    )


def test_micro_time_is_rfc3339_with_microseconds() -> None:
    assert format_micro_time(WALL + 0.25) == "2023-11-14T22:13:20.250000Z"
    assert parse_micro_time("2023-11-14T22:13:20.250000Z") == WALL + 0.25
    assert parse_micro_time("2023-11-14T22:13:20Z") == WALL
    assert parse_micro_time("2023-11-15T00:13:20+02:00") == WALL
    assert parse_micro_time("yesterday") is None and parse_micro_time(None) is None


def test_spec_round_trip_keeps_fields_it_does_not_own() -> None:
    record = LeaseRecord("me", 60, WALL, WALL + 1, 1)
    spec = spec_from_record(record, {"strategy": "OldestEmulator"})
    assert spec == {
        "strategy": "OldestEmulator",
        "holderIdentity": "me",
        "leaseDurationSeconds": 60,
        "leaseTransitions": 1,
        "acquireTime": "2023-11-14T22:13:20.000000Z",
        "renewTime": "2023-11-14T22:13:21.000000Z",
    }
    assert record_from_spec(spec) == record
    assert record_from_spec({"holderIdentity": 7, "leaseDurationSeconds": "x"}) == LeaseRecord()


def test_identity_is_hostname_and_uuid() -> None:
    host, _, rest = default_identity().rpartition("_")
    assert host and len(rest) == 36 and default_identity() != default_identity()


# -- replicas against the fake API server ---------------------------------------------------


class CountingClock(VirtualClock):
    """A virtual clock that counts tasks parked in `sleep` (the electors' and loops' waits)."""

    def __init__(self) -> None:
        super().__init__(wall_start=WALL)
        self.parked = 0

    async def sleep(self, seconds: float) -> None:
        self.parked += 1
        try:
            await super().sleep(seconds)
        finally:
            self.parked -= 1


async def _until(check: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def _run_for(
    clock: CountingClock, seconds: int, quiet: Callable[[], bool], each: Callable[[], None]
) -> None:
    """Advance one virtual second at a time, letting HTTP calls finish in between."""
    for _ in range(seconds):
        await clock.advance(1.0)
        await _until(quiet, f"quiet at t={clock.now()}")
        each()


@dataclass
class Replica:
    """One candidate: its elector, its stop signal, and when it led."""

    elector: LeaderElector
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    led_at: float | None = None


@contextlib.asynccontextmanager
async def _replicas(
    kube: KubeFake, clock: CountingClock, names: list[str]
) -> AsyncIterator[list[Replica]]:
    clients = [connect(server=kube.url) for _ in names]
    replicas = [
        Replica(LeaderElector(c, clock, name=LEASE, namespace=NS, identity=n))
        for c, n in zip(clients, names, strict=True)
    ]
    try:
        yield replicas
    finally:
        for r in replicas:
            r.stop.set()
            if r.task is not None:
                r.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await r.task
        for c in clients:
            await c.close()


async def _campaign(r: Replica, clock: CountingClock) -> None:
    if await r.elector.acquire(r.stop):
        r.led_at = clock.now()
        if await r.elector.hold(r.stop):
            await r.elector.release()


def _start(r: Replica, clock: CountingClock) -> None:
    r.task = asyncio.create_task(_campaign(r, clock))


def _lease(kube: KubeFake) -> dict[str, Any]:
    obj = kube.get(api.LEASES, NS, LEASE)
    assert obj is not None
    spec: dict[str, Any] = obj["spec"]
    return spec


def _live(replicas: list[Replica]) -> int:
    return sum(1 for r in replicas if r.task is not None and not r.task.done())


async def test_two_replicas_exactly_one_leads(kube: KubeFake) -> None:
    clock = CountingClock()
    async with _replicas(kube, clock, ["a", "b"]) as replicas:
        for r in replicas:
            _start(r, clock)
        await _until(lambda: clock.parked == 2, "both tried")

        def one_leader() -> None:
            leaders = [r for r in replicas if r.elector.is_leader]
            assert len(leaders) == 1
            assert _lease(kube)["holderIdentity"] == leaders[0].elector.identity

        one_leader()
        await _run_for(clock, 130, lambda: clock.parked == 2, one_leader)
        spec = _lease(kube)
        assert spec["leaseTransitions"] == 0 and spec["leaseDurationSeconds"] == 60
        assert spec["acquireTime"] == format_micro_time(WALL)
        assert spec["renewTime"] == format_micro_time(WALL + 130)


async def test_released_lease_is_taken_over_within_a_retry_period(kube: KubeFake) -> None:
    clock = CountingClock()
    async with _replicas(kube, clock, ["a", "b"]) as (a, b):
        _start(a, clock)
        await _until(lambda: a.elector.is_leader and clock.parked == 1, "a leads")
        await _run_for(clock, 5, lambda: clock.parked == 1, lambda: None)
        _start(b, clock)  # b tries at 5, 15, 25, ...
        await _run_for(clock, 25, lambda: clock.parked == 2, lambda: None)
        assert b.led_at is None
        a.stop.set()  # shutdown at t=30: a releases the lease
        await _until(lambda: a.task is not None and a.task.done(), "a released")
        assert _lease(kube)["holderIdentity"] == ""
        assert _lease(kube)["leaseDurationSeconds"] == 1
        await _run_for(clock, 10, lambda: clock.parked == _live([a, b]), lambda: None)
        assert b.led_at is not None and 30 < b.led_at <= 30 + 10
        spec = _lease(kube)
        assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
        assert spec["acquireTime"] == format_micro_time(WALL + b.led_at)


async def test_crashed_leader_is_taken_over_after_the_lease_duration(kube: KubeFake) -> None:
    clock = CountingClock()
    async with _replicas(kube, clock, ["a", "b"]) as (a, b):
        _start(a, clock)
        await _until(lambda: clock.parked == 1, "a leads")
        await _run_for(clock, 5, lambda: clock.parked == 1, lambda: None)
        _start(b, clock)
        await _run_for(clock, 25, lambda: clock.parked == 2, lambda: None)
        assert _lease(kube)["renewTime"] == format_micro_time(WALL + 30)
        assert a.task is not None
        a.task.cancel()  # killed at t=30 right after renewing: no release
        with contextlib.suppress(asyncio.CancelledError):
            await a.task
        assert _lease(kube)["holderIdentity"] == "a"
        await _run_for(clock, 59, lambda: clock.parked == 1, lambda: None)
        assert b.led_at is None  # t=89: a's last renewal is less than 60 s old
        await _run_for(clock, 11, lambda: clock.parked == 1, lambda: None)
        assert b.led_at is not None and 30 + 60 <= b.led_at <= 30 + 60 + 10
        assert _lease(kube)["holderIdentity"] == "b"
        assert _lease(kube)["leaseTransitions"] == 1


# -- the controller gated on leadership -----------------------------------------------------


class CountingEngine:
    """A saturation engine stub that only counts its cycles."""

    def __init__(self) -> None:
        self.cycles = 0

    async def cycle(self) -> None:
        self.cycles += 1


async def test_controller_runs_cycles_only_while_leader(kube: KubeFake) -> None:
    clock = CountingClock()
    held = LeaseRecord("other", 60, WALL, WALL, 0)
    meta = {"name": LEASE, "namespace": NS}
    kube.create(api.LEASES, {"metadata": meta, "spec": spec_from_record(held)})
    client = connect(server=kube.url)
    elector = LeaderElector(client, clock, name=LEASE, namespace=NS, identity="me")
    engine = CountingEngine()
    controller = Controller(
        engine,  # type: ignore[arg-type]
        ControllerMetrics(),
        clock,
        interval=5.0,
        elector=elector,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))

    def quiet() -> bool:
        leading = engine.cycles > 0  # a cycle runs as soon as the loops start
        return task.done() or clock.parked == (2 if leading else 1)

    try:
        await _until(quiet, "first try")
        await _run_for(clock, 59, quiet, lambda: None)
        assert engine.cycles == 0 and not elector.is_leader  # "other" still holds it
        await _run_for(clock, 31, quiet, lambda: None)
        assert elector.is_leader and _lease(kube)["holderIdentity"] == "me"
        assert engine.cycles >= 5
        stolen = spec_from_record(LeaseRecord("intruder", 60, WALL + 90, WALL + 90, 2))
        kube.update(api.LEASES, NS, LEASE, {"spec": stolen})
        await _run_for(clock, 70, quiet, lambda: None)
        assert task.done()
        with pytest.raises(LeaderElectionLost, match="^leader election lost$"):
            task.result()
        cycles = engine.cycles
        await clock.advance(60)
        assert engine.cycles == cycles  # the loops stopped with the leadership
    finally:
        stop.set()
        with contextlib.suppress(LeaderElectionLost):
            await task
        await client.close()


async def test_controller_releases_the_lease_on_shutdown(kube: KubeFake) -> None:
    clock = CountingClock()
    client = connect(server=kube.url)
    elector = LeaderElector(client, clock, name=LEASE, namespace=NS, identity="me")
    engine = CountingEngine()
    controller = Controller(engine, ControllerMetrics(), clock, 5.0, elector=elector)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    try:
        await _until(lambda: clock.parked == 2, "leading")
        assert engine.cycles == 1
        stop.set()
        await task
        assert _lease(kube)["holderIdentity"] == ""
    finally:
        await client.close()


async def test_leader_elect_flag_wires_an_elector_on_the_system_namespace_lease() -> None:
    env = {"PROMETHEUS_BASE_URL": "https://prometheus.example:9090", "POD_NAMESPACE": "wva"}
    clock = VirtualClock()
    args = [
        "--leader-elect",
        "--leader-election-lease-duration=30s",
        "--leader-election-renew-deadline=20s",
        "--leader-election-retry-period=5s",
    ]
    for argv, wired in (([], False), (args, True)):
        cfg = load_controller_config(argv, env)
        cluster = KubeCluster(connect(server="http://127.0.0.1:9"))
        client = PrometheusClient(prometheus_options(cfg), clock)
        scraper = EppScraper()
        controller = build_controller(cfg, cluster, client, scraper, clock, identity="pod-1_x")
        assert (controller.elector is not None) is wired
        if isinstance(controller.elector, LeaderElector):
            e = controller.elector
            assert (e.name, e.namespace, e.identity) == (LEASE, "wva", "pod-1_x")
            assert (e.lease_duration, e.renew_deadline, e.retry_period) == (30.0, 20.0, 5.0)
        await scraper.close()
        await client.close()
        await cluster.close()


def test_lost_leadership_exits_1_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    async def lose(stop: asyncio.Event) -> None:
        raise LeaderElectionLost()

    assert _run_until_signal(lose, "pyllmd autoscaler") == 1
    assert capsys.readouterr().err == "pyllmd autoscaler: error: leader election lost\n"
