"""The `cost-aware` optimizer (spec §5.2, §6.1): V2 capacity signals → replica targets.

Starting from every variant's current replicas: capacity to add goes to the variant
with the lowest cost per token of capacity (as many replicas as needed, rounded up);
spare capacity is taken from the most expensive variants first (whole replicas that
fit in the spare), keeping one replica on the cheapest variant when it would be the
last one serving the model. Pure; the analysis comes from
`pyllmd.autoscaler.decide.analyze.saturation_v2.analyze_capacity`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pyllmd.autoscaler.decide.model import SCALE_DOWN, SCALE_UP, Decision, action_for

if TYPE_CHECKING:
    from pyllmd.autoscaler.decide.analyze.saturation_v2 import CapacityAnalysis, VariantCapacity

NAME = "cost-aware"


def _cost_efficiency(vc: VariantCapacity) -> float:
    """Cost per token of per-replica capacity (infinite without capacity)."""
    if vc.per_replica_capacity <= 0:
        return math.inf
    return vc.cost / vc.per_replica_capacity


def scale_up(variants: Sequence[VariantCapacity], required: float, targets: dict[str, int]) -> None:
    """Add replicas to the most cost-efficient variants until `required` is covered."""
    remaining = required
    # sorted() is stable: equal efficiencies keep the variants' list order.
    for vc in sorted(variants, key=_cost_efficiency):
        if remaining <= 0:
            break
        if vc.per_replica_capacity <= 0:
            continue
        # at least one replica while any capacity is required (a denormal ratio rounds to 0)
        added = max(1, math.ceil(remaining / vc.per_replica_capacity))
        targets[vc.variant] += added
        remaining -= added * vc.per_replica_capacity


def scale_down(variants: Sequence[VariantCapacity], spare: float, targets: dict[str, int]) -> None:
    """Remove whole replicas, most expensive variant first, within `spare`."""
    if not variants:
        return
    cheapest = min(variants, key=lambda vc: vc.cost).variant
    remaining = spare
    # Among equal costs the protected cheapest variant comes last, so its one-replica floor
    # is judged after the others have been reduced (upstream's order there is unspecified
    # and can empty the model).
    for vc in sorted(variants, key=lambda vc: (-vc.cost, vc.variant == cheapest)):
        if remaining <= 0:
            break
        if vc.per_replica_capacity <= 0:
            continue
        current = targets[vc.variant]
        floor = 0
        if vc.variant == cheapest and not any(
            t > 0 for name, t in targets.items() if name != cheapest
        ):
            floor = 1
        removable = current - floor
        removed = min(math.floor(remaining / vc.per_replica_capacity), removable)
        if removed <= 0:
            continue
        targets[vc.variant] = current - removed
        remaining -= removed * vc.per_replica_capacity


def reason_for(action: str, analysis: CapacityAnalysis) -> str:
    """The V2 decision reason for `action`."""
    if action == SCALE_UP:
        return f"V2 scale-up (optimizer: {NAME}, required: {analysis.required_capacity:.0f})"
    if action == SCALE_DOWN:
        return f"V2 scale-down (optimizer: {NAME}, spare: {analysis.spare_capacity:.0f})"
    return "V2 steady state"


def cost_aware(analysis: CapacityAnalysis) -> list[Decision]:
    """One decision per variant of the analysed model."""
    targets = {vc.variant: vc.current_replicas for vc in analysis.variants}
    if analysis.required_capacity > 0:
        scale_up(analysis.variants, analysis.required_capacity, targets)
    elif analysis.spare_capacity > 0:
        scale_down(analysis.variants, analysis.spare_capacity, targets)
    reasons: dict[str, str] = {}  # action → reason: the same for every variant of the model
    decisions: list[Decision] = []
    for vc in analysis.variants:
        target = targets[vc.variant]
        action = action_for(vc.current_replicas, target)
        reason = reasons.get(action)
        if reason is None:
            reason = reasons[action] = reason_for(action, analysis)
        decisions.append(
            Decision(
                variant=vc.variant,
                namespace=analysis.namespace,
                model_id=analysis.model_id,
                accelerator=vc.accelerator,
                current_replicas=vc.current_replicas,
                target_replicas=target,
                reason=reason,
                cost=vc.cost,
                gpus_per_replica=vc.gpus_per_replica,
            )
        )
    return decisions
