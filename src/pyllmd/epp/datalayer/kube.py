"""The Kubernetes data sources (spec §3.1-3.5): InferencePool and pods, objectives, rewrites.

The shell (`PodDiscovery`, `informers`) lists then watches with `core.informer`
and keeps a local cache, like a controller-runtime informer; everything it decides
goes through the pure functions here (`pool_from_object`, `pod_ready`,
`desired_endpoints`), `datastore.endpoints_for_pod` and the stores of
`objectives.py`. Resources are dict-backed lightkube classes
(`core.kubeclient.resource_type`), decoded as plain JSON so an object a strict
model would reject cannot stop discovery.

Deviation from the pinned upstream (spec §3.3, fixed in later GIE): a change of
the pool's `targetPorts` resyncs like a selector change, so endpoints of removed
ports go away and new ports appear at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient

from pyllmd.core.informer import Informer, Obj
from pyllmd.core.kubeclient import resource_type
from pyllmd.epp.datastore import Datastore, endpoints_for_pod
from pyllmd.epp.objectives import GROUP_V1, GROUP_V1ALPHA2, Objectives, Rewrites
from pyllmd.epp.scheduling.types import Endpoint

__all__ = [
    "InferenceModelRewrite",
    "InferenceObjective",
    "PodDiscovery",
    "PoolSpec",
    "desired_endpoints",
    "informers",
    "pod_endpoints",
    "pod_ready",
    "pool_from_object",
    "pool_resource",
]

log = logging.getLogger(__name__)

Pod = resource_type("", "v1", "Pod", "pods")
InferencePoolV1 = resource_type(GROUP_V1, "v1", "InferencePool", "inferencepools")
InferencePoolV1Alpha2 = resource_type(GROUP_V1ALPHA2, "v1alpha2", "InferencePool", "inferencepools")
InferenceObjective = resource_type(
    GROUP_V1ALPHA2, "v1alpha2", "InferenceObjective", "inferenceobjectives"
)
InferenceModelRewrite = resource_type(
    GROUP_V1ALPHA2, "v1alpha2", "InferenceModelRewrite", "inferencemodelrewrites"
)


def pool_resource(pool_group: str) -> Any:
    """The InferencePool class `--pool-group` selects (the x-k8s.io group means v1alpha2)."""
    return InferencePoolV1Alpha2 if pool_group == GROUP_V1ALPHA2 else InferencePoolV1


# ---------------------------------------------------------------- pure rules


@dataclass(frozen=True)
class PoolSpec:
    """What discovery needs of a pool: its label selector and target ports."""

    selector: Mapping[str, str]
    target_ports: tuple[int, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Equality match of every selector label (an empty selector matches all)."""
        return all(labels.get(k) == v for k, v in self.selector.items())


def pool_from_object(obj: Obj | None) -> PoolSpec | None:
    """The spec of a v1 pool (`selector.matchLabels`, `targetPorts[].number`) or a v1alpha2
    one (`selector` map, `targetPortNumber`); None when absent or being deleted."""
    if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
        return None
    spec = obj.get("spec") or {}
    raw = spec.get("selector") or {}
    labels = raw.get("matchLabels", raw) if isinstance(raw.get("matchLabels"), dict) else raw
    selector = {str(k): str(v) for k, v in labels.items() if isinstance(v, str)}
    ports: list[int] = []
    for entry in spec.get("targetPorts") or ():
        number = entry.get("number") if isinstance(entry, dict) else None
        if isinstance(number, int) and number not in ports:
            ports.append(number)
    if not ports and isinstance(spec.get("targetPortNumber"), int):
        ports.append(spec["targetPortNumber"])
    return PoolSpec(selector, tuple(ports))


