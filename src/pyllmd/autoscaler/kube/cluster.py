"""The Kubernetes side of the autoscaler: `Cluster` and `Actuator` over the API server.

Uses lightkube's `AsyncClient` with dict-backed resource classes for
every resource (see `resource_type`). Objects are read as plain JSON dicts and
turned into the autoscaler's own types by the pure functions of
`kube/objects.py` and `decide/cycle.py` (re-exported here: `targets_index`, `target_key`).

Differences from upstream (deliberate):
- `scale` maps `scaleTargetRef` to a resource from a fixed table
  (Deployment, StatefulSet, ReplicaSet, LeaderWorkerSet) instead of API
  discovery; LeaderWorkerSet targets are also readable by `get_workload`.
- GPU requests fall back to the container's limits when a request is absent
  (what the kubelet applies to extended resources).
- `watch_events` reports VA updates and deletions and Deployment updates and
  deletions too; the controller decides what triggers a reconcile.
- VA objects are checked against the CRD schema (`api.validate_variant_autoscaling`),
  not only parsed: one that breaks it is left out of `list_variant_autoscalings`
  and reported by `list_variant_autoscalings_checked`, so the engine can tell
  its owner why (condition `OptimizationReady=False/InvalidConfiguration`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient, operators
from lightkube.core.exceptions import ApiError
from lightkube.types import OnErrorAction, OnErrorResult, PatchType

from pyllmd.autoscaler.decide.api import (
    CONTROLLER_INSTANCE_LABEL,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    CrossVersionObjectReference,
    VariantAutoscaling,
)
from pyllmd.autoscaler.decide.cycle import target_key
from pyllmd.autoscaler.decide.model import Decision, GpuNode, PodInfo, Workload
from pyllmd.autoscaler.decide.status import InvalidVariantAutoscaling, check_va
from pyllmd.autoscaler.interfaces import Actuator, Cluster
from pyllmd.autoscaler.kube.objects import (
    gpu_nodes_from,
    pod_infos,
    targets_index,
    workload_from_object,
)
from pyllmd.autoscaler.kube.selector import parse_label_selector
from pyllmd.core.kubeclient import connect, resource_type

__all__ = [
    "InvalidVariantAutoscaling",
    "KubeActuator",
    "KubeCluster",
    "UnsupportedTargetError",
    "WatchEvent",
    "check_va",
    "connect",
    "resource_type",
    "target_key",
    "targets_index",
]

log = logging.getLogger(__name__)


VariantAutoscalingResource = resource_type(GROUP, VERSION, KIND, PLURAL)
LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
LeaderWorkerSetResource = resource_type(
    "leaderworkerset.x-k8s.io", "v1", "LeaderWorkerSet", "leaderworkersets"
)
Deployment = resource_type("apps", "v1", "Deployment", "deployments")
StatefulSet = resource_type("apps", "v1", "StatefulSet", "statefulsets")
ReplicaSet = resource_type("apps", "v1", "ReplicaSet", "replicasets")
Pod = resource_type("", "v1", "Pod", "pods")
ConfigMap = resource_type("", "v1", "ConfigMap", "configmaps")
Node = resource_type("", "v1", "Node", "nodes", namespaced=False)
Namespace = resource_type("", "v1", "Namespace", "namespaces", namespaced=False)
Service = resource_type("", "v1", "Service", "services")
DEFAULT_CONFIG_MAPS = (
    "wva-variantautoscaling-config",
    "wva-saturation-scaling-config",
    "wva-model-scale-to-zero-config",
)
ALL_NAMESPACES = "*"

_SCALABLE: dict[tuple[str, str], Any] = {
    ("apps/v1", "Deployment"): Deployment,
    ("apps/v1", "StatefulSet"): StatefulSet,
    ("apps/v1", "ReplicaSet"): ReplicaSet,
    (LWS_API_VERSION, "LeaderWorkerSet"): LeaderWorkerSetResource,
}


class UnsupportedTargetError(ValueError):
    """A `scaleTargetRef` whose kind this controller cannot scale."""


@dataclass(frozen=True)
class WatchEvent:
    """Something changed: `kind` is VariantAutoscaling, Deployment or ConfigMap."""

    kind: str
    namespace: str
    name: str
    event_type: str  # ADDED | MODIFIED | DELETED
    generation: int = field(default=0, compare=False)  # metadata.generation (0 = unknown)


def _retry_watch(err: Exception, count: int) -> OnErrorResult:
    delay = min(5.0, 0.1 * 2 ** min(count, 6))
    log.warning("watch failed (%s); retrying in %.1fs", err, delay)
    return OnErrorResult(OnErrorAction.RETRY, sleep=delay)


def _dict(obj: Any) -> dict[str, Any]:
    result = obj.to_dict()
    assert isinstance(result, dict)
    return result


# -- the cluster ------------------------------------------------------------------------------


class KubeCluster:
    """`interfaces.Cluster` over a Kubernetes API server."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        namespace: str = "",
        controller_instance: str = "",
        system_namespace: str = "workload-variant-autoscaler-system",
        config_map_names: Sequence[str] = DEFAULT_CONFIG_MAPS,
        watch_timeout: int = 300,
    ) -> None:
        self.client = client
        self.namespace = namespace  # "" = all namespaces
        self.controller_instance = controller_instance
        self.system_namespace = system_namespace
        self.config_map_names = frozenset(config_map_names)
        self.watch_timeout = watch_timeout

    @property
    def _scope(self) -> str:
        return self.namespace or ALL_NAMESPACES

    def va_labels(self) -> dict[str, Any] | None:
        """The label filter of this controller's VAs (its instance label), or None."""
        if not self.controller_instance:
            return None
        return {CONTROLLER_INSTANCE_LABEL: self.controller_instance}

    async def close(self) -> None:
        await self.client.close()

    async def list_variant_autoscalings(self) -> list[VariantAutoscaling]:
        """Valid VAs in scope (instance label filter applied), skipping ones being deleted."""
        return (await self.list_variant_autoscalings_checked())[0]

    async def list_variant_autoscalings_checked(
        self,
    ) -> tuple[list[VariantAutoscaling], list[InvalidVariantAutoscaling]]:
        """VAs in scope split into valid ones and ones breaking the CRD schema.

        Objects being deleted are left out of both.
        """
        valid: list[VariantAutoscaling] = []
        invalid: list[InvalidVariantAutoscaling] = []
        listing = self.client.list(
            VariantAutoscalingResource, namespace=self._scope, labels=self.va_labels()
        )
        async for obj in listing:
            checked = check_va(_dict(obj))
            if checked.metadata.deletion_timestamp:
                continue
            if isinstance(checked, InvalidVariantAutoscaling):
                log.debug("invalid VariantAutoscaling %s/%s: %s", *checked.key, checked.message)
                invalid.append(checked)
            else:
                valid.append(checked)
        return valid, invalid

    async def get_variant_autoscaling(self, namespace: str, name: str) -> VariantAutoscaling | None:
        """The VA, or None when it does not exist or breaks the CRD schema."""
        obj = await self._get(VariantAutoscalingResource, name, namespace)
        checked = check_va(obj) if obj is not None else None
        return checked if isinstance(checked, VariantAutoscaling) else None

    async def _get(self, res: Any, name: str, namespace: str | None) -> dict[str, Any] | None:
        try:
            if namespace is None:
                return _dict(await self.client.get(res, name))
            return _dict(await self.client.get(res, name, namespace=namespace))
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise

    async def get_workload(
        self, namespace: str, ref: CrossVersionObjectReference
    ) -> Workload | None:
        """The target: a LeaderWorkerSet for LWS refs, else the Deployment named `ref.name`."""
        if (ref.api_version, ref.kind) == (LWS_API_VERSION, "LeaderWorkerSet"):
            res: Any = LeaderWorkerSetResource
        else:
            res = Deployment
        obj = await self._get(res, ref.name, namespace)
        return workload_from_object(obj) if obj is not None else None

    async def patch_status(self, va: VariantAutoscaling, status: Mapping[str, Any]) -> None:
        """JSON merge patch of the VA's status subresource."""
        await self.client.patch(
            VariantAutoscalingResource.Status,
            va.metadata.name,
            {"status": dict(status)},
            namespace=va.metadata.namespace,
            patch_type=PatchType.MERGE,
        )

    async def scale(self, namespace: str, ref: CrossVersionObjectReference, replicas: int) -> bool:
        """Set replicas through the scale subresource only; False when already there."""
        res = _SCALABLE.get((ref.api_version or "apps/v1", ref.kind))
        if res is None:
            raise UnsupportedTargetError(f"cannot scale {ref.kind} {ref.api_version!r}")
        for attempt in range(3):
            current = await self.client.get(res.Scale, ref.name, namespace=namespace)
            if (current.spec.replicas or 0) == replicas:
                return False
            current.spec.replicas = replicas
            try:
                await self.client.replace(current, ref.name, namespace=namespace)
                return True
            except ApiError as err:
                if err.status.code != 409 or attempt == 2:
                    raise
        return True  # pragma: no cover - the loop returns or raises

    async def pods(self, namespace: str) -> list[PodInfo]:
        """Pods of `namespace` owned by a workload, with their Ready time."""
        pods = [_dict(p) async for p in self.client.list(Pod, namespace=namespace)]
        rss = [_dict(r) async for r in self.client.list(ReplicaSet, namespace=namespace)]
        return pod_infos(pods, rss)

    async def config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        obj = await self._get(ConfigMap, name, namespace)
        return dict(obj.get("data") or {}) if obj is not None else None

    async def gpu_nodes(self, selector: str = "") -> list[GpuNode]:
        """GPU inventory of nodes matching `selector` (a label selector string)."""
        params: dict[str, Any] = {}
        if selector:
            params["labels"] = _selector_arg(selector)
        nodes = [_dict(n) async for n in self.client.list(Node, **params)]
        return gpu_nodes_from(nodes)

    async def namespace_labels(self, name: str) -> Mapping[str, str]:
        obj = await self._get(Namespace, name, None)
        return dict(((obj or {}).get("metadata") or {}).get("labels") or {})

    async def namespace_annotations(self, name: str) -> Mapping[str, str]:
        obj = await self._get(Namespace, name, None)
        return dict(((obj or {}).get("metadata") or {}).get("annotations") or {})

    async def watch_events(self) -> AsyncIterator[WatchEvent]:
        """VA, Deployment and well-known ConfigMap changes, reconnecting on errors."""
        queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        streams: list[tuple[Any, str, dict[str, Any] | None]] = [
            (VariantAutoscalingResource, self._scope, self.va_labels()),
            (Deployment, self._scope, None),
        ]
        cm_scopes = {self.namespace, self.system_namespace} if self.namespace else {ALL_NAMESPACES}
        streams += [(ConfigMap, ns, None) for ns in sorted(cm_scopes)]
        tasks = [asyncio.create_task(self._pump(queue, *s)) for s in streams]
        try:
            while True:
                yield await queue.get()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _pump(
        self,
        queue: asyncio.Queue[WatchEvent],
        res: Any,
        namespace: str,
        labels: dict[str, Any] | None,
    ) -> None:
        kind = res.__name__
        while True:
            try:
                stream = self.client.watch(
                    res,
                    namespace=namespace,
                    labels=labels,
                    server_timeout=self.watch_timeout,
                    on_error=_retry_watch,
                )
                async for event_type, obj in stream:
                    meta = obj.get("metadata") or {}
                    name, ns = meta.get("name", ""), meta.get("namespace", "")
                    if kind == "ConfigMap" and name not in self.config_map_names:
                        continue
                    generation = int(meta.get("generation") or 0)
                    await queue.put(WatchEvent(kind, ns, name, event_type, generation))
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - keep watching whatever happened
                log.warning("%s watch ended (%s); restarting", kind, err)
                await asyncio.sleep(1.0)


