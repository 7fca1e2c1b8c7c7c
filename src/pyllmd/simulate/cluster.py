"""The cluster of a virtual-time run: each variant's Deployment as engine pods that start, serve,
drain and go on the virtual clock, and the autoscaler's `Cluster` over them.

`Fleet` keeps the pods. A scale-up creates pods at once (they count in the Deployment's
`status.replicas`) that become Ready after a start-up delay drawn from `StartupDelay` (image
pull, model load and CUDA-graph capture take about two minutes for an 8B model on a cluster);
only then are they routed to and scraped. A scale-down removes not-yet-ready pods first, then
the newest Ready ones (a ReplicaSet's order): a removed pod leaves the routing set at once and
goes when the requests it holds have finished (vLLM finishes in-flight requests within the
termination grace period). The pods of the stack's first replicas are Ready at time 0.

`VirtualCluster` answers the autoscaler's `Cluster` calls (VAs with their status, Deployments,
pods with their Ready time, ConfigMaps, GPU nodes) from the stack file and the fleet, and
`scale` goes to the fleet, so the controller's code runs unchanged.
"""

from __future__ import annotations

import csv
import functools
import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyllmd.autoscaler.decide.api import CrossVersionObjectReference, VariantAutoscaling
from pyllmd.autoscaler.decide.model import Container, GpuNode, PodInfo, Workload
from pyllmd.autoscaler.decide.status import with_status_patch
from pyllmd.sim.batch.scheduler import Engine, Request
from pyllmd.sim.batchspec import KVTransfer
from pyllmd.simulate.deployment import EngineSpec, Variant

__all__ = [
    "DEFAULT_STARTUP_S",
    "Fleet",
    "PodRun",
    "ScaleEvent",
    "StartupDelay",
    "Timers",
    "VirtualCluster",
    "write_scale_events",
]

DEFAULT_STARTUP_S = 120.0
DEFAULT_STARTUP_JITTER_S = 15.0
SIM_COMMAND = ("pyllmd", "sim")


class Timers:
    """A heap of plain callbacks `fn(now)` on the virtual clock, in time then insertion order.

    A callback reads no engine state unless it is registered with `engines=True` (a cache
    drop): the replay then brings every pod to its time before it runs.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[float], None]]] = []
        self._seq = itertools.count()
        self._engines: set[int] = set()  # sequence numbers of the callbacks that touch engines

    def at(self, t: float, fn: Callable[[float], None], engines: bool = False) -> None:
        seq = next(self._seq)
        if engines:
            self._engines.add(seq)
        heapq.heappush(self._heap, (t, seq, fn))

    def next_time(self) -> float:
        return self._heap[0][0] if self._heap else math.inf

    def next_reads_engines(self) -> bool:
        """Whether the earliest callback touches engine state."""
        return bool(self._heap) and self._heap[0][1] in self._engines

    def fire(self) -> float:
        """Run the earliest callback; its time."""
        t, seq, fn = heapq.heappop(self._heap)
        self._engines.discard(seq)
        fn(t)
        return t


@dataclass(frozen=True)
class StartupDelay:
    """Seconds from a pod's creation to Ready: log-normal with this mean and standard deviation
    (start-ups are positive and skewed by the odd slow image pull); constant when `jitter` is 0."""

    mean: float = DEFAULT_STARTUP_S
    jitter: float = DEFAULT_STARTUP_JITTER_S

    def draw(self, rng: random.Random) -> float:
        if self.jitter <= 0 or self.mean <= 0:
            return max(0.0, self.mean)
        sigma2 = math.log(1 + (self.jitter / self.mean) ** 2)
        return rng.lognormvariate(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2))


def pod_engine(spec: EngineSpec) -> Engine:
    """A pod's engine: `spec`'s scheduler and step model, every token time and step kept
    for the reports."""
    return Engine(
        spec.scheduler,
        spec.step.time,
        record_tokens=True,
        record_steps=True,
        decode_time=spec.step.decode,
    )


@dataclass
class PodRun:
    """One pod: its engine, what it was sent, and where it is in its life."""

    name: str
    engine: Engine
    variant: str = ""
    first: float = 0.0  # the variant's per-request cost before the engine (first token)
    last: float = 0.0  # and after the last token
    transfer: KVTransfer | None = None  # P/D: how long its prompts' KV takes to arrive
    created: float = 0.0
    ready_at: float | None = 0.0  # None: not Ready yet
    removing: bool = False  # scaled down: no new requests; goes when the open ones are done
    labels: Mapping[str, str] = field(default_factory=dict)  # its Deployment's pod labels
    open: dict[int, tuple[Request, Any]] = field(default_factory=dict)  # by request id
    deadlines: list[tuple[float, int, Request]] = field(default_factory=list)
    aborted: list[Request] = field(default_factory=list)  # by a deadline, not yet reported

    def __post_init__(self) -> None:
        self.engine.ended = []  # the engine lists the requests it finishes

    def busy(self) -> bool:
        return bool(self.engine.pending)


@dataclass(frozen=True)
class ScaleEvent:
    """A Deployment's `spec.replicas` changed."""

    time: float
    variant: str
    before: int
    after: int
    by: str  # autoscaler | scale-from-zero | hpa | keda


