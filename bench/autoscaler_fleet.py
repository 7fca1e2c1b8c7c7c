"""Figure (d)'s inputs: a fleet of VariantAutoscalings, their targets and pre-collected metrics.

Builders are pure (a seeded ``random.Random`` for per-pod jitter). The fakes
answer the engine from memory without suspending, so a timed cycle measures the
engine's own work: listing, grouping, analysis, enforcement, gauges and status
patches. Collection from Prometheus is out of the picture on purpose ("from
pre-collected metrics").

Loads are chosen so both analyzers see three kinds of model (spec §5.1, §5.2,
default thresholds): ``up`` (KV ≈ 0.76, spare below the 0.10 trigger; V2
utilisation ≈ 0.97 > 0.85), ``down`` (KV ≈ 0.20, idle) and ``hold`` (KV ≈ 0.665:
V1 spare 0.135 ≥ 0.10 but too little left after removing a replica; V2
utilisation ≈ 0.83, between 0.70 and 0.85).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyllmd.autoscaler.collect.collector import CollectionResult
from pyllmd.autoscaler.decide import api
from pyllmd.autoscaler.decide.cycle import variant_state
from pyllmd.autoscaler.decide.model import (
    Container,
    Decision,
    GpuNode,
    ModelGroup,
    PodInfo,
    ReplicaMetrics,
    Workload,
)

SYSTEM_NAMESPACE = "workload-variant-autoscaler-system"
SATURATION_CONFIG_MAP = "wva-saturation-scaling-config"
V1_DEFAULT = "kvCacheThreshold: 0.80\nqueueLengthThreshold: 5\nkvSpareTrigger: 0.10\n"
V1_DEFAULT += "queueSpareTrigger: 3\n"
V2_DEFAULT = V1_DEFAULT + "analyzerName: saturation\n"

# (accelerator label, variantCost) of the four variants of every model.
ACCELERATORS: tuple[tuple[str, str], ...] = (
    ("L40S", "5.0"),
    ("A100", "10.0"),
    ("H100", "20.0"),
    ("MI300X", "18.0"),
)
STEADY_SINCE = "2023-11-14T22:00:00Z"
STEADY_SINCE_SECONDS = 1_699_999_200.0  # STEADY_SINCE as Unix seconds: when every pod became Ready
NUM_GPU_BLOCKS = 8192
BLOCK_SIZE = 16
AVG_INPUT_TOKENS = 1000.0
AVG_OUTPUT_TOKENS = 200.0
# load kind -> (KV usage centre, jitter ±, waiting queue)
LOADS: Mapping[str, tuple[float, float, int]] = {
    "up": (0.76, 0.02, 2),
    "down": (0.20, 0.05, 0),
    "hold": (0.665, 0.005, 0),
}
LOAD_CYCLE = ("hold", "up", "hold", "down", "hold", "up", "down", "hold", "up", "down")
"""Load kind by model index mod 10: 40 % hold, 30 % up, 30 % down."""


@dataclass(frozen=True)
class FleetShape:
    """How big the fleet is."""

    models: int = 250
    variants_per_model: int = 4
    namespaces: int = 4
    min_replicas: int = 2
    max_replicas: int = 4
    seed: int = 1

    @property
    def variants(self) -> int:
        return self.models * self.variants_per_model


@dataclass(frozen=True)
class Fleet:
    """Everything the fakes serve, plus the expected load kind of each model group."""

    vas: tuple[api.VariantAutoscaling, ...]
    workloads: Mapping[str, Workload]  # "namespace/name" -> workload
    pods: Mapping[str, Mapping[str, str]]  # namespace -> pod -> workload name
    results: Mapping[str, CollectionResult]  # ModelGroup.key -> pre-collected metrics
    loads: Mapping[str, str]  # ModelGroup.key -> "up" | "down" | "hold"
    config_maps: Mapping[tuple[str, str], Mapping[str, str]]

    @property
    def pod_count(self) -> int:
        return sum(len(p) for p in self.pods.values())

    def groups(self) -> list[ModelGroup]:
        """The model groups as the engine builds them, with their metrics filled in."""
        members: dict[str, list[api.VariantAutoscaling]] = {}
        for va in self.vas:
            members.setdefault(f"{va.spec.model_id}|{va.metadata.namespace}", []).append(va)
        out: list[ModelGroup] = []
        for key, vas in sorted(members.items()):
            ns = vas[0].metadata.namespace
            states = tuple(
                variant_state(va, self.workloads[f"{ns}/{va.spec.scale_target_ref.name}"])
                for va in vas
            )
            out.append(ModelGroup(vas[0].spec.model_id, ns, states, self.results[key].replicas))
        return out


def model_id(i: int) -> str:
    return f"bench-org/model-{i:03d}"


def namespace_of(i: int, shape: FleetShape) -> str:
    return f"team-{i % shape.namespaces}"


def replicas_of(i: int, j: int, shape: FleetShape) -> int:
    """Replicas of variant j of model i, cycling through min..max."""
    span = shape.max_replicas - shape.min_replicas + 1
    return shape.min_replicas + (i + j) % span


def _condition(type_: str, reason: str) -> dict[str, object]:
    return {
        "type": type_,
        "status": api.STATUS_TRUE,
        "observedGeneration": 1,
        "lastTransitionTime": STEADY_SINCE,
        "reason": reason,
        "message": "",
    }


def make_va(i: int, j: int, shape: FleetShape) -> api.VariantAutoscaling:
    """Variant j of model i in steady state: its previous target equals its replicas and its
    status carries the three conditions an earlier cycle wrote."""
    accelerator, cost = ACCELERATORS[j % len(ACCELERATORS)]
    name = f"model-{i:03d}-{accelerator.lower()}"
    return api.VariantAutoscaling.model_validate(
        {
            "metadata": {
                "name": name,
                "namespace": namespace_of(i, shape),
                "labels": {api.ACCELERATOR_LABEL: accelerator},
                "generation": 1,
            },
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "modelID": model_id(i),
                "variantCost": cost,
            },
            "status": {
                "desiredOptimizedAlloc": {
                    "lastRunTime": STEADY_SINCE,
                    "accelerator": accelerator,
                    "numReplicas": replicas_of(i, j, shape),
                },
                "actuation": {"applied": True},
                "conditions": [
                    _condition(api.TYPE_TARGET_RESOLVED, api.REASON_TARGET_FOUND),
                    _condition(api.TYPE_METRICS_AVAILABLE, api.REASON_METRICS_FOUND),
                    _condition(api.TYPE_OPTIMIZATION_READY, api.REASON_SATURATION_ONLY_MODE),
                ],
            },
        }
    )


def make_workload(va: api.VariantAutoscaling, replicas: int) -> Workload:
    """A ready Deployment running vLLM with one GPU per replica."""
    args = ("--model", va.spec.model_id, "--max-num-seqs", "256", "--block-size", "16")
    return Workload(
        namespace=va.metadata.namespace,
        name=va.spec.scale_target_ref.name,
        spec_replicas=replicas,
        status_replicas=replicas,
        ready_replicas=replicas,
        template_labels={"app": va.metadata.name},
        containers=(Container(command=("vllm", "serve"), args=args, gpu_requests=1),),
    )


def pod_metrics(
    pod: str, va: api.VariantAutoscaling, load: str, rng: random.Random
) -> ReplicaMetrics:
    """One pod's metrics under `load` (see `LOADS`)."""
    centre, jitter, queue = LOADS[load]
    return ReplicaMetrics(
        pod=pod,
        variant=va.metadata.name,
        namespace=va.metadata.namespace,
        model_id=va.spec.model_id,
        accelerator=va.metadata.labels[api.ACCELERATOR_LABEL],
        cost=float(va.spec.variant_cost),
        kv_usage=round(centre + rng.uniform(-jitter, jitter), 4),
        queue_length=queue,
        num_gpu_blocks=NUM_GPU_BLOCKS,
        block_size=BLOCK_SIZE,
        avg_input_tokens=AVG_INPUT_TOKENS,
        avg_output_tokens=AVG_OUTPUT_TOKENS,
        prefix_cache_hit_rate=0.3,
    )