def _selector_arg(selector: str) -> list[tuple[str, Any]]:
    """A selector string as lightkube `labels` pairs; raises ValueError when malformed."""
    pairs: list[tuple[str, Any]] = []
    for req in parse_label_selector(selector):
        op: Any
        if req.op == "exists":
            op = operators.exists()
        elif req.op == "!":
            op = operators.not_exists()
        elif req.op == "=":
            op = operators.equal(req.values[0])
        elif req.op == "!=":
            op = operators.not_equal(req.values[0])
        elif req.op == "in":
            op = operators.in_(req.values)
        elif req.op == "notin":
            op = operators.not_in(req.values)
        else:  # ">" / "<": no lightkube helper, same wire form
            op = operators.BinaryOperator(req.op, req.op, req.values[0])
        pairs.append((req.key, op))
    return pairs


class KubeActuator:
    """`interfaces.Actuator` that sets each decision's target through the scale subresource.

    Only for direct actuation; by default the controller publishes gauges and
    an HPA/KEDA scales.
    """

    def __init__(self, cluster: KubeCluster) -> None:
        self.cluster = cluster

    async def apply(self, decisions: Sequence[Decision]) -> None:
        for decision in decisions:
            va = await self.cluster.get_variant_autoscaling(decision.namespace, decision.variant)
            if va is None:
                log.info("VA %s/%s vanished; not scaling", decision.namespace, decision.variant)
                continue
            ref = va.spec.scale_target_ref
            if await self.cluster.scale(decision.namespace, ref, decision.target_replicas):
                log.info(
                    "scaled %s %s/%s to %d",
                    ref.kind,
                    decision.namespace,
                    ref.name,
                    decision.target_replicas,
                )


def _conforms(cluster: KubeCluster, actuator: KubeActuator) -> tuple[Cluster, Actuator]:
    """Type-level check that the classes implement the interfaces."""
    return cluster, actuator
