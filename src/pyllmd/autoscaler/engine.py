"""The saturation engine: one cycle of list → collect → analyze → enforce → limit → apply.

This is the imperative shell around the pure decision code (analyzers,
`enforce`, the limiter): it reads VAs, targets and ConfigMaps from a
`Cluster`, metrics from Prometheus, then publishes the `wva_*` gauges, writes
each VA's status and, when an actuator is given (local stack, or direct
actuation on Kubernetes), enacts the targets. One bad VA or model group never
stops the cycle for the others.

Beyond upstream (documented in the differences page):
- VAs in a namespace annotated `wva.llmd.ai/exclude=true` (other than the
  watch namespace) are skipped altogether, and that namespace's local
  ConfigMaps are ignored; upstream's engines still process such VAs.
- A VA that breaks the CRD schema (when the cluster reports such objects) gets
  `OptimizationReady=False/InvalidConfiguration` with the validation message.
- `resolve_targets` is the light pass the controller runs on watch events:
  `TargetResolved` of the VAs concerned, written at once, between cycles.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from pyllmd.autoscaler import api
from pyllmd.autoscaler.analyze import make_analyzer
from pyllmd.autoscaler.analyze.capacity_store import V2State
from pyllmd.autoscaler.analyze.vllm_args import parse_vllm_args
from pyllmd.autoscaler.collect import CollectionResult
from pyllmd.autoscaler.configmaps import (
    ScaleToZeroConfig,
    cycle_settings,
    parse_saturation_configmap,
    parse_scale_to_zero,
    resolve_saturation,
    resolve_scale_to_zero,
)
from pyllmd.autoscaler.enforce import Activity, AnalyzerVersion, carry_over, enforce, safety_net
from pyllmd.autoscaler.interfaces import (
    Actuator,
    Analyzer,
    Cluster,
    Container,
    PodInfo,
    Workload,
)
from pyllmd.autoscaler.limiter import inventory, limit_by_nodes
from pyllmd.autoscaler.metrics import ControllerMetrics
from pyllmd.autoscaler.model import (
    Decision,
    ModelGroup,
    SaturationConfig,
    ScaleToZeroPolicy,
    VariantState,
    VllmParams,
    parse_cost,
)
from pyllmd.autoscaler.reconcile import VaScope, excluded_namespaces, flag_invalid, write_target
from pyllmd.autoscaler.status import InvalidVariantAutoscaling, StatusBook, VariantKey
from pyllmd.core.clock import Clock

log = logging.getLogger(__name__)

SCALE_TO_ZERO_CONFIG_MAP = "wva-model-scale-to-zero-config"


class GroupCollector(Protocol):
    """What the engine needs of the metrics source (PrometheusMetricsSource)."""

    async def collect(
        self, group: ModelGroup, pod_variants: Mapping[str, str] | None = None
    ) -> CollectionResult:
        """Replica metrics of a group, classified ok / missing / stale / error."""
        ...

    async def request_count(
        self, namespace: str, model_id: str, retention_seconds: float
    ) -> float | None:
        """Successful requests over the retention window; None when unknown."""
        ...

    async def recent_success(
        self, namespace: str, model_id: str, retention_seconds: float
    ) -> bool | None:
        """Whether a success was first seen within the retention window; None when unknown."""
        ...

    async def scheduler_queue(self, model_id: str) -> tuple[float, float]:
        """EPP flow-control queue (size, bytes) of a model."""
        ...


@dataclass(frozen=True)
class EngineSettings:
    """Names and switches the engine needs from the controller configuration."""

    system_namespace: str = "workload-variant-autoscaler-system"
    saturation_config_map: str = "wva-saturation-scaling-config"
    scale_to_zero_config_map: str = SCALE_TO_ZERO_CONFIG_MAP
    controller_instance: str = ""
    env_scale_to_zero: bool = False
    node_selector: str = ""
    limited_mode: bool = False  # WVA_LIMITED_MODE: log the GPU inventory every cycle
    watch_namespace: str = ""  # never excluded by the namespace annotation (as upstream)


@dataclass(frozen=True, slots=True)
class Member:
    """An active VA with its target and the engine's view of both."""

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


