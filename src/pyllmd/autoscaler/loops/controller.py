"""The controller process: health and metrics endpoints, and the engine loops on a Clock.

Start-up follows upstream's order (config → Prometheus connectivity with
backoff → loops). The saturation loop runs every `GLOBAL_OPT_INTERVAL`
(counted from the end of one cycle to the start of the next; upstream ignores
the setting and uses 30 s), retrying a failed cycle with backoff; the
scale-from-zero loop ticks every 100 ms. `/readyz` fails until the first read
of the ConfigMaps succeeded.

With an event source (Kubernetes watches), a VA created or whose spec changed,
and a Deployment created, changed or deleted, get their `TargetResolved`
written at once (`SaturationEngine.resolve_targets`) instead of at the next
cycle. Upstream reconciles on VA and Deployment creation only; VA spec edits
and Deployment deletions wait for its engine loop. Changes that leave
`metadata.generation` alone (status writes, ours included) trigger nothing.

With an elector (`--leader-elect`), everything but the endpoints and the
ConfigMap bootstrap runs only while this replica holds the Lease: the loops
start once it is acquired, stop before it is released on shutdown, and stop
when it is lost, after which `run` raises `LeaderElectionLost` (exit 1, as
controller-runtime).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from pyllmd.autoscaler.config import parse_bind_address
from pyllmd.autoscaler.loops.metrics import ControllerMetrics
from pyllmd.autoscaler.loops.saturation import SaturationEngine
from pyllmd.autoscaler.loops.scalefromzero import SCALE_FROM_ZERO_PERIOD, ScaleFromZeroEngine
from pyllmd.core.clock import Clock
from pyllmd.core.heap import freeze_heap
from pyllmd.core.kubeauth import Decide, guarded_handler
from pyllmd.core.metricset import CONTENT_TYPE

log = logging.getLogger(__name__)

VA_KIND = "VariantAutoscaling"
DEPLOYMENT_KIND = "Deployment"


class ClusterEvent(Protocol):
    """A watch event (`kube.cluster.WatchEvent`)."""

    @property
    def kind(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def event_type(self) -> str: ...  # ADDED | MODIFIED | DELETED
    @property
    def generation(self) -> int: ...  # metadata.generation, 0 when unknown


class LeaderElectionLost(RuntimeError):
    """The Lease could not be renewed in time; the process must exit (status 1).

    Defined here rather than in `leader` so the local stack, which has no
    elector, does not import the Kubernetes client.
    """

    def __init__(self) -> None:
        super().__init__("leader election lost")


class Elector(Protocol):
    """Leader election (`leader.LeaderElector`)."""

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait for leadership: True once leading, False when `stop` was set first."""
        ...

    async def hold(self, stop: asyncio.Event) -> bool:
        """Keep leadership until `stop` (True) or until it is lost (False)."""
        ...

    async def release(self) -> None:
        """Give leadership up (best effort)."""
        ...


