"""`queue-step`: an autoscaler analyzer that moves each variant one replica at a time by its
waiting queue.

For each variant with metrics, with `q` the mean waiting-queue length over its replicas and
`queueLengthThreshold` from the saturation ConfigMap:

- `q > queueLengthThreshold` -> one replica more;
- `q == 0` and more than one replica -> one replica fewer;
- otherwise unchanged.
"""

from __future__ import annotations

from pyllmd.autoscaler.decide.model import Decision, ModelGroup, SaturationConfig

NAME = "queue-step"


class QueueStepAnalyzer:
    """pyllmd calls `analyze` once per model group per cycle; it must not do I/O."""

    version = "v1"  # enforcement and the limiter treat it as a V1-style analyzer

    def analyze(self, group: ModelGroup, config: SaturationConfig, now: float) -> list[Decision]:
        """One decision per variant that has replicas with metrics."""
        decisions: list[Decision] = []
        for v in group.variants:
            queues = [r.queue_length for r in group.replicas if r.variant == v.name]
            if not queues:
                continue
            mean = sum(queues) / len(queues)
            target = v.current_replicas
            if mean > config.queue_length_threshold:
                target += 1
            elif mean == 0 and target > 1:
                target -= 1
            decisions.append(
                Decision(
                    variant=v.name,
                    namespace=v.namespace,
                    model_id=v.model_id,
                    accelerator=v.accelerator,
                    current_replicas=v.current_replicas,
                    target_replicas=target,
                    reason=f"{NAME}: mean queue {mean:g}",
                    cost=v.cost,
                    gpus_per_replica=v.gpus_per_replica,
                )
            )
        return decisions


def make(state: object | None) -> QueueStepAnalyzer:
    """The entry point's value: called with the process's V2 state (unused here)."""
    return QueueStepAnalyzer()
