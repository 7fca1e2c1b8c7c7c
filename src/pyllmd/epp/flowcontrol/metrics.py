"""Flow-control metrics (spec §8), added to the EPP's registry so `/metrics` shows them.

Names, label names and buckets are upstream's: the autoscaler's scale-from-zero
reads `inference_extension_flow_control_queue_size{target_model_name}`
(`pyllmd.autoscaler.collect.epp`), as it reads the Go EPP's.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyllmd.core.metricset import Family, Registry

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
