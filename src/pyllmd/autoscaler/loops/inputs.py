"""What a saturation cycle reads: VAs, targets, pods, ConfigMaps, the GPU inventory, metrics.

`CycleInputs` is the reading half of the saturation loop's shell: every call is
I/O against the `Cluster` or the `MetricsCollector`, with the caches that
belong to reading (pods once per namespace per cycle, parsed vLLM arguments
until a target's containers change, the last copy of a global ConfigMap that
was deleted). The choices are `decide/cycle.py`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from pyllmd.autoscaler.collect.collector import MetricsCollector
from pyllmd.autoscaler.decide import api
from pyllmd.autoscaler.decide.analyze.vllm_args import parse_vllm_args
from pyllmd.autoscaler.decide.configmaps import ScaleToZeroConfig
from pyllmd.autoscaler.decide.cycle import Configs, EngineSettings, Member, newest_ready
from pyllmd.autoscaler.decide.enforce import Activity
from pyllmd.autoscaler.decide.model import (
    Container,
    GpuNode,
    PodInfo,
    SaturationConfig,
    ScaleToZeroPolicy,
    VllmParams,
    Workload,
)
from pyllmd.autoscaler.decide.status import InvalidVariantAutoscaling, VariantKey
from pyllmd.autoscaler.interfaces import Cluster
from pyllmd.autoscaler.loops.reconcile import VaScope, excluded_namespaces
from pyllmd.autoscaler.yaml12 import parse_saturation_configmap, parse_scale_to_zero

log = logging.getLogger(__name__)


class CycleInputs:
    """Reads a cycle's inputs from a cluster and a metrics collector."""

    def __init__(
        self, cluster: Cluster, source: MetricsCollector, settings: EngineSettings
    ) -> None:
        self.cluster = cluster
        self.source = source
        self.settings = settings
        self.scope = VaScope(cluster, settings.controller_instance, settings.watch_namespace)
        self._params: dict[VariantKey, tuple[tuple[Container, ...], VllmParams]] = {}
        self._pods: dict[str, dict[str, list[PodInfo]]] = {}  # per cycle: ns → workload → pods
        self._last_global: dict[str, Mapping[str, str]] = {}
        # The collector's reads as they are (bound methods: no wrapper on the per-group path).
        self.scheduler_queue = source.scheduler_queue  # EPP flow-control queue (size, bytes)
        self.collect = source.collect  # replica metrics, classified ok/missing/stale/error

    def begin(self) -> None:
        """Start a cycle: pods are read afresh."""
        self._pods.clear()

    async def vas(self) -> tuple[list[api.VariantAutoscaling], list[InvalidVariantAutoscaling]]:
        """This controller's VAs outside excluded namespaces, and the invalid ones among them."""
        return await self.scope.list()

    async def workloads(self, vas: Sequence[api.VariantAutoscaling]) -> list[Workload | None]:
        """Each VA's scale target, in order; None where it does not exist."""
        get = self.cluster.get_workload
        return [await get(va.metadata.namespace, va.spec.scale_target_ref) for va in vas]

    def vllm_params(self, workload: Workload) -> VllmParams:
        """Parsed vLLM arguments of a target, re-parsed only when its containers change."""
        key = (workload.namespace, workload.name)
        cached = self._params.get(key)
        if cached is not None and cached[0] == workload.containers:
            return cached[1]
        params = parse_vllm_args(workload.containers)
        self._params[key] = (workload.containers, params)
        return params

    async def pods_of(self, namespace: str) -> dict[str, list[PodInfo]]:
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

    async def gpu_nodes(self) -> list[GpuNode]:
        """GPU inventory of the selected nodes (raises on a discovery failure)."""
        return await self.cluster.gpu_nodes(self.settings.node_selector)

    async def read_configs(self, namespaces: set[str]) -> Configs:
        """The saturation and scale-to-zero ConfigMaps, global and per namespace.

        Namespace-local ConfigMaps of excluded namespaces are ignored.
        """
        s = self.settings
        sat_global = await self._saturation(s.system_namespace)
        s2z_global = await self._scale_to_zero(s.system_namespace)
        sat_local: dict[str, Mapping[str, SaturationConfig]] = {}
        s2z_local: dict[str, ScaleToZeroConfig] = {}
        local = namespaces - {s.system_namespace}
        local -= await excluded_namespaces(self.cluster, local, s.watch_namespace)
        for ns in sorted(local):
            sat_local[ns] = await self._saturation(ns)
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

    async def _saturation(self, namespace: str) -> Mapping[str, SaturationConfig]:
        data = await self._config_data(namespace, self.settings.saturation_config_map)
        entries, errors = parse_saturation_configmap(data or {})
        for error in errors:
            log.warning("namespace=%s %s", namespace, error)
        return entries

    async def _scale_to_zero(self, namespace: str) -> ScaleToZeroConfig:
        data = await self._config_data(namespace, self.settings.scale_to_zero_config_map)
        config, notes = parse_scale_to_zero(data or {})
        for note in notes:
            log.warning("namespace=%s %s", namespace, note)
        return config

    async def activity(
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
        return Activity(count, False, newest_ready(members, by_workload))
