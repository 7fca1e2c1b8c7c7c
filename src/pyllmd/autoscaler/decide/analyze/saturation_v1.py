"""Saturation analyzer V1 (spec §5.1): spare KV / queue headroom, one replica per cycle.

A replica is saturated when its KV usage or waiting queue reaches the threshold.
The spare headroom of the non-saturated replicas, pooled over all variants of a
model, decides: below a trigger → add one replica to the cheapest variant without
pending pods; enough headroom left after removing one replica → remove one from
the most expensive variant above one replica; otherwise nothing. While any
variant of the model is in transition (a previous target not reached yet, or
pods without metrics) no step is taken.

Arithmetic follows upstream's float64 order of operations, so values exactly at
a trigger round the same way (spec acceptance check 19).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyllmd.autoscaler.decide.model import (
    Decision,
    ModelGroup,
    ReplicaMetrics,
    SaturationConfig,
    VariantState,
    action_for,
)

log = logging.getLogger(__name__)

NAME = ""
"""`analyzerName` value that selects this analyzer (the default)."""

MIN_NON_SATURATED_FOR_SCALE_DOWN = 2
"""Scale-down needs at least this many non-saturated replicas to spread the load over."""


@dataclass(frozen=True, slots=True)
class VariantSaturation:
    """Per-variant summary of its replicas' spare headroom."""

    variant: str
    replica_count: int
    non_saturated: int
    avg_spare_kv: float
    avg_spare_queue: float
    max_kv: float
    max_queue: int
    accelerator: str
    cost: float
    saturated_pods: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelSaturation:
    """Model-level result: pooled spare averages and the two signals."""

    variants: tuple[VariantSaturation, ...]
    total_replicas: int
    non_saturated: int
    avg_spare_kv: float
    avg_spare_queue: float
    scale_up: bool
    scale_up_reason: str
    scale_down_safe: bool


def is_saturated(replica: ReplicaMetrics, config: SaturationConfig) -> bool:
    """KV usage or waiting queue at or above its threshold."""
    return (
        replica.kv_usage >= config.kv_cache_threshold
        or float(replica.queue_length) >= config.queue_length_threshold
    )


def _variant_saturation(
    variant: str, replicas: Sequence[ReplicaMetrics], config: SaturationConfig
) -> VariantSaturation:
    total_kv = 0.0
    total_q = 0.0
    count = 0
    max_kv = 0.0
    max_queue = 0
    kv_threshold, queue_threshold = config.kv_cache_threshold, config.queue_length_threshold
    saturated: list[str] = []
    for r in replicas:  # one pass: this runs for every variant every cycle
        kv, queue = r.kv_usage, r.queue_length
        if count + len(saturated) == 0 or kv > max_kv:
            max_kv = kv
        if count + len(saturated) == 0 or queue > max_queue:
            max_queue = queue
        if kv >= kv_threshold or float(queue) >= queue_threshold:  # is_saturated
            saturated.append(r.pod)
        else:
            total_kv += kv_threshold - kv
            total_q += queue_threshold - float(queue)
            count += 1
    return VariantSaturation(
        variant=variant,
        replica_count=len(replicas),
        non_saturated=count,
        avg_spare_kv=total_kv / count if count else 0.0,
        avg_spare_queue=total_q / count if count else 0.0,
        max_kv=max_kv,
        max_queue=max_queue,
        accelerator=replicas[0].accelerator if replicas else "",
        cost=replicas[0].cost if replicas else 0.0,
        saturated_pods=tuple(saturated),
    )


def scale_up_signal(
    avg_spare_kv: float, avg_spare_queue: float, config: SaturationConfig
) -> tuple[bool, str]:
    """Whether pooled spare headroom is below a trigger, with upstream's reason text."""
    kv = avg_spare_kv < config.kv_spare_trigger
    queue = avg_spare_queue < config.queue_spare_trigger
    if kv and queue:
        return True, (
            f"both KV spare ({avg_spare_kv:.3f} < {config.kv_spare_trigger:.3f}) and "
            f"queue spare ({avg_spare_queue:.1f} < {config.queue_spare_trigger:.1f})"
        )
    if kv:
        return True, f"KV spare Saturation low ({avg_spare_kv:.3f} < {config.kv_spare_trigger:.3f})"
    if queue:
        return True, (
            f"queue spare Saturation low ({avg_spare_queue:.1f} < {config.queue_spare_trigger:.1f})"
        )
    return False, ""


def scale_down_safe(
    non_saturated: int, avg_spare_kv: float, avg_spare_queue: float, config: SaturationConfig
) -> bool:
    """Whether N−1 replicas could carry the current load with headroom above the triggers."""
    if non_saturated < MIN_NON_SATURATED_FOR_SCALE_DOWN:
        return False
    load_kv = config.kv_cache_threshold - avg_spare_kv
    load_q = config.queue_length_threshold - avg_spare_queue
    factor = float(non_saturated) / float(non_saturated - 1)
    rem_kv = config.kv_cache_threshold - load_kv * factor
    rem_q = config.queue_length_threshold - load_q * factor
    return rem_kv >= config.kv_spare_trigger and rem_q >= config.queue_spare_trigger


