"""Saturation analyzer V2 (spec §5.2): token capacity versus token demand.

Each replica with `vllm:cache_config_info` gets a demand (tokens in KV + queued
prompt tokens) and an effective capacity `min(k1, k2)`: k1 is the KV budget
(`blocks × block_size × kvCacheThreshold`), k2 the compute bound, learned when the
queue is full, remembered as a rolling average, derived from the vLLM arguments, or
k1 as a last resort. Variants without live pods are sized from a capacity store
(their own earlier record, or one from a compatible variant). The model's demand,
supply and anticipated supply (including pending pods) give the capacity to add
(`required`) or that may go (`spare`); `pyllmd.autoscaler.decide.optimize` turns those into
replica counts.

State that lives across cycles (k2 history, capacity store) is an explicit
`V2State` the caller owns and passes in; everything else is pure.

Differences from upstream, on purpose (see the spec's "Known weaknesses"):
- the EPP flow-control queue (`group.scheduler_queue_size/bytes`) is added to demand
  with the formula upstream defines but never feeds;
- a variant without replica metrics takes cost and accelerator from its VA, not 0/"";
- `V2State.evict` implements the record/history expiry whose constants upstream
  defines but never applies; the engine passes the cycle's wall time as `now`
  and evicts once per cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

from pyllmd.autoscaler.decide.analyze.capacity_store import (
    LIVE,
    CapacityRecord,
    RollingAverage,
    V2State,
)
from pyllmd.autoscaler.decide.model import ModelGroup, ReplicaMetrics, SaturationConfig, VllmParams

log = logging.getLogger(__name__)

NAME = "saturation"
"""`analyzerName` value that selects this analyzer."""

BYTES_PER_TOKEN = 4.0


class ReplicaCapacity(NamedTuple):
    """One replica's demand and capacity in tokens (a NamedTuple: built per pod per cycle)."""

    pod: str
    variant: str
    accelerator: str
    tokens_in_use: int
    total_kv_capacity_tokens: int
    k1: int
    k2: int
    effective_capacity: int
    demand: int

    @property
    def saturated(self) -> bool:
        """Demand at or above effective capacity."""
        return self.demand >= self.effective_capacity


class VariantCapacity(NamedTuple):
    """One variant's supply and demand (per VA whose target exists)."""

    variant: str
    accelerator: str
    cost: float
    current_replicas: int
    ready_replicas: int
    pending_replicas: int
    per_replica_capacity: float
    total_capacity: float
    total_demand: float
    gpus_per_replica: int = 1

    @property
    def utilization(self) -> float:
        """Demand over supply (0 without supply)."""
        return self.total_demand / self.total_capacity if self.total_capacity > 0 else 0.0


class CapacityAnalysis(NamedTuple):
    """Model-level V2 result: the input of the cost-aware optimizer."""

    model_id: str
    namespace: str
    variants: tuple[VariantCapacity, ...]
    replicas: tuple[ReplicaCapacity, ...]
    total_supply: float
    anticipated_supply: float
    total_demand: float
    scheduler_demand: float
    required_capacity: float
    spare_capacity: float

    @property
    def utilization(self) -> float:
        """Model demand over supply (0 without supply)."""
        return self.total_demand / self.total_supply if self.total_supply > 0 else 0.0


def output_bucket(avg_output_tokens: float) -> str:
    """Workload class of the k2 history key."""
    if avg_output_tokens < 100:
        return "short"
    if avg_output_tokens < 500:
        return "medium"
    return "long"


def estimate_from_params(params: VllmParams | None, avg_input: float, avg_output: float) -> int:
    """k2 from engine limits: `min(S, B·O/(I+O)) · (I + O/2)`; 0 when not computable."""
    if params is None:
        return 0
    return estimate_k2(params.effective_max_batched_tokens, params.max_num_seqs, avg_input,
                       avg_output)  # fmt: skip


