"""Plain data shared by the autoscaler's collector, analyzers, optimizer and actuators.

Everything here is frozen and free of I/O, so the decision code (analyzers,
optimizer, limiter, enforcement) is pure functions over these values, as in
upstream's `interfaces` package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

DEFAULT_VARIANT_COST = 10.0
"""Cost per replica when `spec.variantCost` is missing or does not parse."""

SCALE_UP = "scale-up"
SCALE_DOWN = "scale-down"
NO_CHANGE = "no-change"
INT64_MAX = 2**63 - 1
"""The largest KV capacity reported (Go's int64)."""


def parse_cost(text: str | None) -> float:
    """`spec.variantCost` as a float; missing or unparsable → 10.0 (upstream's runtime rule)."""
    try:
        return float(text) if text is not None and text != "" else DEFAULT_VARIANT_COST
    except ValueError:
        return DEFAULT_VARIANT_COST


def action_for(current: int, target: int) -> str:
    """The decision's action word for a replica change."""
    if target > current:
        return SCALE_UP
    if target < current:
        return SCALE_DOWN
    return NO_CHANGE


@dataclass(frozen=True, slots=True)
class ReplicaMetrics:
    """One model-server pod's metrics (spec §4.3), attributed to its variant."""

    pod: str
    variant: str
    namespace: str
    model_id: str
    accelerator: str = ""
    cost: float = DEFAULT_VARIANT_COST
    kv_usage: float = 0.0
    queue_length: int = 0
    num_gpu_blocks: int = 0
    block_size: int = 0
    avg_input_tokens: float = 0.0
    avg_output_tokens: float = 0.0
    prefix_cache_hit_rate: float | None = None

    @property
    def total_kv_capacity_tokens(self) -> int:
        """KV capacity in tokens (0 when `vllm:cache_config_info` is missing), at most int64's
        maximum (a comparison, not `min`: read for every replica every cycle)."""
        blocks, size = self.num_gpu_blocks, self.block_size
        if blocks > 0 and size > 0:
            total = blocks * size
            return total if total < INT64_MAX else INT64_MAX
        return 0

    @property
    def tokens_in_use(self) -> int:
        """KV usage × capacity, rounded and clamped to [0, capacity]."""
        total = self.total_kv_capacity_tokens
        return min(max(round(self.kv_usage * total), 0), total)


@dataclass(frozen=True, slots=True)
class VllmParams:
    """vLLM engine arguments parsed from a variant's Deployment (V2 capacity model)."""

    gpu_memory_utilization: float = 0.9
    block_size: int = 16
    kv_cache_dtype: str = "auto"
    tensor_parallel_size: int = 1
    num_gpu_blocks_override: int = 0
    max_num_batched_tokens: int = 0
    max_num_seqs: int = 256
    max_model_len: int = 0
    enforce_eager: bool = False
    enable_chunked_prefill: bool = False
    v1_engine: bool = True

    @property
    def effective_max_batched_tokens(self) -> int:
        """`B` of the k2 formula (spec §5.2)."""
        if self.max_num_batched_tokens > 0:
            return self.max_num_batched_tokens
        if self.v1_engine or self.enable_chunked_prefill:
            return 8192 if self.v1_engine else 2048
        return self.max_model_len if self.max_model_len > 2048 else 2048


class VariantState(NamedTuple):
    """One VariantAutoscaling and its target Deployment, as the engine sees them (spec §3.2).

    A NamedTuple rather than a frozen dataclass: one is built per VA per cycle, and a
    frozen dataclass's constructor costs several times more (benchmark (d)).
    """

    name: str
    namespace: str
    model_id: str
    accelerator: str = ""
    cost: float = DEFAULT_VARIANT_COST
    current_replicas: int = 0
    ready_replicas: int = 0
    desired_replicas: int = 0
    previous_accelerator: str = ""
    gpus_per_replica: int = 1
    vllm_params: VllmParams | None = None

    @property
    def pending_replicas(self) -> int:
        """Replicas that exist but are not ready yet."""
        return max(0, self.current_replicas - self.ready_replicas)


class Decision(NamedTuple):
    """The engine's target for one variant in one cycle (a NamedTuple, as `VariantState`:
    one per variant per cycle; `_replace` derives a changed one)."""

    variant: str
    namespace: str
    model_id: str
    accelerator: str
    current_replicas: int
    target_replicas: int
    reason: str = ""
    cost: float = DEFAULT_VARIANT_COST
    spare_capacity: float = 0.0
    gpus_per_replica: int = 1
    was_limited: bool = False
    limited_by: str = ""

    @property
    def action(self) -> str:
        """`scale-up`, `scale-down` or `no-change`."""
        return action_for(self.current_replicas, self.target_replicas)


@dataclass(frozen=True, slots=True)
class SaturationConfig:
    """One entry of the saturation ConfigMap (spec §2.3), with shipped defaults."""

    kv_cache_threshold: float = 0.80
    queue_length_threshold: float = 5.0
    kv_spare_trigger: float = 0.10
    queue_spare_trigger: float = 3.0
    enable_limiter: bool = False
    analyzer_name: str = ""
    scale_up_threshold: float = 0.85
    scale_down_boundary: float = 0.70
    model_id: str = ""
    namespace: str = ""
    fields_set: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    """Names of the fields the ConfigMap entry spelled out (an override applies only these)."""


@dataclass(frozen=True, slots=True)
class ScaleToZeroPolicy:
    """Resolved scale-to-zero settings of one model (spec §2.3, §8.1)."""

    enabled: bool = False
    retention_seconds: float = 600.0


@dataclass(frozen=True, slots=True)
class ModelGroup:
    """All variants of one `modelID` in one namespace: the unit of optimisation."""

    model_id: str
    namespace: str
    variants: tuple[VariantState, ...]
    replicas: tuple[ReplicaMetrics, ...] = ()
    scheduler_queue_size: float = 0.0
    scheduler_queue_bytes: float = 0.0

    @property
    def key(self) -> str:
        """Upstream's grouping key `modelID|namespace`."""
        return f"{self.model_id}|{self.namespace}"


@dataclass(frozen=True)
class Container:
    """The parts of a pod-template container the autoscaler reads."""

    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    gpu_requests: int = 0  # nvidia.com/gpu + amd.com/gpu + intel.com/gpu requests


@dataclass(frozen=True)
class Workload:
    """A scale target (a Deployment in practice) as the engine sees it (spec §3.2)."""

    namespace: str
    name: str
    spec_replicas: int | None
    status_replicas: int = 0
    ready_replicas: int = 0
    template_labels: Mapping[str, str] = field(default_factory=dict)
    containers: tuple[Container, ...] = ()
    deleting: bool = False

    @property
    def current_replicas(self) -> int:
        """`status.replicas`, or `spec.replicas` while the status still says 0."""
        if self.status_replicas == 0 and self.spec_replicas is not None:
            return self.spec_replicas
        return self.status_replicas

    @property
    def gpus_per_replica(self) -> int:
        """GPU requests of the pod template; 0 counts as 1 (a loop: read per VA per cycle)."""
        total = 0
        for c in self.containers:
            total += c.gpu_requests
        return total or 1


@dataclass(frozen=True)
class PodInfo:
    """A pod as the engine sees it: its owner and since when it has been Ready."""

    name: str
    workload: str  # the owning workload's name (Pod → ReplicaSet → Deployment)
    ready_since: float | None = (
        None  # wall seconds of its last transition to Ready; None: not Ready
    )


@dataclass(frozen=True)
class GpuNode:
    """A node's GPU inventory entry (for the limiter)."""

    name: str
    vendor: str  # "nvidia.com" | "amd.com" | "intel.com"
    product: str  # the `<vendor>/gpu.product` label
    count: int  # allocatable `<vendor>/gpu`
