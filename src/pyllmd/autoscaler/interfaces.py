"""Contracts between the autoscaler's pieces (upstream `internal/interfaces`, as Protocols).

The controller loop composes: a `Cluster` (where VariantAutoscalings and their
targets live: Kubernetes or the local process supervisor), a `MetricsSource`
(Prometheus), an `Analyzer` (pure, chosen by the saturation config), and an
`Actuator` (publishes gauges and, optionally, sets replicas).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyllmd.autoscaler.api import CrossVersionObjectReference, VariantAutoscaling
from pyllmd.autoscaler.model import Decision, ModelGroup, ReplicaMetrics, SaturationConfig


class CollectionError(Exception):
    """Metrics of a model group could not be collected (the safety net applies)."""


class MetricsSource(Protocol):
    """Reads the metrics the analyzers need (Prometheus in production)."""

    async def replica_metrics(self, group: ModelGroup) -> tuple[ReplicaMetrics, ...]:
        """Per-pod metrics of the group's variants; raises CollectionError."""
        ...

    async def request_count(
        self, namespace: str, model_id: str, retention_seconds: float
    ) -> float | None:
        """Successful requests over the retention window; None when unknown."""
        ...


class Analyzer(Protocol):
    """Turns one model group's metrics into per-variant decisions; pure."""

    version: str
    """`v1` or `v2`: which saturation model (enforcement and the limiter depend on it)."""

    def analyze(self, group: ModelGroup, config: SaturationConfig, now: float) -> list[Decision]:
        """Decisions for the variants of `group` that get one this cycle.

        `now` (wall seconds, from the caller's Clock) stamps whatever the analyzer
        learns, so that its state can expire (`V2State.evict`).
        """
        ...


class Actuator(Protocol):
    """Makes decisions visible: gauges for HPA/KEDA, or replica changes."""

    async def apply(self, decisions: Sequence[Decision]) -> None:
        """Publish or enact `decisions`."""
        ...


@dataclass(frozen=True)
class Container:
    """The parts of a pod-template container the autoscaler reads."""

    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    gpu_requests: int = 0  # nvidia.com/gpu + amd.com/gpu + intel.com/gpu requests


@dataclass(frozen=True)
class Workload:
    """A scale target (a Deployment in practice) as the engine sees it (spec §3.2)."""

    namespace: str
    name: str
    spec_replicas: int | None
    status_replicas: int = 0
    ready_replicas: int = 0
    template_labels: Mapping[str, str] = field(default_factory=dict)
    containers: tuple[Container, ...] = ()
    deleting: bool = False

    @property
    def current_replicas(self) -> int:
        """`status.replicas`, or `spec.replicas` while the status still says 0."""
        if self.status_replicas == 0 and self.spec_replicas is not None:
            return self.spec_replicas
        return self.status_replicas

    @property
    def gpus_per_replica(self) -> int:
        """GPU requests of the pod template; 0 counts as 1 (a loop: read per VA per cycle)."""
        total = 0
        for c in self.containers:
            total += c.gpu_requests
        return total or 1


@dataclass(frozen=True)
class PodInfo:
    """A pod as the engine sees it: its owner and since when it has been Ready."""

    name: str
    workload: str  # the owning workload's name (Pod → ReplicaSet → Deployment)
    ready_since: float | None = (
        None  # wall seconds of its last transition to Ready; None: not Ready
    )


@dataclass(frozen=True)
class GpuNode:
    """A node's GPU inventory entry (for the limiter)."""

    name: str
    vendor: str  # "nvidia.com" | "amd.com" | "intel.com"
    product: str  # the `<vendor>/gpu.product` label
    count: int  # allocatable `<vendor>/gpu`


class Cluster(Protocol):
    """Where VariantAutoscalings and their targets live: Kubernetes, or local processes."""

    async def list_variant_autoscalings(self) -> list[VariantAutoscaling]:
        """Every VA (all namespaces, or the watched one)."""
        ...

    async def get_workload(
        self, namespace: str, ref: CrossVersionObjectReference
    ) -> Workload | None:
        """The VA's scale target, or None when it does not exist."""
        ...

    async def patch_status(self, va: VariantAutoscaling, status: Mapping[str, Any]) -> None:
        """JSON-merge-patch the VA's status subresource."""
        ...

    async def scale(self, namespace: str, ref: CrossVersionObjectReference, replicas: int) -> bool:
        """Set replicas through the target's scale subresource; False if already there."""
        ...

    async def pods(self, namespace: str) -> list[PodInfo]:
        """The pods of `namespace` owned by a workload, with their owner and Ready time."""
        ...

    async def config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        """A ConfigMap's data, or None when it does not exist."""
        ...

    async def gpu_nodes(self, selector: str = "") -> list[GpuNode]:
        """GPU inventory of the (selected) nodes."""
        ...