def estimate_k2(batched: int, max_seqs: int, avg_input: float, avg_output: float) -> int:
    """`estimate_from_params` on the two limits it reads (`B`, `S`), taken once per variant."""
    if batched <= 0 or avg_output <= 0:
        return 0
    n = float(batched) * avg_output / (avg_input + avg_output)
    seqs = float(max_seqs)
    if seqs < n:  # min(n, seqs), without the builtin's argument parsing (runs per replica)
        n = seqs
    k2 = int(n * (avg_input + avg_output / 2))
    return k2 if k2 > 0 else 0


class VariantLimits(NamedTuple):
    """What every replica of one variant shares in a cycle (looked up once per variant)."""

    record_key: str  # the variant's capacity-store key, `namespace|model|variant`
    gpu_count: int
    params: VllmParams | None  # the engine arguments its stored record carries
    batched: int  # `B` of the k2 formula (0 without params)
    max_seqs: int  # `S` of the k2 formula


def variant_limits(
    state: V2State, group: ModelGroup, variant: str, gpu_count: int
) -> VariantLimits:
    """The limits of `variant`'s replicas: its record's params stay the same all cycle, since
    every live record written for it carries over the params of the one before."""
    key = f"{group.namespace}|{group.model_id}|{variant}"
    existing = state.records.get(key)
    params = existing.params if existing is not None else None
    if params is None:
        return VariantLimits(key, gpu_count, None, 0, 0)
    return VariantLimits(
        key, gpu_count, params, params.effective_max_batched_tokens, params.max_num_seqs
    )


def compute_k2(
    state: V2State,
    rm: ReplicaMetrics,
    queue_threshold: int,
    limits: VariantLimits,
    k1: int,
    now: float,
    tokens: int,
) -> int:
    """Compute-bound capacity: observed → history → derived → k1 (spec §5.2).

    `tokens` is `rm.tokens_in_use`, `queue_threshold` the integer queue threshold,
    both computed once by the caller.
    """
    observed = rm.queue_length >= queue_threshold and tokens > 0
    if observed or state.history:  # without any history there is nothing to look up
        key = f"{rm.model_id}|{rm.accelerator}|{output_bucket(rm.avg_output_tokens)}"
        hist = state.history.get(key)
        if observed:
            if hist is None:
                hist = state.history[key] = RollingAverage()
            hist.add(float(tokens), now)
            return tokens
        avg = hist.average() if hist is not None else 0.0
        if avg > 0:
            return int(avg)
    derived = estimate_k2(limits.batched, limits.max_seqs, rm.avg_input_tokens,
                          rm.avg_output_tokens)  # fmt: skip
    return derived if derived > 0 else k1


def replica_capacity(
    state: V2State,
    rm: ReplicaMetrics,
    config: SaturationConfig,
    limits: VariantLimits,
    now: float,
) -> ReplicaCapacity | None:
    """Demand and capacity of one replica; None without `vllm:cache_config_info`.

    Updates the k2 history, not the capacity store (see `replica_capacities`).
    """
    total = rm.total_kv_capacity_tokens
    if total <= 0:
        return None
    # rm.tokens_in_use, inlined; comparisons instead of min()/max() (argument parsing)
    tokens = round(rm.kv_usage * total)
    if tokens < 0:
        tokens = 0
    if total < tokens:
        tokens = total
    demand = tokens
    if rm.avg_input_tokens > 0:
        demand += rm.queue_length * int(rm.avg_input_tokens)
    k1 = int(float(total) * config.kv_cache_threshold)
    k2 = compute_k2(state, rm, int(config.queue_length_threshold), limits, k1, now, tokens)
    effective = k2 if k2 < k1 else k1
    return ReplicaCapacity(
        rm.pod, rm.variant, rm.accelerator, tokens, total, k1, k2, effective, demand
    )


class ReplicaPass(NamedTuple):
    """The replicas of a group, measured: in order, and grouped by variant."""

    replicas: tuple[ReplicaCapacity, ...]
    by_variant: dict[str, list[ReplicaCapacity]]  # only replicas with capacity data
    first_metrics: dict[str, ReplicaMetrics]  # each variant's first replica, with or without