def analyze_saturation(
    replicas: Sequence[ReplicaMetrics], config: SaturationConfig
) -> ModelSaturation:
    """Pool the replicas of all variants of one model into the V1 signals."""
    by_variant: dict[str, list[ReplicaMetrics]] = {}
    for r in replicas:
        by_variant.setdefault(r.variant, []).append(r)
    variants = tuple(_variant_saturation(v, rs, config) for v, rs in by_variant.items())
    n = sum(v.non_saturated for v in variants)
    total_kv = 0.0
    total_q = 0.0
    for v in variants:
        total_kv += v.avg_spare_kv * float(v.non_saturated)
        total_q += v.avg_spare_queue * float(v.non_saturated)
    avg_kv = total_kv / float(n) if n else 0.0
    avg_q = total_q / float(n) if n else 0.0
    up, reason = scale_up_signal(avg_kv, avg_q, config) if replicas else (False, "")
    return ModelSaturation(
        variants=variants,
        total_replicas=len(replicas),
        non_saturated=n,
        avg_spare_kv=avg_kv,
        avg_spare_queue=avg_q,
        scale_up=up,
        scale_up_reason=reason,
        scale_down_safe=bool(replicas) and scale_down_safe(n, avg_kv, avg_q, config),
    )


def _in_transition(v: VariantState, metrics_count: int) -> tuple[bool, bool]:
    """(previous target not reached, pods without metrics) for one variant."""
    desired_pending = v.desired_replicas != 0 and v.desired_replicas != v.current_replicas
    return desired_pending, metrics_count != v.current_replicas


def saturation_targets(
    analysis: ModelSaturation, states: Mapping[str, VariantState]
) -> dict[str, int]:
    """Target per analysed variant: hold during transition, else at most one step."""
    targets: dict[str, int] = {}
    transition = False
    for va in analysis.variants:
        state = states[va.variant]
        desired_pending, missing_metrics = _in_transition(state, va.replica_count)
        transition = transition or desired_pending or missing_metrics
        targets[va.variant] = state.desired_replicas if desired_pending else state.current_replicas
    if transition:
        log.info("model in transition, holding targets: %s", targets)
        return targets
    targets = {va.variant: va.replica_count for va in analysis.variants}
    if analysis.scale_up:
        ready = [va for va in analysis.variants if states[va.variant].pending_replicas == 0]
        if ready:
            pick = min(ready, key=lambda va: (va.cost, va.variant))
            targets[pick.variant] += 1
            log.debug("scale-up %s: %s", pick.variant, analysis.scale_up_reason)
    elif analysis.scale_down_safe:
        candidates = [va for va in analysis.variants if targets[va.variant] > 1]
        if candidates:
            # Highest cost first; on equal cost the lexicographically larger name.
            pick = max(candidates, key=lambda va: (va.cost, va.variant))
            targets[pick.variant] -= 1
    return targets


def analyze(group: ModelGroup, config: SaturationConfig) -> list[Decision]:
    """V1 decisions for the variants of `group` that have at least one replica with metrics."""
    states = {v.name: v for v in group.variants}
    replicas = [r for r in group.replicas if r.variant in states]
    if not replicas:
        return []
    analysis = analyze_saturation(replicas, config)
    targets = saturation_targets(analysis, states)
    by_name = {va.variant: va for va in analysis.variants}
    decisions: list[Decision] = []
    for state in group.variants:
        va = by_name.get(state.name)
        if va is None:
            continue
        target = targets[state.name]
        decisions.append(
            Decision(
                variant=state.name,
                namespace=group.namespace,
                model_id=group.model_id,
                accelerator=va.accelerator or state.accelerator,
                current_replicas=state.current_replicas,
                target_replicas=target,
                reason=reason_for(state.current_replicas, target),
                cost=va.cost,
                spare_capacity=va.avg_spare_kv,
                gpus_per_replica=state.gpus_per_replica,
            )
        )
    return decisions


def reason_for(current: int, target: int) -> str:
    """The V1 decision reason, `saturation-only mode: <action>`."""
    return f"saturation-only mode: {action_for(current, target)}"


class SaturationV1Analyzer:
    """The V1 analyzer behind the `Analyzer` protocol (stateless)."""

    version = "v1"

    def analyze(self, group: ModelGroup, config: SaturationConfig, now: float) -> list[Decision]:
        """V1 decisions for one model group (`now` is unused: V1 keeps no state)."""
        return analyze(group, config)