def build_fleet(shape: FleetShape, analyzer_name: str = "") -> Fleet:
    """`shape.variants` VAs with targets, pods and one ok collection result per model group."""
    rng = random.Random(shape.seed)
    vas: list[api.VariantAutoscaling] = []
    workloads: dict[str, Workload] = {}
    pods: dict[str, dict[str, str]] = {}
    results: dict[str, CollectionResult] = {}
    loads: dict[str, str] = {}
    for i in range(shape.models):
        ns = namespace_of(i, shape)
        key = f"{model_id(i)}|{ns}"
        loads[key] = LOAD_CYCLE[i % len(LOAD_CYCLE)]
        replicas: list[ReplicaMetrics] = []
        for j in range(shape.variants_per_model):
            va = make_va(i, j, shape)
            n = replicas_of(i, j, shape)
            workload = make_workload(va, n)
            vas.append(va)
            workloads[f"{ns}/{workload.name}"] = workload
            for k in range(n):
                pod = f"{workload.name}-7d9f8b6c5-{k:05d}"
                pods.setdefault(ns, {})[pod] = workload.name
                replicas.append(pod_metrics(pod, va, loads[key], rng))
        results[key] = CollectionResult(tuple(replicas), "ok", f"{len(replicas)} pods")
    default = V2_DEFAULT if analyzer_name == "saturation" else V1_DEFAULT
    config_maps = {(SYSTEM_NAMESPACE, SATURATION_CONFIG_MAP): {"default": default}}
    return Fleet(tuple(vas), workloads, pods, results, loads, config_maps)