def replica_capacities(
    state: V2State, group: ModelGroup, config: SaturationConfig, now: float
) -> ReplicaPass:
    """Every replica's demand and capacity, and each variant's live capacity record.

    A variant's record is written once, from its last replica with capacity data:
    what writing it for every replica in turn would leave, at a third of the cost.
    """
    gpus = {vs.name: vs.gpus_per_replica for vs in group.variants}
    limits: dict[str, VariantLimits] = {}
    first: dict[str, ReplicaMetrics] = {}
    by_variant: dict[str, list[ReplicaCapacity]] = {}
    last: dict[str, ReplicaMetrics] = {}  # each variant's last replica with capacity data
    out: list[ReplicaCapacity] = []
    for rm in group.replicas:
        name = rm.variant
        lim = limits.get(name)
        if lim is None:
            first[name] = rm
            lim = limits[name] = variant_limits(state, group, name, gpus.get(name, 0))
        rc = replica_capacity(state, rm, config, lim, now)
        if rc is None:
            continue
        out.append(rc)
        own = by_variant.get(name)
        if own is None:
            by_variant[name] = [rc]
        else:
            own.append(rc)
        last[name] = rm
    for name, rm in last.items():
        lim, rc = limits[name], by_variant[name][-1]
        state.records[lim.record_key] = CapacityRecord(
            rm.accelerator, lim.gpu_count, rc.effective_capacity, LIVE, lim.params,
            rm.num_gpu_blocks, rm.block_size, rc.total_kv_capacity_tokens, now,
        )  # fmt: skip
    return ReplicaPass(tuple(out), by_variant, first)


