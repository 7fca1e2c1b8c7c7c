"""A HorizontalPodAutoscaler (autoscaling/v2) on the virtual clock, reading one External
metric with an `AverageValue` target: how a cluster turns `wva_desired_replicas` into
Deployment replicas.

Kubernetes' controller is Go inside kube-controller-manager, so it is restated here, pure:
`sync` is one pass of its loop (every `--horizontal-pod-autoscaler-sync-period`, 15 s):
replicas from the metric with the 10 % tolerance, the stabilization windows over past
recommendations, then the scaling policies' limits over the scale events of their periods, as
`podautoscaler/horizontal.go` does. `HPAScaleToZero` is assumed on: `minReplicas: 0` is
allowed, and a target at 0 replicas with `minReplicas` above 0 is left alone (scaling disabled).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

_SUFFIX = {
    "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}  # fmt: skip
_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(m|k|M|G|T|P|E|[KMGTPE]i)?")

SYNC_PERIOD_S = 15.0  # --horizontal-pod-autoscaler-sync-period
TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance


@dataclass(frozen=True)
class ScalingPolicy:
    type: Literal["Pods", "Percent"]
    value: int
    period_seconds: int


@dataclass(frozen=True)
class ScalingRules:
    stabilization_window_seconds: int
    select_policy: Literal["Max", "Min", "Disabled"]
    policies: tuple[ScalingPolicy, ...]


# autoscaling/v2's defaults when `behavior` (or one of its sides) is not given
DEFAULT_SCALE_UP = ScalingRules(
    0, "Max", (ScalingPolicy("Percent", 100, 15), ScalingPolicy("Pods", 4, 15))
)
DEFAULT_SCALE_DOWN = ScalingRules(300, "Max", (ScalingPolicy("Percent", 100, 15),))


@dataclass(frozen=True)
class HPASpec:
    min_replicas: int = 1
    max_replicas: int = 10
    target_average_value: float = 1.0
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN
    tolerance: float = TOLERANCE


@dataclass(frozen=True)
class HPAState:
    """What the controller remembers between passes (all times in seconds)."""

    recommendations: tuple[tuple[float, int], ...] = ()
    up_events: tuple[tuple[float, int], ...] = ()
    down_events: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True)
class HPAResult:
    replicas: int  # what the Deployment's spec.replicas becomes
    state: HPAState = field(default_factory=HPAState)
    reason: str = ""


def sync(
    spec: HPASpec, state: HPAState, now: float, current: int, metric: float | None
) -> HPAResult:
    """One pass: the replicas to set, given the Deployment's `current` replicas and the sum of
    the External metric's values (None: the metric is unavailable, nothing changes)."""
    if current == 0 and spec.min_replicas != 0:
        return HPAResult(0, state, "scaling disabled: the target has 0 replicas")
    if current > spec.max_replicas:
        desired, reason = spec.max_replicas, "above maxReplicas"
    elif current < spec.min_replicas:
        desired, reason = spec.min_replicas, "below minReplicas"
    elif metric is None:
        return HPAResult(current, state, "metric unavailable")
    else:
        desired = metric_replicas(spec, current, metric)
        desired, state = _stabilize(spec, state, now, current, desired)
        desired, reason = _limit_rate(spec, state, now, current, desired)
    if desired != current:
        change = (now, abs(desired - current))
        if desired > current:
            state = replace(
                state, up_events=_recent(state.up_events + (change,), now, spec.scale_up)
            )
        else:
            state = replace(
                state, down_events=_recent(state.down_events + (change,), now, spec.scale_down)
            )
    return HPAResult(desired, state, reason)


def metric_replicas(spec: HPASpec, current: int, metric: float) -> int:
    """Replicas for an External metric with an AverageValue target (in milli-units, with the
    tolerance around the current replicas), before behaviour."""
    usage = int(metric * 1000)
    target = int(spec.target_average_value * 1000)
    if current != 0:
        ratio = usage / (target * current)
        if abs(1.0 - ratio) <= spec.tolerance:
            return current
    return math.ceil(usage / target)


def _stabilize(
    spec: HPASpec, state: HPAState, now: float, current: int, desired: int
) -> tuple[int, HPAState]:
    up_cut = now - spec.scale_up.stabilization_window_seconds
    down_cut = now - spec.scale_down.stabilization_window_seconds
    up = down = desired
    recs = list(state.recommendations)
    old = -1
    for i, (t, rec) in enumerate(recs):
        if t > up_cut:
            up = min(up, rec)
        if t > down_cut:
            down = max(down, rec)
        if t < up_cut and t < down_cut:
            old = i
    if old >= 0:
        recs[old] = (now, desired)
    else:
        recs.append((now, desired))
    out = max(current, up)
    out = min(out, down)
    return out, replace(state, recommendations=tuple(recs))