@dataclass
class _Deployment:
    variant: Variant
    spec: EngineSpec
    replicas: int
    serves: bool  # serves the workload's model: its Ready pods are routed to
    pods: list[PodRun] = field(default_factory=list)  # not removed, oldest first
    counter: int = 0
    existing: int = 0  # pods that cost (created, not yet gone)
    since: float = 0.0
    replica_seconds: float = 0.0


class Fleet:
    """Every variant's pods on the virtual clock (see the module docstring)."""

    def __init__(
        self,
        variants: Sequence[Variant],
        specs: Mapping[str, EngineSpec],
        serves: Iterable[str],
        timers: Timers,
        startup: StartupDelay = StartupDelay(),
        seed: int = 0,
    ) -> None:
        serving = set(serves)
        self.timers = timers
        self.startup = startup
        self.rng = random.Random(f"pod-startup-{seed}")
        self.deployments = {
            v.name: _Deployment(v, specs[v.name], v.replicas, v.name in serving) for v in variants
        }
        self.runs: list[PodRun] = []  # Ready or draining pods: those whose engine may be busy
        self.routable: list[str] = []  # Ready pods of serving variants, not being removed
        self.engines: dict[str, Engine] = {}  # the engines of `runs`, by pod name
        self.by_name: dict[str, PodRun] = {}
        self.every: list[PodRun] = []  # every pod ever created (their steps are reported)
        self.events: list[ScaleEvent] = []
        self.on_ready: list[Callable[[PodRun], None]] = []  # told when a pod becomes Ready
        self.pod_counts: list[tuple[float, str, int]] = []  # (time, variant, pods that cost)
        for dep in self.deployments.values():
            for _ in range(dep.replicas):
                self._ready(self._create(dep, 0.0), 0.0)

    @classmethod
    def of_pods(cls, spec: EngineSpec, names: Sequence[str]) -> Fleet:
        """Ready pods named `names`, all running `spec`, none ever scaled (a plain replay)."""
        fleet = cls((), {}, (), Timers())
        for name in names:
            engine = pod_engine(spec)
            run = PodRun(name, engine, first=spec.profile.first_token_s,
                         last=spec.profile.last_token_s)  # fmt: skip
            fleet.runs.append(run)
            fleet.routable.append(name)
            fleet.engines[name] = engine
            fleet.by_name[name] = run
            fleet.every.append(run)
        return fleet

    # ---- what the autoscaler reads -----------------------------------------------------
    def replicas(self, variant: str) -> int:
        return self.deployments[variant].replicas

    def any_at_zero(self) -> bool:
        return any(d.replicas == 0 for d in self.deployments.values())

    def counts(self, variant: str) -> tuple[int, int]:
        """(pods, Ready pods) of a variant, the pods being removed left out."""
        pods = self.deployments[variant].pods
        return len(pods), sum(1 for p in pods if p.ready_at is not None)

    def pods_of(self, variant: str) -> list[PodRun]:
        return list(self.deployments[variant].pods)

    # ---- changes ----------------------------------------------------------------------
    def scale(self, variant: str, replicas: int, now: float, by: str) -> bool:
        """Set a Deployment's replicas; False when already there."""
        dep = self.deployments[variant]
        if replicas == dep.replicas:
            return False
        self.events.append(ScaleEvent(now, variant, dep.replicas, replicas, by))
        dep.replicas = replicas
        while len(dep.pods) < replicas:
            run = self._create(dep, now)
            self.timers.at(now + self.startup.draw(self.rng), functools.partial(self._ready, run))
        while len(dep.pods) > replicas:
            starting = [p for p in dep.pods if p.ready_at is None]
            self._remove(dep, (starting or dep.pods)[-1], now)
        return True

    def drained(self, run: PodRun, now: float) -> None:
        """A removed pod has no request left: it goes."""
        if run.removing and not run.busy() and run.name in self.engines:
            self.runs.remove(run)
            del self.engines[run.name]
            self._count(self.deployments[run.variant], -1, now)

    def replica_seconds(self, end: float) -> dict[str, float]:
        """Pod-seconds per variant from each pod's creation to its end (or `end`)."""
        return {
            name: d.replica_seconds + d.existing * max(0.0, end - d.since)
            for name, d in self.deployments.items()
        }

    def _create(self, dep: _Deployment, now: float) -> PodRun:
        spec = dep.spec
        engine = pod_engine(spec)
        name = f"{dep.variant.name}-{dep.counter}"
        dep.counter += 1
        run = PodRun(
            name,
            engine,
            variant=dep.variant.name,
            first=spec.profile.first_token_s,
            last=spec.profile.last_token_s,
            transfer=spec.transfer,
            created=now,
            ready_at=None,
            labels=dict(dep.variant.deployment.labels) if dep.variant.deployment else {},
        )
        dep.pods.append(run)
        self.by_name[name] = run
        self.every.append(run)
        self._count(dep, 1, now)
        return run

    def _ready(self, run: PodRun, now: float) -> None:
        if run.removing:
            return  # scaled down before it was Ready
        run.ready_at = now
        run.engine.now = now
        self.runs.append(run)
        self.engines[run.name] = run.engine
        if self.deployments[run.variant].serves:
            self.routable.append(run.name)
        for hook in self.on_ready:
            hook(run)

    def _remove(self, dep: _Deployment, run: PodRun, now: float) -> None:
        dep.pods.remove(run)
        run.removing = True
        if run.ready_at is None:
            self._count(dep, -1, now)
            return
        if run.name in self.routable:
            self.routable.remove(run.name)
        self.drained(run, now)

    def _count(self, dep: _Deployment, delta: int, now: float) -> None:
        dep.replica_seconds += dep.existing * (now - dep.since)
        dep.existing += delta
        dep.since = now
        self.pod_counts.append((now, dep.variant.name, dep.existing))