def median(values: Sequence[int]) -> int:
    """Integer median; the truncated mean of the two middle values for an even count."""
    if not values:
        return 0
    s = sorted(values)
    n = len(s)
    return (s[n // 2 - 1] + s[n // 2]) // 2 if n % 2 == 0 else s[n // 2]


def workload_averages(replicas: Sequence[ReplicaMetrics]) -> tuple[float, float, float]:
    """Model-level mean input tokens, output tokens and prefix hit rate over active replicas."""
    total_in = total_out = total_hit = 0.0
    count = 0
    for rm in replicas:
        if rm.avg_input_tokens > 0 or rm.avg_output_tokens > 0:
            total_in += rm.avg_input_tokens
            total_out += rm.avg_output_tokens
            total_hit += rm.prefix_cache_hit_rate or 0.0
            count += 1
    if count == 0:
        return 0.0, 0.0, 0.0
    return total_in / count, total_out / count, total_hit / count


def scheduler_queue_demand(
    queue_size: float, queue_bytes: float, replicas: Sequence[ReplicaMetrics]
) -> float:
    """Tokens of requests waiting in the EPP flow-control queue (not yet on any pod)."""
    if queue_size == 0 and queue_bytes == 0:
        return 0.0
    avg_in, avg_out, avg_hit = workload_averages(replicas)
    input_tokens = max(queue_bytes / BYTES_PER_TOKEN, queue_size * avg_in)
    input_tokens *= 1 - avg_hit
    return input_tokens + queue_size * avg_out


def stored_capacity(
    state: V2State,
    rec: CapacityRecord,
    model_id: str,
    kv_cache_threshold: float,
    avg_input: float,
    avg_output: float,
) -> float:
    """Per-replica capacity of a variant without live pods, from its own record.

    A live record is taken as is. A parameter-derived one is refined with the k2
    formula on the model's workload, bounded by its own k1 (when the block count is
    pinned) and by a compatible live record.
    """
    if rec.learned_from == LIVE:
        return float(rec.effective_capacity)
    derived = 0
    if rec.params is not None and avg_output > 0:
        derived = estimate_from_params(rec.params, avg_input, avg_output)
    if derived <= 0:
        return float(rec.effective_capacity)
    bounded = derived
    if rec.total_kv_capacity_tokens > 0 and kv_cache_threshold > 0:
        k1 = int(float(rec.total_kv_capacity_tokens) * kv_cache_threshold)
        if 0 < k1 < bounded:
            bounded = k1
    compatible = state.find_compatible(model_id, rec.accelerator, rec.gpu_count, rec.params)
    if compatible is not None and compatible.learned_from == LIVE:
        if 0 < compatible.effective_capacity < bounded:
            bounded = compatible.effective_capacity
    return float(bounded)


def _without_pods_capacity(
    state: V2State,
    group: ModelGroup,
    variant: str,
    accelerator: str,
    gpus: int,
    kv_cache_threshold: float,
) -> float:
    """Own stored record, else a compatible variant's record, else 0."""
    rec = state.record(group.namespace, group.model_id, variant)
    if rec is not None and rec.effective_capacity > 0:
        avg_in, avg_out, _ = workload_averages(group.replicas)
        return stored_capacity(state, rec, group.model_id, kv_cache_threshold, avg_in, avg_out)
    if rec is None or rec.params is None:
        return 0.0
    other = state.find_compatible(group.model_id, accelerator, gpus, rec.params)
    return float(other.effective_capacity) if other is not None else 0.0


def aggregate_variants(
    state: V2State,
    group: ModelGroup,
    measured: ReplicaPass,
    kv_cache_threshold: float,
) -> tuple[VariantCapacity, ...]:
    """Supply and demand of every variant of the group."""
    result: list[VariantCapacity] = []
    for vs in group.variants:
        own = measured.by_variant.get(vs.name)
        metric = measured.first_metrics.get(vs.name)
        # Deviation from upstream: without replica metrics, cost and accelerator come from the VA.
        accelerator = (metric.accelerator if metric is not None else "") or vs.accelerator
        cost = metric.cost if metric is not None else vs.cost
        pending = vs.pending_replicas
        ready = max(vs.current_replicas - pending, 0)
        if own:
            per_replica = float(median([rc.effective_capacity for rc in own]))
            demand = float(sum([rc.demand for rc in own]))
        else:
            per_replica = _without_pods_capacity(
                state, group, vs.name, accelerator, vs.gpus_per_replica, kv_cache_threshold
            )
            demand = 0.0
        result.append(
            VariantCapacity(
                variant=vs.name,
                accelerator=accelerator,
                cost=cost,
                current_replicas=vs.current_replicas,
                ready_replicas=ready,
                pending_replicas=pending,
                per_replica_capacity=per_replica,
                total_capacity=float(ready) * per_replica,
                total_demand=demand,
                gpus_per_replica=vs.gpus_per_replica,
            )
        )
    return tuple(result)


def analyze_capacity(
    group: ModelGroup, config: SaturationConfig, state: V2State, now: float
) -> CapacityAnalysis:
    """Token supply/demand of one model group; updates `state` (history and store)."""
    for vs in group.variants:
        if vs.vllm_params is not None:
            state.load_from_deployment(
                group.namespace,
                group.model_id,
                vs.name,
                vs.accelerator,
                vs.gpus_per_replica,
                vs.vllm_params,
                now,
            )
    measured = replica_capacities(state, group, config, now)
    variants = aggregate_variants(state, group, measured, config.kv_cache_threshold)
    supply = sum(vc.total_capacity for vc in variants)
    anticipated = sum(
        float(vc.ready_replicas + vc.pending_replicas) * vc.per_replica_capacity for vc in variants
    )
    sched = scheduler_queue_demand(
        group.scheduler_queue_size, group.scheduler_queue_bytes, group.replicas
    )
    demand = sum(vc.total_demand for vc in variants) + sched
    required = (
        demand / config.scale_up_threshold - anticipated if config.scale_up_threshold > 0 else 0.0
    )
    spare = supply - demand / config.scale_down_boundary if config.scale_down_boundary > 0 else 0.0
    analysis = CapacityAnalysis(
        model_id=group.model_id,
        namespace=group.namespace,
        variants=variants,
        replicas=measured.replicas,
        total_supply=supply,
        anticipated_supply=anticipated,
        total_demand=demand,
        scheduler_demand=sched,
        required_capacity=max(required, 0.0),
        spare_capacity=max(spare, 0.0),
    )
    log.debug(
        "v2 analysis model=%s supply=%.0f demand=%.0f required=%.0f spare=%.0f",
        group.key,
        supply,
        demand,
        analysis.required_capacity,
        analysis.spare_capacity,
    )
    return analysis
