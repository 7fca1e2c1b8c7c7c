"""The collector contract: what the saturation loop reads of the metrics, and the result type.

One Protocol, `MetricsCollector`, for every metrics backend (Prometheus in
production and in the local stack: `prometheus.PrometheusMetricsSource`; fakes
in tests). A collection says whether its replica metrics can be trusted
(`ok` / `missing` / `stale` / `error`), which becomes the VA's
`MetricsAvailable` condition reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from pyllmd.autoscaler.decide.model import ModelGroup, ReplicaMetrics

CollectionStatus = Literal["ok", "missing", "stale", "error"]
CONDITION_REASONS: Mapping[CollectionStatus, str] = {
    "ok": "MetricsFound",
    "missing": "MetricsMissing",
    "stale": "MetricsStale",
    "error": "PrometheusError",
}
"""`MetricsAvailable` condition reason for each collection status."""


class CollectionError(Exception):
    """Metrics of a model group could not be collected (the safety net applies)."""


@dataclass(frozen=True)
class CollectionResult:
    """Replica metrics of one model group, and whether they can be trusted."""

    replicas: tuple[ReplicaMetrics, ...]
    status: CollectionStatus
    detail: str = ""

    @property
    def reason(self) -> str:
        """The `MetricsAvailable` reason matching `status`."""
        return CONDITION_REASONS[self.status]


class MetricsCollector(Protocol):
    """Reads the metrics the saturation loop needs for one model group."""

    async def collect(
        self, group: ModelGroup, pod_variants: Mapping[str, str] | None = None
    ) -> CollectionResult:
        """Replica metrics of a group, classified ok / missing / stale / error.

        `pod_variants` maps pod name → VA name (pods of other workloads are ignored).
        """
        ...

    async def request_count(
        self, namespace: str, model_id: str, retention_seconds: float
    ) -> float | None:
        """Successful requests over the retention window; None when unknown."""
        ...

    async def recent_success(
        self, namespace: str, model_id: str, retention_seconds: float
    ) -> bool | None:
        """Whether a success was first seen within the retention window; None when unknown."""
        ...

    async def scheduler_queue(self, model_id: str) -> tuple[float, float]:
        """EPP flow-control queue (size, bytes) of a model."""
        ...
