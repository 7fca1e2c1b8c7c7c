"""Contracts between the autoscaler's pieces (upstream `internal/interfaces`, as Protocols).

The controller loop composes: a `Cluster` (where VariantAutoscalings and their
targets live: Kubernetes or the local process supervisor), a `MetricsSource`
(Prometheus), an `Analyzer` (pure, chosen by the saturation config), and an
`Actuator` (publishes gauges and, optionally, sets replicas).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

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

    def analyze(self, group: ModelGroup, config: SaturationConfig) -> list[Decision]:
        """Decisions for the variants of `group` that get one this cycle."""
        ...


class Actuator(Protocol):
    """Makes decisions visible: gauges for HPA/KEDA, or replica changes."""

    async def apply(self, decisions: Sequence[Decision]) -> None:
        """Publish or enact `decisions`."""
        ...
