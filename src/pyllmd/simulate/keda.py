"""A KEDA ScaledObject with one `prometheus` trigger on the virtual clock.

KEDA is Go; its two loops are restated here, pure. Its operator polls the trigger every
`pollingInterval`: a value above `activationThreshold` makes the target active. An inactive
target above `minReplicaCount` drops to `minReplicaCount` once `cooldownPeriod` has passed since
it was last active (and since `initialCooldownPeriod` after creation); an active target at 0
goes to max(`minReplicaCount`, 1). Between 1 and `maxReplicaCount` the HPA that KEDA creates
(an External metric with the trigger's `threshold` as AverageValue, its own behaviour or the
defaults) scales it: `hpa_spec` builds that HPA for `simulate/hpa.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyllmd.simulate.hpa import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, HPASpec, rules_from_manifest


@dataclass(frozen=True)
class ScaledObjectSpec:
    polling_interval_s: float = 30.0
    cooldown_period_s: float = 300.0
    initial_cooldown_period_s: float = 0.0
    min_replicas: int = 0
    max_replicas: int = 100
    threshold: float = 1.0
    activation_threshold: float = 0.0
    hpa: HPASpec | None = None  # the HPA KEDA creates (built by spec_from_manifest)


@dataclass(frozen=True)
class KedaState:
    created: float = 0.0
    last_active: float | None = None


def poll(
    spec: ScaledObjectSpec, state: KedaState, now: float, current: int, value: float | None
) -> tuple[int, KedaState]:
    """One poll of the trigger (`value` None: the query failed, nothing changes): the replicas
    KEDA sets itself (activation and scale to zero); the HPA does the rest."""
    if value is None:
        return current, state
    if value > spec.activation_threshold:
        state = KedaState(state.created, now)
        if current == 0:
            return max(spec.min_replicas, 1), state
        return current, state
    if current > spec.min_replicas:
        since = state.last_active if state.last_active is not None else state.created
        cooled = now - since > spec.cooldown_period_s  # KEDA: last active + cooldown before now
        initial = now - state.created > spec.initial_cooldown_period_s
        if cooled and initial:
            return spec.min_replicas, state
    return current, state


def spec_from_manifest(obj: Mapping[str, Any]) -> ScaledObjectSpec:
    """A keda.sh/v1alpha1 ScaledObject with a `prometheus` trigger; ValueError naming the field
    otherwise."""
    spec = obj.get("spec") or {}
    triggers = [t for t in spec.get("triggers") or () if t.get("type") == "prometheus"]
    if not triggers:
        raise ValueError("spec.triggers: a prometheus trigger (wva_desired_replicas) is needed")
    meta = triggers[0].get("metadata") or {}
    if "threshold" not in meta:
        raise ValueError("spec.triggers[0].metadata.threshold: required")
    min_r = int(spec.get("minReplicaCount", 0))
    max_r = int(spec.get("maxReplicaCount", 100))
    threshold = float(meta["threshold"])
    behavior = ((spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}).get(
        "behavior"
    ) or {}
    where = "spec.advanced.horizontalPodAutoscalerConfig.behavior"
    hpa = HPASpec(
        min_replicas=max(min_r, 1),
        max_replicas=max_r,
        target_average_value=threshold,
        scale_up=rules_from_manifest(behavior.get("scaleUp"), DEFAULT_SCALE_UP, f"{where}.scaleUp"),
        scale_down=rules_from_manifest(
            behavior.get("scaleDown"), DEFAULT_SCALE_DOWN, f"{where}.scaleDown"
        ),
    )
    return ScaledObjectSpec(
        polling_interval_s=float(spec.get("pollingInterval", 30)),
        cooldown_period_s=float(spec.get("cooldownPeriod", 300)),
        initial_cooldown_period_s=float(spec.get("initialCooldownPeriod", 0)),
        min_replicas=min_r,
        max_replicas=max_r,
        threshold=threshold,
        activation_threshold=float(meta.get("activationThreshold", 0)),
        hpa=hpa,
    )