def empty_fleet(analyzer_name: str = "") -> Fleet:
    """No VAs, the same ConfigMaps: the baseline of an empty cycle."""
    return build_fleet(FleetShape(models=0), analyzer_name)


@dataclass
class FakeCluster:
    """The `Cluster` protocol from memory; status patches are recorded, not applied,
    so every repetition of a cycle sees the same inputs and does the same work."""

    fleet: Fleet
    patches: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    _pods: dict[str, list[PodInfo]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """The pods as the cluster lists them, built once (listing is not the engine's work)."""
        for namespace, pods in self.fleet.pods.items():
            self._pods[namespace] = [
                PodInfo(pod, workload, STEADY_SINCE_SECONDS) for pod, workload in pods.items()
            ]

    async def list_variant_autoscalings(self) -> list[api.VariantAutoscaling]:
        return list(self.fleet.vas)

    async def get_workload(
        self, namespace: str, ref: api.CrossVersionObjectReference
    ) -> Workload | None:
        return self.fleet.workloads.get(f"{namespace}/{ref.name}")

    async def patch_status(self, va: api.VariantAutoscaling, status: Mapping[str, Any]) -> None:
        self.patches[(va.metadata.namespace, va.metadata.name)] = status

    async def scale(
        self, namespace: str, ref: api.CrossVersionObjectReference, replicas: int
    ) -> bool:
        return False

    async def pods(self, namespace: str) -> list[PodInfo]:
        return self._pods.get(namespace, [])

    async def config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.fleet.config_maps.get((namespace, name))

    async def gpu_nodes(self, selector: str = "") -> list[GpuNode]:
        return []

    async def namespace_annotations(self, namespace: str) -> Mapping[str, str]:
        """As on Kubernetes, the engine asks whether a namespace is excluded; none is."""
        return {}


@dataclass
class FakeCollector:
    """The engine's `GroupCollector`: the fleet's pre-collected result for each group."""

    fleet: Fleet
    calls: int = 0

    async def collect(
        self, group: ModelGroup, pod_variants: Mapping[str, str] | None = None
    ) -> CollectionResult:
        self.calls += 1
        return self.fleet.results.get(group.key, CollectionResult((), "missing", "unknown"))

    async def request_count(
        self, namespace: str, model_id: str, retention_seconds: float
    ) -> float | None:
        return None

    async def recent_success(
        self, namespace: str, model_id: str, retention_seconds: float
    ) -> bool | None:
        return None

    async def scheduler_queue(self, model_id: str) -> tuple[float, float]:
        return 0.0, 0.0


def action_counts(decisions: Sequence[Decision]) -> dict[str, int]:
    """How many decisions scale up, down, or hold (by their `action`)."""
    counts = {"scale-up": 0, "scale-down": 0, "no-change": 0}
    for d in decisions:
        counts[d.action] += 1
    return counts