def _changed(events: tuple[tuple[float, int], ...], now: float, period: int) -> int:
    return sum(change for t, change in events if t > now - period)


def _limit_rate(
    spec: HPASpec, state: HPAState, now: float, current: int, desired: int
) -> tuple[int, str]:
    if desired > current:
        limit = _policy_limit(spec.scale_up, state, now, current, up=True)
        limit = max(limit, current)
        ceiling = min(spec.max_replicas, limit)
        return (ceiling, "ScaleUpLimit") if desired > ceiling else (desired, "")
    if desired < current:
        limit = _policy_limit(spec.scale_down, state, now, current, up=False)
        limit = min(limit, current)
        floor = max(spec.min_replicas, limit)
        return (floor, "ScaleDownLimit") if desired < floor else (desired, "")
    return desired, ""


def _period_start(state: HPAState, now: float, current: int, period: int) -> int:
    return (
        current - _changed(state.up_events, now, period) + _changed(state.down_events, now, period)
    )


def _policy_limit(rules: ScalingRules, state: HPAState, now: float, current: int, up: bool) -> int:
    """The furthest the policies let replicas go from where each policy's period started:
    `Max` picks the policy that allows the largest change, `Min` the smallest."""
    if rules.select_policy == "Disabled":
        return current
    proposals = []
    for p in rules.policies:
        start = _period_start(state, now, current, p.period_seconds)
        if p.type == "Pods":
            proposals.append(start + p.value if up else start - p.value)
        elif up:
            proposals.append(math.ceil(start * (1 + p.value / 100)))
        else:
            proposals.append(int(start * (1 - p.value / 100)))
    largest_change = rules.select_policy == "Max"
    return max(proposals) if largest_change == up else min(proposals)


def _recent(
    events: tuple[tuple[float, int], ...], now: float, rules: ScalingRules
) -> tuple[tuple[float, int], ...]:
    longest = max((p.period_seconds for p in rules.policies), default=0)
    return tuple(e for e in events if e[0] > now - longest)


# ---- from a manifest -----------------------------------------------------------------------
def parse_quantity(text: str) -> float | None:
    """A Kubernetes quantity (`1`, `500m`, `2k`, `1Gi`, `1e3`) as a number, None if it is not
    one. (lightkube has a parser, but importing it loads its HTTP client.)"""
    m = _QUANTITY.fullmatch(text.strip())
    if m is None:
        return None
    return float(m.group(1)) * _SUFFIX[m.group(2) or ""]


def rules_from_manifest(
    raw: Mapping[str, Any] | None, default: ScalingRules, where: str
) -> ScalingRules:
    if raw is None:
        return default
    policies = (
        tuple(
            ScalingPolicy(p["type"], int(p["value"]), int(p["periodSeconds"]))
            for p in raw.get("policies") or ()
        )
        or default.policies
    )
    for p in policies:
        if p.type not in ("Pods", "Percent") or p.value <= 0 or p.period_seconds <= 0:
            raise ValueError(f"{where}.policies: type Pods or Percent, value and periodSeconds > 0")
    select = raw.get("selectPolicy", "Max")
    if select not in ("Max", "Min", "Disabled"):
        raise ValueError(f"{where}.selectPolicy: Max, Min or Disabled, got {select!r}")
    window = raw.get("stabilizationWindowSeconds", default.stabilization_window_seconds)
    return ScalingRules(int(window), select, policies)


def spec_from_manifest(obj: Mapping[str, Any]) -> HPASpec:
    """An autoscaling/v2 HorizontalPodAutoscaler's spec (its first External AverageValue
    metric); ValueError naming the field otherwise."""
    spec = obj.get("spec") or {}
    metrics = [m for m in spec.get("metrics") or () if m.get("type") == "External"]
    if not metrics:
        raise ValueError("spec.metrics: an External metric (wva_desired_replicas) is needed")
    target = metrics[0]["external"].get("target") or {}
    if target.get("type") != "AverageValue":
        raise ValueError("spec.metrics[0].external.target.type: only AverageValue is modelled")
    behavior = spec.get("behavior") or {}
    average = parse_quantity(str(target.get("averageValue", "1")))
    if average is None or average <= 0:
        raise ValueError("spec.metrics[0].external.target.averageValue: a quantity above 0")
    return HPASpec(
        min_replicas=int(spec.get("minReplicas", 1)),
        max_replicas=int(spec["maxReplicas"]),
        target_average_value=float(average),
        scale_up=rules_from_manifest(
            behavior.get("scaleUp"), DEFAULT_SCALE_UP, "spec.behavior.scaleUp"
        ),
        scale_down=rules_from_manifest(
            behavior.get("scaleDown"), DEFAULT_SCALE_DOWN, "spec.behavior.scaleDown"
        ),
    )