class EventSource(Protocol):
    """Where watch events come from (`kube.cluster.KubeCluster`)."""

    def watch_events(self) -> AsyncIterator[ClusterEvent]:
        """Events until closed; reconnects by itself."""
        ...


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: `initial` doubling (× `factor`) up to `cap`."""

    initial: float = 0.1
    factor: float = 2.0
    cap: float = 4.0

    def delays(self) -> list[float]:
        """The first few delays (for documentation and tests)."""
        out, d = [], self.initial
        for _ in range(8):
            out.append(min(d, self.cap))
            d *= self.factor
        return out


def split_bind_address(address: str) -> tuple[str, int] | None:
    """`":8081"` → ("0.0.0.0", 8081); `"[::1]:9"` → ("::1", 9); `"0"` or "" → None (disabled).

    Raises ValueError for an address the configuration would have refused.
    """
    return parse_bind_address(address)


class Controller:
    """Owns the loops and the HTTP endpoints of one controller process."""

    def __init__(
        self,
        saturation: SaturationEngine,
        metrics: ControllerMetrics,
        clock: Clock,
        interval: float,
        from_zero: ScaleFromZeroEngine | None = None,
        backoff: Backoff = Backoff(),
        events: EventSource | None = None,
        elector: Elector | None = None,
    ) -> None:
        self.saturation = saturation
        self.metrics = metrics
        self.clock = clock
        self.interval = interval
        self.from_zero = from_zero
        self.backoff = backoff
        self.ready = False
        self.ready_error = ""
        self.cycles = 0
        self.events = events
        self.elector = elector
        self.event_passes = 0
        self._generations: dict[tuple[str, str, str], int] = {}

    async def bootstrap(self) -> None:
        """Read the ConfigMaps once; readiness depends on it (as upstream's bootstrap)."""
        try:
            await self.saturation.read_configs(set())
        except Exception as e:
            self.ready_error = str(e)
            raise
        self.ready = True

    async def run(self, stop: asyncio.Event) -> None:
        """Run the loops until `stop` is set (while leading, with an elector)."""
        if self.elector is None:
            await self._run_loops(stop)
            return
        if not await self.elector.acquire(stop):
            return
        loops_stop = asyncio.Event()
        loops = asyncio.create_task(self._run_loops(loops_stop))
        lost = False
        try:
            lost = not await self.elector.hold(stop)
        finally:  # the loops end before the lease is released (release-on-cancel)
            loops_stop.set()
            await loops
            if not lost:
                await self.elector.release()
        if lost:
            raise LeaderElectionLost()

    async def _run_loops(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._loop(self._saturation_cycle, self.interval, stop))]
        if self.from_zero is not None:
            tasks.append(
                asyncio.create_task(self._loop(self._from_zero_tick, SCALE_FROM_ZERO_PERIOD, stop))
            )
        if self.events is not None:
            tasks.append(asyncio.create_task(self._watch(self.events, stop)))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def handle_event(self, event: ClusterEvent) -> bool:
        """Run the targets pass an event calls for; True when one ran."""
        if event.kind not in (VA_KIND, DEPLOYMENT_KIND):
            return False
        key = (event.kind, event.namespace, event.name)
        if event.event_type == "DELETED":
            self._generations.pop(key, None)
            if event.kind == VA_KIND:
                return False
        else:
            seen = self._generations.get(key)
            self._generations[key] = event.generation
            if event.event_type == "MODIFIED" and event.generation and seen == event.generation:
                return False  # no spec change: a status write (ours among them)
        if event.kind == VA_KIND:
            await self.saturation.resolve_targets(event.namespace, va_name=event.name)
        else:
            await self.saturation.resolve_targets(event.namespace, target_name=event.name)
        self.event_passes += 1
        return True

    async def _watch(self, events: EventSource, stop: asyncio.Event) -> None:
        delay = self.backoff.initial
        while not stop.is_set():
            try:
                async for event in events.watch_events():
                    try:
                        await self.handle_event(event)
                    except Exception:  # one failed pass must not end the watch
                        log.exception("event handling failed event=%s", event)
                    delay = self.backoff.initial
            except Exception:
                log.exception("watch failed; restarting in %.1fs", delay)
            await self.clock.sleep(delay)
            delay = min(delay * self.backoff.factor, self.backoff.cap)

    async def _saturation_cycle(self) -> None:
        await self.saturation.cycle()
        self.cycles += 1
        if self.cycles == 1:  # start-up and the first cycle's state are built: keep them
            freeze_heap()  # out of later full collections (spikes of tens of ms per cycle)

    async def _from_zero_tick(self) -> None:
        assert self.from_zero is not None
        await self.from_zero.tick()

    async def _loop(
        self, step: Callable[[], Awaitable[None]], period: float, stop: asyncio.Event
    ) -> None:
        delay = self.backoff.initial
        while not stop.is_set():
            try:
                await step()
            except Exception:
                log.exception("cycle failed; retrying in %.1fs", delay)
                await self.clock.sleep(delay)
                delay = min(delay * self.backoff.factor, self.backoff.cap)
                continue
            delay = self.backoff.initial
            await self.clock.sleep(period)

    # -- HTTP -----------------------------------------------------------------

    def health_routes(self) -> list[web.RouteDef]:
        """`/healthz` (always ok) and `/readyz` (after the ConfigMap bootstrap)."""
        return [web.get("/healthz", self._healthz), web.get("/readyz", self._readyz)]

    def metrics_routes(self, authorize: Decide | None = None) -> list[web.RouteDef]:
        """`/metrics` with the `wva_*` families, behind `authorize` when given."""
        handler = self._metrics if authorize is None else guarded_handler(self._metrics, authorize)
        return [web.get("/metrics", handler, allow_head=False)]

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _readyz(self, _: web.Request) -> web.Response:
        if self.ready:
            return web.Response(text="ok")
        detail = f": {self.ready_error}" if self.ready_error else ""
        return web.Response(status=500, text=f"initial ConfigMap bootstrap not complete{detail}")

    async def _metrics(self, _: web.Request) -> web.StreamResponse:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})