def write_scale_events(path: Path, events: Sequence[ScaleEvent]) -> Path:
    """Every change of a Deployment's replicas, in order, as CSV."""
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["time_s", "variant", "from_replicas", "to_replicas", "by"])
        for e in events:
            out.writerow([f"{e.time:.3f}", e.variant, e.before, e.after, e.by])
    return path


class VirtualCluster:
    """The autoscaler's `Cluster` over the stack file's objects and the fleet's pods."""

    def __init__(
        self,
        fleet: Fleet,
        vas: Sequence[VariantAutoscaling],
        config_maps: Mapping[tuple[str, str], Mapping[str, str]],
        nodes: Sequence[GpuNode],
        now: Callable[[], float],
    ) -> None:
        self.fleet = fleet
        self.vas = {(v.metadata.namespace, v.metadata.name): v for v in vas}
        self.config_maps = dict(config_maps)
        self.nodes = list(nodes)
        self.now = now
        self.scaled_by = "autoscaler"  # who the next `scale` calls are made for

    def _deployment(self, namespace: str, ref: CrossVersionObjectReference) -> Variant | None:
        dep = self.fleet.deployments.get(ref.name)
        if dep is None or dep.variant.namespace != namespace or ref.kind not in ("Deployment", ""):
            return None
        return dep.variant

    async def list_variant_autoscalings(self) -> list[VariantAutoscaling]:
        return [v.model_copy(deep=True) for v in self.vas.values()]

    async def get_workload(
        self, namespace: str, ref: CrossVersionObjectReference
    ) -> Workload | None:
        variant = self._deployment(namespace, ref)
        if variant is None:
            return None
        pods, ready = self.fleet.counts(variant.name)
        dep = variant.deployment
        return Workload(
            namespace=namespace,
            name=variant.name,
            spec_replicas=self.fleet.replicas(variant.name),
            status_replicas=pods,
            ready_replicas=ready,
            template_labels=dict(dep.labels) if dep is not None else {},
            containers=(
                Container(
                    command=SIM_COMMAND,
                    args=variant.args,
                    gpu_requests=dep.gpus_per_replica if dep is not None else 1,
                ),
            ),
        )

    async def patch_status(self, va: VariantAutoscaling, status: Mapping[str, Any]) -> None:
        key = (va.metadata.namespace, va.metadata.name)
        stored = self.vas.get(key)
        if stored is None:
            return
        self.vas[key] = with_status_patch(stored, status)

    async def scale(self, namespace: str, ref: CrossVersionObjectReference, replicas: int) -> bool:
        variant = self._deployment(namespace, ref)
        if variant is None:
            raise LookupError(f"deployment {namespace}/{ref.name} not found")
        return self.fleet.scale(variant.name, replicas, self.now(), self.scaled_by)

    async def pods(self, namespace: str) -> list[PodInfo]:
        return [
            PodInfo(p.name, d.variant.name, p.ready_at)
            for d in self.fleet.deployments.values()
            if d.variant.namespace == namespace
            for p in d.pods
        ]

    async def config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.config_maps.get((namespace, name))

    async def gpu_nodes(self, selector: str = "") -> list[GpuNode]:
        return list(self.nodes)
