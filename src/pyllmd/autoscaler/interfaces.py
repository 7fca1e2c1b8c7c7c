"""The shells' contracts (upstream `internal/interfaces`, as Protocols).

The loops compose: a `Cluster` (where VariantAutoscalings and their targets
live: Kubernetes or the local process supervisor), a `collect.collector.MetricsCollector`
(Prometheus), an analyzer (`decide.analyze.Analyzer`, pure, chosen by the
saturation config), and an `Actuator` (enacts the decisions, optionally). The
plain data they exchange (`Workload`, `PodInfo`, `GpuNode`, ...) is in
`decide/model.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pyllmd.autoscaler.decide.api import CrossVersionObjectReference, VariantAutoscaling
from pyllmd.autoscaler.decide.model import Decision, GpuNode, PodInfo, Workload


class Actuator(Protocol):
    """Makes decisions visible: gauges for HPA/KEDA, or replica changes."""

    async def apply(self, decisions: Sequence[Decision]) -> None:
        """Publish or enact `decisions`."""
        ...


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
