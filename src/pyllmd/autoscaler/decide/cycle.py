"""The pure steps of a saturation cycle: members, model groups, per-group decisions, carry-over.

The saturation loop (`loops/saturation.py`) reads the inputs (`loops/inputs.py`:
VAs, targets, pods, ConfigMaps, metrics) and writes the outputs
(`loops/outputs.py`: gauges, status, actuator); every choice in between is
made here, over plain data with the cycle's time passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from pyllmd.autoscaler.decide import api
from pyllmd.autoscaler.decide.analyze import Analyzer
from pyllmd.autoscaler.decide.analyze.vllm_args import parse_vllm_args
from pyllmd.autoscaler.decide.configmaps import (
    SCALE_TO_ZERO_CONFIG_MAP_NAME,
    ScaleToZeroConfig,
)
from pyllmd.autoscaler.decide.enforce import Activity, AnalyzerVersion, carry_over, enforce
from pyllmd.autoscaler.decide.model import (
    Decision,
    ModelGroup,
    PodInfo,
    SaturationConfig,
    ScaleToZeroPolicy,
    VariantState,
    VllmParams,
    Workload,
    parse_cost,
)
from pyllmd.autoscaler.decide.status import VariantKey

SCALE_TO_ZERO_CONFIG_MAP = SCALE_TO_ZERO_CONFIG_MAP_NAME


@dataclass(frozen=True)
class EngineSettings:
    """Names and switches the saturation loop needs from the controller configuration."""

    system_namespace: str = "workload-variant-autoscaler-system"
    saturation_config_map: str = "wva-saturation-scaling-config"
    scale_to_zero_config_map: str = SCALE_TO_ZERO_CONFIG_MAP
    controller_instance: str = ""
    env_scale_to_zero: bool = False
    node_selector: str = ""
    limited_mode: bool = False  # WVA_LIMITED_MODE: log the GPU inventory every cycle
    watch_namespace: str = ""  # never excluded by the namespace annotation (as upstream)


class Member(NamedTuple):
    """An active VA with its target and the engine's view of both (one per VA per cycle)."""

    va: api.VariantAutoscaling
    workload: Workload
    state: VariantState
    key: VariantKey  # (namespace, VA name)


@dataclass(frozen=True)
class Configs:
    """ConfigMaps read at the start of a cycle (global, and namespace-local ones)."""

    saturation_global: Mapping[str, SaturationConfig]
    saturation_local: Mapping[str, Mapping[str, SaturationConfig]]
    s2z_global: ScaleToZeroConfig
    s2z_local: Mapping[str, ScaleToZeroConfig]


def variant_state(
    va: api.VariantAutoscaling, workload: Workload, params: VllmParams | None = None
) -> VariantState:
    """The engine's view of a VA and its target (spec §3.2); `params` parsed if not given."""
    alloc = va.status.desired_optimized_alloc
    return VariantState(
        name=va.metadata.name,
        namespace=va.metadata.namespace,
        model_id=va.spec.model_id,
        accelerator=va.metadata.labels.get(api.ACCELERATOR_LABEL, ""),
        cost=parse_cost(va.spec.variant_cost),
        current_replicas=workload.current_replicas,
        ready_replicas=workload.ready_replicas,
        desired_replicas=alloc.num_replicas if alloc else 0,
        previous_accelerator=alloc.accelerator if alloc else "",
        gpus_per_replica=workload.gpus_per_replica,
        vllm_params=params if params is not None else parse_vllm_args(workload.containers),
    )


def target_key(namespace: str, ref: api.CrossVersionObjectReference) -> str:
    """Index key of a scale target (`apiVersion` defaults to apps/v1)."""
    return f"{namespace}/{ref.api_version or 'apps/v1'}/{ref.kind}/{ref.name}"


def unambiguous(vas: Sequence[api.VariantAutoscaling]) -> set[VariantKey]:
    """VAs whose target no other VA claims (a shared target gets no metric-based decisions)."""
    owner: dict[str, VariantKey] = {}  # target → the first VA claiming it
    shared: set[str] = set()  # targets claimed more than once
    for va in vas:
        meta = va.metadata
        key = target_key(meta.namespace, va.spec.scale_target_ref)
        if key in owner:
            shared.add(key)
        else:
            owner[key] = (meta.namespace, meta.name)
    return {va_key for key, va_key in owner.items() if key not in shared}


def spec_replicas(workload: Workload) -> int:
    """`spec.replicas`, nil counting as 1."""
    return 1 if workload.spec_replicas is None else workload.spec_replicas


def members(
    vas: Sequence[api.VariantAutoscaling],
    workloads: Sequence[Workload | None],
    params: Callable[[Workload], VllmParams],
) -> list[Member]:
    """The VAs that take part in the cycle, with their targets (`workloads`, in the same
    order): a target that exists, is not being deleted and is not scaled to 0.
    `params` gives a target's parsed vLLM arguments."""
    out: list[Member] = []
    for va, workload in zip(vas, workloads, strict=True):
        if workload is None or workload.deleting or spec_replicas(workload) <= 0:
            continue
        state = variant_state(va, workload, params(workload))
        out.append(Member(va, workload, state, (state.namespace, state.name)))
    return out


def model_groups(members: Iterable[Member]) -> list[tuple[tuple[str, str], list[Member]]]:
    """Members grouped by (model, namespace), in that order."""
    groups: dict[tuple[str, str], list[Member]] = {}
    for m in members:  # not setdefault(key, []): that builds a list per member
        key = (m.va.spec.model_id, m.va.metadata.namespace)
        group = groups.get(key)
        if group is None:
            groups[key] = [m]
        else:
            group.append(m)
    return sorted(groups.items())


def pod_variants(
    usable: Iterable[Member], by_workload: Mapping[str, Sequence[PodInfo]]
) -> dict[str, str]:
    """Pod name → VA name for the pods of the members' targets."""
    return {
        pod.name: m.va.metadata.name for m in usable for pod in by_workload.get(m.workload.name, ())
    }


def newest_ready(
    members: Iterable[Member], by_workload: Mapping[str, Sequence[PodInfo]]
) -> float | None:
    """When the most recently Ready pod of the members' targets became Ready; None if none."""
    ready = [
        p.ready_since
        for m in members
        for p in by_workload.get(m.workload.name, ())
        if p.ready_since is not None
    ]
    return max(ready, default=None)


def plan_group(
    analyzer: Analyzer,
    group: ModelGroup,
    config: SaturationConfig,
    policy: ScaleToZeroPolicy,
    activity: Activity,
    now: float,
) -> dict[VariantKey, Decision]:
    """A model group's decisions, keyed by variant: the analysis of its metrics, then scale
    to zero and the minimum (`enforce`) with what the loop read of its recent activity."""
    found = analyzer.analyze(group, config, now)
    version: AnalyzerVersion = "v2" if analyzer.version == "v2" else "v1"
    enforced = enforce(found, policy, activity, now, analyzer=version)
    return {(d.namespace, d.variant): d for d in enforced}


def choices(
    members: Iterable[Member], decisions: Mapping[VariantKey, Decision]
) -> list[tuple[Member, Decision | None, bool]]:
    """Spec §3.5: per member, this cycle's decision or the previous one carried over.

    Each entry is (member, chosen, fresh): `chosen` is None, or has no accelerator,
    when the member has nothing to publish; `fresh` says it was decided this cycle.
    """
    out: list[tuple[Member, Decision | None, bool]] = []
    for m in members:
        decision = decisions.get(m.key)
        out.append((m, decision or carry_over(m.state), decision is not None))
    return out
