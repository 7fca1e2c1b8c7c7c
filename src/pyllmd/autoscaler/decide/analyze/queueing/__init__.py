"""Queueing-model / SLO analyzer (spec §5.3): upstream's earlier "model-based" path.

Library only, as upstream: no controller or engine path calls it. It offers
- `model`: one replica as a state-dependent M/M/1/K queue with the α/β/γ
  iteration-time model, giving throughput, wait, TTFT, ITL and utilisation;
- `sizing`: the highest per-replica rate meeting TTFT/ITL/TPS targets, replicas
  for a load, and the accelerator transition penalty;
- `serviceclass`: service classes from the `service-classes-config` ConfigMap;
- `tuner`: an extended Kalman filter that learns α/β/γ from measured TTFT/ITL.
"""

from __future__ import annotations

from pyllmd.autoscaler.decide.analyze.queueing.model import (
    MAX_QUEUE_TO_BATCH_RATIO,
    QueueMetrics,
    QueueModel,
    RequestSize,
    ServiceParams,
    stationary,
)
from pyllmd.autoscaler.decide.analyze.queueing.serviceclass import (
    DEFAULT_CLASS_NAME,
    ModelSlo,
    ServiceClass,
    ServiceClasses,
    service_class,
    service_classes,
)
from pyllmd.autoscaler.decide.analyze.queueing.sizing import (
    ACCEL_PENALTY_FACTOR,
    SLO_MARGIN,
    SLO_PERCENTILE,
    InfeasibleTarget,
    Placement,
    RateLimits,
    Sizing,
    Targets,
    max_rate,
    replicas_needed,
    size,
    transition_penalty,
)
from pyllmd.autoscaler.decide.analyze.queueing.tuner import (
    Environment,
    FilterState,
    TunerConfig,
    TuneResult,
    bounds_from_factors,
    initial_state,
    tune,
)

__all__ = [
    "ACCEL_PENALTY_FACTOR",
    "DEFAULT_CLASS_NAME",
    "MAX_QUEUE_TO_BATCH_RATIO",
    "SLO_MARGIN",
    "SLO_PERCENTILE",
    "Environment",
    "FilterState",
    "InfeasibleTarget",
    "ModelSlo",
    "Placement",
    "QueueMetrics",
    "QueueModel",
    "RateLimits",
    "RequestSize",
    "ServiceClass",
    "ServiceClasses",
    "ServiceParams",
    "Sizing",
    "Targets",
    "TuneResult",
    "TunerConfig",
    "bounds_from_factors",
    "initial_state",
    "max_rate",
    "replicas_needed",
    "service_class",
    "service_classes",
    "size",
    "stationary",
    "transition_penalty",
    "tune",
]
