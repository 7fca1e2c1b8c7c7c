"""The saturation engine: one cycle of list → collect → analyze → enforce → limit → apply.

The engine runs the cycle in three parts: `CycleInputs` (`inputs.py`) reads
VAs, targets, pods and ConfigMaps from a `Cluster` and metrics from the
`MetricsCollector`; the pure steps of `decide/cycle.py` (with the analyzers,
`enforce` and the limiter) choose; `CycleOutputs` (`outputs.py`) publishes the
`wva_*` gauges, writes each VA's status and, when an actuator is given (local
stack, or direct actuation on Kubernetes), enacts the targets. One bad VA or
model group never stops the cycle for the others.

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
from collections.abc import Sequence
from datetime import UTC, datetime

from pyllmd.autoscaler.collect.collector import MetricsCollector
from pyllmd.autoscaler.decide import api
from pyllmd.autoscaler.decide.analyze import Analyzer, make_analyzer
from pyllmd.autoscaler.decide.analyze.capacity_store import V2State
from pyllmd.autoscaler.decide.configmaps import (
    ScaleToZeroConfig,
    cycle_settings,
    resolve_saturation,
    resolve_scale_to_zero,
)
from pyllmd.autoscaler.decide.cycle import (
    Configs,
    EngineSettings,
    Member,
    choices,
    model_groups,
    plan_group,
    pod_variants,
    unambiguous,
)
from pyllmd.autoscaler.decide.cycle import (
    members as cycle_members,
)
from pyllmd.autoscaler.decide.enforce import Activity
from pyllmd.autoscaler.decide.limiter import inventory, limit_by_nodes
from pyllmd.autoscaler.decide.model import Decision, ModelGroup
from pyllmd.autoscaler.decide.status import InvalidVariantAutoscaling, StatusBook, VariantKey
from pyllmd.autoscaler.interfaces import Actuator, Cluster
from pyllmd.autoscaler.loops.inputs import CycleInputs
from pyllmd.autoscaler.loops.metrics import ControllerMetrics
from pyllmd.autoscaler.loops.outputs import CycleOutputs
from pyllmd.autoscaler.loops.reconcile import VaScope, flag_invalid, write_target
from pyllmd.core.clock import Clock
from pyllmd.core.plugins import PluginLoadError

log = logging.getLogger(__name__)

DEFAULT_SETTINGS = EngineSettings()


class SaturationEngine:
    """Runs saturation cycles against a cluster, a metrics source and the outputs."""

    def __init__(
        self,
        cluster: Cluster,
        source: MetricsCollector,
        metrics: ControllerMetrics,
        book: StatusBook,
        clock: Clock,
        settings: EngineSettings = DEFAULT_SETTINGS,
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
        self.inputs = CycleInputs(cluster, source, settings)
        self.outputs = CycleOutputs(cluster, metrics, book, actuator)
        self._lock = asyncio.Lock()  # a cycle and an event-driven pass never interleave

    @property
    def scope(self) -> VaScope:
        """Which VAs this controller handles."""
        return self.inputs.scope

    def mine(self, va: api.VariantAutoscaling) -> bool:
        """Multi-controller isolation: only VAs labelled with this controller's instance."""
        return self.scope.mine(va)

    async def active_vas(
        self,
    ) -> tuple[list[api.VariantAutoscaling], list[InvalidVariantAutoscaling]]:
        """This controller's VAs outside excluded namespaces, and the invalid ones among them."""
        return await self.inputs.vas()

    async def read_configs(self, namespaces: set[str]) -> Configs:
        """The saturation and scale-to-zero ConfigMaps, global and per namespace."""
        return await self.inputs.read_configs(namespaces)

    async def cycle(self) -> list[Decision]:
        """One saturation cycle; returns the decisions it applied."""
        async with self._lock:
            return await self._cycle()

    async def _cycle(self) -> list[Decision]:
        now = datetime.fromtimestamp(self.clock.wall(), UTC)
        inputs, outputs = self.inputs, self.outputs
        inputs.begin()
        if self.settings.limited_mode:
            await self._log_inventory()
        vas, invalid = await inputs.vas()
        configs = await inputs.read_configs({va.metadata.namespace for va in vas})
        workloads = await inputs.workloads(vas)
        outputs.targets(vas, workloads)
        members = cycle_members(vas, workloads, inputs.vllm_params)
        decisions = await self._decide(members, configs, unambiguous(vas), now.timestamp())
        if evicted := self.v2_state.evict(now.timestamp()):
            log.debug("V2 capacity store: %d expired entries dropped", evicted)
        applied = outputs.publish(choices(members, decisions))
        await outputs.write_statuses(vas, now)
        await outputs.flag_invalid(invalid, now)
        outputs.forget_gone({(va.metadata.namespace, va.metadata.name) for va in vas})
        await outputs.actuate(applied)
        return applied

    async def _log_inventory(self) -> None:
        """Limited mode (as upstream): list the GPU inventory each cycle, for the logs only."""
        try:
            nodes = await self.inputs.gpu_nodes()
        except Exception as e:
            log.warning("GPU discovery failed: %s", e)
            return
        log.info("limited mode: GPU inventory %s", inventory(nodes))

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

    async def _decide(
        self,
        members: Sequence[Member],
        configs: Configs,
        clear_targets: set[VariantKey],
        now: float,
    ) -> dict[VariantKey, Decision]:
        analyzer_name, limiter_on = cycle_settings(configs.saturation_global)
        try:
            analyzer = make_analyzer(analyzer_name, self.v2_state)
        except PluginLoadError as e:  # an installed analyzer plugin is broken: no decisions
            log.error("analyzerName %s: %s", analyzer_name, e)
            return {}
        decisions: dict[VariantKey, Decision] = {}
        for (model_id, namespace), group_members in model_groups(members):
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
        by_workload = await self.inputs.pods_of(namespace)
        queue_size, queue_bytes = await self.inputs.scheduler_queue(model_id)
        states = tuple(m.state for m in usable)
        group = ModelGroup(model_id, namespace, states, (), queue_size, queue_bytes)
        result = await self.inputs.collect(group, pod_variants(usable, by_workload))
        if result.status == "error":
            self.outputs.safety_net(members, result)
            return {}
        self.outputs.collected(members, result)
        if not result.replicas:
            return {}
        group = ModelGroup(model_id, namespace, states, result.replicas, queue_size, queue_bytes)
        policy = resolve_scale_to_zero(
            configs.s2z_global,
            configs.s2z_local.get(namespace, ScaleToZeroConfig()),
            model_id,
            self.settings.env_scale_to_zero,
        )
        activity = Activity(None)
        if policy.enabled:
            activity = await self.inputs.activity(namespace, model_id, members, by_workload, policy)
        return plan_group(analyzer, group, cfg, policy, activity, now)

    async def _limit(self, decisions: dict[VariantKey, Decision]) -> dict[VariantKey, Decision]:
        try:
            nodes = await self.inputs.gpu_nodes()
        except Exception as e:  # limiter failure: the original decisions stand
            log.warning("GPU discovery failed, limiter skipped: %s", e)
            return decisions
        limited = limit_by_nodes(list(decisions.values()), nodes)
        return {(d.namespace, d.variant): d for d in limited}
