"""Builders for the decision-code tests: model groups, variants and replicas in a line each."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from pyllmd.autoscaler.decide.model import (
    Decision,
    ModelGroup,
    ReplicaMetrics,
    VariantState,
    VllmParams,
)

NS = "llm"
MODEL = "meta-llama/Llama-3.1-8B"
_pods = itertools.count()


def variant(
    name: str,
    current: int,
    *,
    ready: int | None = None,
    desired: int = 0,
    cost: float = 10.0,
    accelerator: str = "H100",
    previous_accelerator: str = "",
    gpus: int = 1,
    params: VllmParams | None = None,
) -> VariantState:
    """A VA + Deployment with `current` replicas (all ready unless `ready` says otherwise)."""
    return VariantState(
        name=name,
        namespace=NS,
        model_id=MODEL,
        accelerator=accelerator,
        cost=cost,
        current_replicas=current,
        ready_replicas=current if ready is None else ready,
        desired_replicas=desired,
        previous_accelerator=previous_accelerator,
        gpus_per_replica=gpus,
        vllm_params=params,
    )


def replica(
    variant_name: str,
    kv: float = 0.0,
    queue: int = 0,
    *,
    cost: float = 10.0,
    accelerator: str = "H100",
    blocks: int = 0,
    block_size: int = 0,
    avg_in: float = 0.0,
    avg_out: float = 0.0,
    hit: float | None = None,
) -> ReplicaMetrics:
    """One pod's metrics for `variant_name`."""
    return ReplicaMetrics(
        pod=f"{variant_name}-pod-{next(_pods)}",
        variant=variant_name,
        namespace=NS,
        model_id=MODEL,
        accelerator=accelerator,
        cost=cost,
        kv_usage=kv,
        queue_length=queue,
        num_gpu_blocks=blocks,
        block_size=block_size,
        avg_input_tokens=avg_in,
        avg_output_tokens=avg_out,
        prefix_cache_hit_rate=hit,
    )


def group(
    variants: Iterable[VariantState],
    replicas: Iterable[ReplicaMetrics] = (),
    *,
    queue_size: float = 0.0,
    queue_bytes: float = 0.0,
) -> ModelGroup:
    """A model group of `variants` with `replicas`."""
    return ModelGroup(
        model_id=MODEL,
        namespace=NS,
        variants=tuple(variants),
        replicas=tuple(replicas),
        scheduler_queue_size=queue_size,
        scheduler_queue_bytes=queue_bytes,
    )


def decision(
    name: str,
    current: int,
    target: int,
    *,
    cost: float = 10.0,
    accelerator: str = "H100",
    spare: float = 0.0,
    gpus: int = 1,
    reason: str = "",
) -> Decision:
    """A decision for `name`."""
    return Decision(
        variant=name,
        namespace=NS,
        model_id=MODEL,
        accelerator=accelerator,
        current_replicas=current,
        target_replicas=target,
        reason=reason,
        cost=cost,
        spare_capacity=spare,
        gpus_per_replica=gpus,
    )


def targets(decisions: Iterable[Decision]) -> dict[str, int]:
    """Variant → target replicas."""
    return {d.variant: d.target_replicas for d in decisions}