class SaturationEngine:
    """Runs saturation cycles against a cluster, a metrics source and the outputs."""

    def __init__(
        self,
        cluster: Cluster,
        source: GroupCollector,
        metrics: ControllerMetrics,
        book: StatusBook,
        clock: Clock,
        settings: EngineSettings = EngineSettings(),
        actuator: Actuator | None = None,
    ) -> None:
        self.cluster = cluster
        self.source = source
        self.metrics = metrics
        self.book = book
        self.clock = clock
        self.settings = settings
        self.actuator = actuator
        self.v2_state = V2State()
        self._published: set[VariantKey] = set()
        self._params: dict[VariantKey, tuple[tuple[Container, ...], VllmParams]] = {}
        self._pods: dict[str, dict[str, list[PodInfo]]] = {}  # per cycle: ns → workload → pods
        self._last_global: dict[str, Mapping[str, str]] = {}
        self._lock = asyncio.Lock()  # a cycle and an event-driven pass never interleave
        self.scope = VaScope(cluster, settings.controller_instance, settings.watch_namespace)

    def mine(self, va: api.VariantAutoscaling) -> bool:
        """Multi-controller isolation: only VAs labelled with this controller's instance."""
        return self.scope.mine(va)

    async def active_vas(
        self,
    ) -> tuple[list[api.VariantAutoscaling], list[InvalidVariantAutoscaling]]:
        """This controller's VAs outside excluded namespaces, and the invalid ones among them."""
        return await self.scope.list()

    async def cycle(self) -> list[Decision]:
        """One saturation cycle; returns the decisions it applied."""
        async with self._lock:
            return await self._cycle()

    async def _cycle(self) -> list[Decision]:
        now = datetime.fromtimestamp(self.clock.wall(), UTC)
        self._pods.clear()
        if self.settings.limited_mode:
            await self._log_inventory()
        vas, invalid = await self.active_vas()
        configs = await self.read_configs({va.metadata.namespace for va in vas})
        members: list[Member] = []
        for va in vas:
            workload = await self.cluster.get_workload(
                va.metadata.namespace, va.spec.scale_target_ref
            )
            self.book.target(va, workload is not None)
            if workload is not None and not workload.deleting and _spec_replicas(workload) > 0:
                state = variant_state(va, workload, self._vllm_params(workload))
                members.append(Member(va, workload, state, (state.namespace, state.name)))
        decisions = await self._decide(members, configs, unambiguous(vas), now.timestamp())
        if evicted := self.v2_state.evict(now.timestamp()):
            log.debug("V2 capacity store: %d expired entries dropped", evicted)
        applied = self._apply(members, decisions)
        await self._write_statuses(vas, now)
        await flag_invalid(self.cluster, invalid, now)
        self._forget_gone({(va.metadata.namespace, va.metadata.name) for va in vas})
        if self.actuator is not None and applied:
            await self.actuator.apply(applied)
        return applied

    async def _log_inventory(self) -> None:
        """Limited mode (as upstream): list the GPU inventory each cycle, for the logs only."""
        try:
            nodes = await self.cluster.gpu_nodes(self.settings.node_selector)
        except Exception as e:
            log.warning("GPU discovery failed: %s", e)
            return
        log.info("limited mode: GPU inventory %s", inventory(nodes))

    def _vllm_params(self, workload: Workload) -> VllmParams:
        """Parsed vLLM arguments of a target, re-parsed only when its containers change."""
        key = (workload.namespace, workload.name)
        cached = self._params.get(key)
        if cached is not None and cached[0] == workload.containers:
            return cached[1]
        params = parse_vllm_args(workload.containers)
        self._params[key] = (workload.containers, params)
        return params

    async def resolve_targets(
        self, namespace: str, *, va_name: str = "", target_name: str = ""
    ) -> list[VariantKey]:
        """The light pass run on a watch event: `TargetResolved` of the matching VAs, now.

        Matches the VA named `va_name`, or the VAs whose Deployment target is
        `target_name`, in `namespace`. A VA is written only when the condition
        changes, so the events of our own status writes end the chain. An
        invalid VA named `va_name` gets its `InvalidConfiguration` condition.
        Returns the VAs written.
        """
        async with self._lock:
            now = datetime.fromtimestamp(self.clock.wall(), UTC)
            vas, invalid = await self.active_vas()
            if va_name:
                mine = [i for i in invalid if i.key == (namespace, va_name)]
                await flag_invalid(self.cluster, mine, now)
            written: list[VariantKey] = []
            for va in vas:
                ref = va.spec.scale_target_ref
                if va.metadata.namespace != namespace:
                    continue
                if va_name and va.metadata.name != va_name:
                    continue
                if target_name and (
                    ref.name != target_name
                    or ref.kind != "Deployment"
                    or ref.api_version not in ("", "apps/v1")
                ):
                    continue
                if await write_target(self.cluster, va, now):
                    written.append((namespace, va.metadata.name))
            return written

    async def read_configs(self, namespaces: set[str]) -> Configs:
        """The saturation and scale-to-zero ConfigMaps, global and per namespace.

        Namespace-local ConfigMaps of excluded namespaces are ignored.
        """
        s = self.settings
        sat_global, _ = await self._saturation(s.system_namespace)
        s2z_global = await self._scale_to_zero(s.system_namespace)
        sat_local: dict[str, Mapping[str, SaturationConfig]] = {}
        s2z_local: dict[str, ScaleToZeroConfig] = {}
        local = namespaces - {s.system_namespace}
        local -= await excluded_namespaces(self.cluster, local, s.watch_namespace)
        for ns in sorted(local):
            sat_local[ns], _ = await self._saturation(ns)
            s2z_local[ns] = await self._scale_to_zero(ns)
        return Configs(sat_global, sat_local, s2z_global, s2z_local)

    async def _config_data(self, namespace: str, name: str) -> Mapping[str, str] | None:
        """A ConfigMap's data; a global one deleted after it was read keeps its last values."""
        data = await self.cluster.config_map(namespace, name)
        if namespace != self.settings.system_namespace:
            return data
        if data is None:
            return self._last_global.get(name)
        self._last_global[name] = data
        return data

    async def _saturation(self, namespace: str) -> tuple[Mapping[str, SaturationConfig], list[str]]:
        data = await self._config_data(namespace, self.settings.saturation_config_map)
        entries, errors = parse_saturation_configmap(data or {})
        for error in errors:
            log.warning("namespace=%s %s", namespace, error)
        return entries, errors

    async def _scale_to_zero(self, namespace: str) -> ScaleToZeroConfig:
        data = await self._config_data(namespace, self.settings.scale_to_zero_config_map)
        config, notes = parse_scale_to_zero(data or {})
        for note in notes:
            log.warning("namespace=%s %s", namespace, note)
        return config

    async def _decide(
        self,
        members: Sequence[Member],
        configs: Configs,
        clear_targets: set[VariantKey],
        now: float,
    ) -> dict[VariantKey, Decision]:
        analyzer_name, limiter_on = cycle_settings(configs.saturation_global)
        analyzer = make_analyzer(analyzer_name, self.v2_state)
        groups: dict[tuple[str, str], list[Member]] = {}
        for m in members:  # not setdefault(key, []): that builds a list per member
            key = (m.va.spec.model_id, m.va.metadata.namespace)
            group = groups.get(key)
            if group is None:
                groups[key] = [m]
            else:
                group.append(m)
        decisions: dict[VariantKey, Decision] = {}
        for (model_id, namespace), group_members in sorted(groups.items()):
            try:
                found = await self._decide_group(
                    model_id, namespace, group_members, configs, clear_targets, analyzer, now
                )
            except Exception:  # one group's failure must not stop the others
                log.exception("model group failed model=%s namespace=%s", model_id, namespace)
                continue
            decisions.update(found)
        if limiter_on and decisions and analyzer.version == "v1":  # upstream: V1 only
            decisions = await self._limit(decisions)
        return decisions

    async def _pods_of(self, namespace: str) -> dict[str, list[PodInfo]]:
        """Workload → its pods, read once per namespace per cycle."""
        found = self._pods.get(namespace)
        if found is None:
            found = {}
            for pod in await self.cluster.pods(namespace):  # not setdefault: a list per pod
                own = found.get(pod.workload)
                if own is None:
                    found[pod.workload] = [pod]
                else:
                    own.append(pod)
            self._pods[namespace] = found
        return found

    async def _decide_group(
        self,
        model_id: str,
        namespace: str,
        members: Sequence[Member],
        configs: Configs,
        clear_targets: set[VariantKey],
        analyzer: Analyzer,
        now: float,
    ) -> dict[VariantKey, Decision]:
        cfg = resolve_saturation(
            configs.saturation_global,
            configs.saturation_local.get(namespace, {}),
            namespace,
            model_id,
        )
        if cfg is None:
            log.info("no saturation config default entry; skipping model=%s", model_id)
            return {}
        usable = [m for m in members if m.key in clear_targets]
        by_workload = await self._pods_of(namespace)
        pod_variants = {
            pod.name: m.va.metadata.name
            for m in usable
            for pod in by_workload.get(m.workload.name, ())
        }
        queue_size, queue_bytes = await self.source.scheduler_queue(model_id)
        states = tuple(m.state for m in usable)
        group = ModelGroup(model_id, namespace, states, (), queue_size, queue_bytes)
        result = await self.source.collect(group, pod_variants)
        if result.status == "error":
            self._safety_net(members, result)
            return {}
        for m in members:
            self.book.metrics(m.key, result.status == "ok", result.reason, result.detail)
        if not result.replicas:
            return {}
        group = ModelGroup(model_id, namespace, states, result.replicas, queue_size, queue_bytes)
        found = analyzer.analyze(group, cfg, now)
        policy = resolve_scale_to_zero(
            configs.s2z_global,
            configs.s2z_local.get(namespace, ScaleToZeroConfig()),
            model_id,
            self.settings.env_scale_to_zero,
        )
        activity = Activity(None)
        if policy.enabled:
            activity = await self._activity(namespace, model_id, members, by_workload, policy)
        version: AnalyzerVersion = "v2" if analyzer.version == "v2" else "v1"
        found = enforce(found, policy, activity, now, analyzer=version)
        return {(d.namespace, d.variant): d for d in found}

    async def _activity(
        self,
        namespace: str,
        model_id: str,
        members: Sequence[Member],
        by_workload: Mapping[str, Sequence[PodInfo]],
        policy: ScaleToZeroPolicy,
    ) -> Activity:
        """What says the model was used recently; the guards are asked only before a zeroing."""
        retention = policy.retention_seconds
        count = await self.source.request_count(namespace, model_id, retention)
        if count != 0:
            return Activity(count)
        recent = await self.source.recent_success(namespace, model_id, retention)
        if recent is not False:
            return Activity(count, recent)
        ready = [
            p.ready_since
            for m in members
            for p in by_workload.get(m.workload.name, ())
            if p.ready_since is not None
        ]
        return Activity(count, False, max(ready, default=None))

    def _safety_net(self, members: Sequence[Member], result: CollectionResult) -> None:
        """Spec §3.6: keep publishing the previous desired replicas; status says why."""
        log.warning("collection failed: %s", result.detail)
        for m in members:
            self.book.metrics(m.key, False, api.REASON_PROMETHEUS_ERROR, result.detail)
        for d in safety_net([m.state for m in members]):
            self.metrics.publish(d.variant, d.namespace, d.accelerator, d.current_replicas,
                                 d.target_replicas, d.reason)  # fmt: skip
            self._published.add((d.namespace, d.variant))

    async def _limit(self, decisions: dict[VariantKey, Decision]) -> dict[VariantKey, Decision]:
        try:
            nodes = await self.cluster.gpu_nodes(self.settings.node_selector)
        except Exception as e:  # limiter failure: the original decisions stand
            log.warning("GPU discovery failed, limiter skipped: %s", e)
            return decisions
        limited = limit_by_nodes(list(decisions.values()), nodes)
        return {(d.namespace, d.variant): d for d in limited}

    def _apply(
        self, members: Sequence[Member], decisions: Mapping[VariantKey, Decision]
    ) -> list[Decision]:
        """Spec §3.5: a decision, or the previous one carried over; gauges and status."""
        applied: list[Decision] = []
        for m in members:
            decision = decisions.get(m.key)
            chosen = decision or carry_over(m.state)
            if chosen is None or not chosen.accelerator:
                self.book.metrics(m.key, False, api.REASON_METRICS_MISSING, "", keep_worse=True)
                continue
            self.metrics.publish(
                chosen.variant, chosen.namespace, chosen.accelerator,
                m.workload.status_replicas, chosen.target_replicas, chosen.reason,
            )  # fmt: skip
            self._published.add(m.key)
            self.book.decision(m.key, chosen, fresh=decision is not None)
            applied.append(chosen)
        return applied

    async def _write_statuses(self, vas: Sequence[api.VariantAutoscaling], now: datetime) -> None:
        for va in vas:
            patch = self.book.patch_for(va, now)
            if patch is None:
                continue
            try:
                await self.cluster.patch_status(va, patch)
            except Exception as e:  # a missing or conflicting VA must not stop the others
                log.warning("status patch failed va=%s/%s: %s", va.metadata.namespace,
                            va.metadata.name, e)  # fmt: skip

    def _forget_gone(self, present: set[VariantKey]) -> None:
        """Remove the series of VAs that no longer exist."""
        for key in sorted(self._published - present):
            self.metrics.forget(*key)
            self.book.forget(key)
        self._published &= present


def _spec_replicas(workload: Workload) -> int:
    """`spec.replicas`, nil counting as 1."""
    return 1 if workload.spec_replicas is None else workload.spec_replicas