def pod_ready(pod: Obj) -> bool:
    """Ready iff not being deleted and condition `Ready=True` (phase is not checked)."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_endpoints(pod: Obj, pool: PoolSpec, metrics_port_override: int = 0) -> list[Endpoint]:
    """The endpoints of one pod under `pool`: none unless it matches and is Ready."""
    meta = pod.get("metadata") or {}
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    if not pool.matches(labels):
        return []
    return endpoints_for_pod(
        meta.get("name", ""),
        meta.get("namespace", ""),
        (pod.get("status") or {}).get("podIP") or "",
        labels,
        pod_ready(pod),
        False,
        pool.target_ports,
        metrics_port_override,
    )


def desired_endpoints(
    pods: Iterable[Obj], pool: PoolSpec, metrics_port_override: int = 0
) -> list[Endpoint]:
    """Every endpoint of `pods` under `pool` (a full resync's target set)."""
    return [e for pod in pods for e in pod_endpoints(pod, pool, metrics_port_override)]


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


# ---------------------------------------------------------------- discovery


class PodDiscovery:
    """Keeps a `Datastore` equal to the Ready pods of one pool, one endpoint per target port.

    Pool mode watches the InferencePool `pool_name` and all pods of the namespace;
    standalone mode (`static_pool`) has a fixed pool and is synced from the start.
    """

    def __init__(
        self,
        client: AsyncClient,
        datastore: Datastore,
        namespace: str,
        *,
        pool_name: str = "",
        pool_group: str = GROUP_V1,
        static_pool: PoolSpec | None = None,
        metrics_port_override: int = 0,
        watch_timeout: int = 300,
        retry_delay: float = 1.0,
    ) -> None:
        self.client, self.datastore, self.namespace = client, datastore, namespace
        self.pool_name, self.pool_group = pool_name, pool_group
        self.static_pool = static_pool
        self.pool: PoolSpec | None = static_pool
        self.metrics_port_override = metrics_port_override
        self.pods: dict[str, Obj] = {}
        opts: dict[str, Any] = {"watch_timeout": watch_timeout, "retry_delay": retry_delay}
        self.pod_informer = Informer(
            client, Pod, namespace, self._pods_listed, self._pod_event, **opts
        )
        self.pool_informer = Informer(
            client,
            pool_resource(pool_group),
            namespace,
            self._pools_listed,
            self._pool_event,
            fields={"metadata.name": pool_name},
            **opts,
        )

    async def run(self) -> None:
        """Discover until cancelled; the pool is read only once the pod cache is filled."""
        if self.static_pool is not None:
            self.datastore.synced = True  # standalone: synced immediately (spec §3.3)
            await self.pod_informer.run()
            return
        pods = asyncio.create_task(self.pod_informer.run(), name="epp pod informer")
        try:
            await self.pod_informer.synced.wait()
            await self.pool_informer.run()
        finally:
            pods.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pods

    # -- pool events

    def _pools_listed(self, objs: list[Obj]) -> None:
        mine = [o for o in objs if _name(o) == self.pool_name]
        self._set_pool(pool_from_object(mine[0] if mine else None))

    def _pool_event(self, event_type: str, obj: Obj) -> None:
        if _name(obj) != self.pool_name:
            return
        self._set_pool(None if event_type == "DELETED" else pool_from_object(obj))

    def _set_pool(self, pool: PoolSpec | None) -> None:
        old, self.pool = self.pool, pool
        if pool is None:
            if old is not None or self.datastore.synced:
                log.info("InferencePool %s/%s is gone", self.namespace, self.pool_name)
            self.datastore.clear()
            return
        if old != pool:
            log.info("InferencePool %s/%s: %s; resyncing", self.namespace, self.pool_name, pool)
            self._resync()
        self.datastore.synced = True

    # -- pod events

    def _pods_listed(self, objs: list[Obj]) -> None:
        self.pods = {_name(o): o for o in objs}
        if self.pool is not None:
            self._resync()

    def _pod_event(self, event_type: str, obj: Obj) -> None:
        name = _name(obj)
        if event_type == "DELETED":
            self.pods.pop(name, None)
        else:
            self.pods[name] = obj
        if self.pool is None:
            return
        wanted = [] if event_type == "DELETED" else self._endpoints_of([obj])
        self._remove_pod(name, keep={e.namespaced_name for e in wanted})
        for endpoint in wanted:
            self.datastore.upsert(endpoint)

    # -- datastore updates

    def _endpoints_of(self, pods: Sequence[Obj]) -> list[Endpoint]:
        assert self.pool is not None
        return desired_endpoints(pods, self.pool, self.metrics_port_override)

    def _remove_pod(self, pod_name: str, keep: set[str]) -> None:
        for endpoint in self.datastore.snapshot_tuple():
            if endpoint.pod_name == pod_name and endpoint.namespaced_name not in keep:
                self.datastore.remove(endpoint.namespaced_name)

    def _resync(self) -> None:
        self.datastore.replace_all(self._endpoints_of(list(self.pods.values())))


def informers(
    client: AsyncClient,
    namespace: str,
    objectives: Objectives,
    rewrites: Rewrites,
    **options: Any,
) -> list[Informer]:
    """List+watch informers feeding both stores from the pool's namespace."""
    return [
        Informer(
            client,
            InferenceObjective,
            namespace,
            objectives.on_list,
            objectives.on_event,
            **options,
        ),
        Informer(
            client, InferenceModelRewrite, namespace, rewrites.on_list, rewrites.on_event, **options
        ),
    ]
