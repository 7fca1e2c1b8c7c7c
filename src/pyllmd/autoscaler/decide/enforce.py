"""Scale-to-zero / minimum replicas and the no-decision fallbacks (spec §8.1, §6.2, §3.5-3.6).

After a model's analysis: with scale-to-zero enabled and no successful request in
the retention window, every variant goes to 0; with it disabled, a model whose
targets sum to 0 keeps one replica on its cheapest variant. The caller gathers
the evidence of recent use (`Activity`) and passes it in with `now`. Also here:
what a VA publishes when it got no decision (`carry_over`) and when collection
for its model failed (`safety_net`).

Beyond upstream, which zeroes as soon as `increase(vllm:request_success_total[R])`
sums to 0, a model is zeroed only when two guards agree as well (`zero_hold`):
- no successful request was first seen by Prometheus within R (pyllmd's
  `model_recent_success` query, which also sees counters born above 0 and
  increases just at the window's edge, whatever the scrape interval);
- the newest Ready pod of any variant of the model has been Ready for at least R,
  read from the pods themselves, so a restart or a leader change forgets nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pyllmd.autoscaler.decide.model import (
    DEFAULT_VARIANT_COST,
    Decision,
    ScaleToZeroPolicy,
    VariantState,
    action_for,
)
from pyllmd.autoscaler.decide.optimize import NAME as COST_AWARE

log = logging.getLogger(__name__)

AnalyzerVersion = Literal["v1", "v2"]


@dataclass(frozen=True)
class Activity:
    """Evidence of a model's recent use, gathered by the caller (None = unknown)."""

    request_count: float | None
    """Upstream's `model_request_count`: successes over the retention window."""
    recent_success: bool | None = False
    """pyllmd's `model_recent_success`: a success first seen within the window."""
    newest_ready: float | None = None
    """Wall seconds when the newest Ready pod of the model's variants became Ready."""


def zero_hold(policy: ScaleToZeroPolicy, activity: Activity, now: float) -> str | None:
    """Why the model must not go to zero at `now` (wall seconds); None when it may."""
    count = activity.request_count
    if count is None:
        return "request count unknown"
    if count > 0:
        return f"{count:g} successful requests in the retention window"
    if activity.recent_success is None:
        return "recent successes unknown"
    if activity.recent_success:
        return (
            f"a successful request was first seen less than "
            f"{policy.retention_seconds:g}s ago (retention period)"
        )
    newest = activity.newest_ready
    if newest is not None and now - newest < policy.retention_seconds:
        return (
            f"its newest pod has been ready for {max(now - newest, 0.0):.0f}s, "
            f"less than the {policy.retention_seconds:g}s retention period"
        )
    return None


def _retarget(
    d: Decision, target: int, analyzer: AnalyzerVersion, optimizer: str = COST_AWARE
) -> Decision:
    """`d` with a new target and the reason text its analyzer gives an enforced target."""
    if target == d.target_replicas:
        return d
    action = action_for(d.current_replicas, target)
    if analyzer == "v2":
        reason = f"V2 {action} (optimizer: {optimizer}, enforced)"
    else:
        reason = f"saturation-only mode: {action}"
    return d._replace(target_replicas=target, reason=reason)


def _cheapest(decisions: Sequence[Decision], analyzer: AnalyzerVersion) -> int:
    """Index of the cheapest decision; ties → smallest variant name."""

    def cost(d: Decision) -> float:
        # V2 costs of 0 mean "unknown" upstream and count as the default.
        return DEFAULT_VARIANT_COST if analyzer == "v2" and d.cost <= 0 else d.cost

    return min(range(len(decisions)), key=lambda i: (cost(decisions[i]), decisions[i].variant))


def enforce(
    decisions: Sequence[Decision],
    policy: ScaleToZeroPolicy,
    activity: Activity,
    now: float,
    analyzer: AnalyzerVersion = "v1",
    optimizer: str = COST_AWARE,
) -> list[Decision]:
    """Apply scale-to-zero (enabled) or the one-replica minimum (disabled) to one model."""
    out = list(decisions)
    if not out:
        return out
    if policy.enabled:
        hold = zero_hold(policy, activity, now)
        if hold is None:
            log.info("no requests in retention window, scaling model %s to zero", out[0].model_id)
            return [_retarget(d, 0, analyzer, optimizer) for d in out]
        if activity.request_count == 0 and any(d.target_replicas > 0 for d in out):
            log.info("not scaling model %s to zero yet: %s", out[0].model_id, hold)
        return out
    if sum(d.target_replicas for d in out) > 0:
        return out
    i = _cheapest(out, analyzer)
    out[i] = _retarget(out[i], 1, analyzer, optimizer)
    return out


def carry_over(variant: VariantState) -> Decision | None:
    """What a VA without a decision this cycle publishes: its previous target.

    The previous `desiredOptimizedAlloc.numReplicas` if > 0 (else the current
    replicas) with the previous accelerator; None when there is no previous
    accelerator (the VA then reports `MetricsAvailable=False` and gets no gauges).
    """
    if not variant.previous_accelerator:
        return None
    target = variant.desired_replicas if variant.desired_replicas > 0 else variant.current_replicas
    return Decision(
        variant=variant.name,
        namespace=variant.namespace,
        model_id=variant.model_id,
        accelerator=variant.previous_accelerator,
        current_replicas=variant.current_replicas,
        target_replicas=target,
        reason="no scaling decision (previous target kept)",
        cost=variant.cost,
        gpus_per_replica=variant.gpus_per_replica,
    )


def safety_net(variants: Sequence[VariantState]) -> list[Decision]:
    """Gauge values for a model whose collection or analysis failed (status untouched).

    Desired = previous desired if > 0, else current; accelerator from the previous
    status, else the VA label; VAs with neither are skipped.
    """
    out: list[Decision] = []
    for v in variants:
        accelerator = v.previous_accelerator or v.accelerator
        if not accelerator:
            continue
        target = v.desired_replicas if v.desired_replicas > 0 else v.current_replicas
        out.append(
            Decision(
                variant=v.name,
                namespace=v.namespace,
                model_id=v.model_id,
                accelerator=accelerator,
                current_replicas=v.current_replicas,
                target_replicas=target,
                reason="safety net: metrics unavailable, previous target kept",
                cost=v.cost,
                gpus_per_replica=v.gpus_per_replica,
            )
        )
    return out
