"""InferencePools on Kubernetes as the scale-from-zero engine's `PoolSource` (spec §4.4, §8.2).

For each InferencePool of the configured API group (`POOL_GROUP`):
- v1 (`inference.networking.k8s.io`): selector `spec.selector.matchLabels`,
  endpoint picker `spec.endpointPickerRef.name`;
- v1alpha2 (`inference.networking.x-k8s.io`): selector `spec.selector` (a
  plain map), endpoint picker `spec.extensionRef.name`;
the EPP is a Service in the pool's namespace; its metrics port is the first
port whose name contains `metric`, and the URLs to scrape are
`http://<podIP>:<port>/metrics` of the Ready pods its selector picks.

Upstream keeps pools in a datastore fed by a watch; here they are listed on
demand and kept for `refresh_interval` (1 s), which bounds both the API load
of the 100 ms scale-from-zero tick and how late a new pool or EPP pod is seen.
A pool whose EPP Service or metrics port cannot be found is left out (logged
once per distinct problem) and the others still count. The port scraped is
the metrics port's numeric `targetPort` (the pods are scraped directly, not
through the Service), falling back to its `port` when the target port is
named or absent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from lightkube.core.exceptions import ApiError

from pyllmd.autoscaler.collect.epp import metrics_url
from pyllmd.autoscaler.kube.cluster import ALL_NAMESPACES, KubeCluster, Pod, Service, resource_type
from pyllmd.autoscaler.loops.scalefromzero import InferencePool, PoolSource
from pyllmd.core.clock import Clock, RealClock

log = logging.getLogger(__name__)

POOL_GROUP_V1 = "inference.networking.k8s.io"
POOL_GROUP_V1ALPHA2 = "inference.networking.x-k8s.io"
POOL_VERSIONS: Mapping[str, str] = {POOL_GROUP_V1: "v1", POOL_GROUP_V1ALPHA2: "v1alpha2"}


def pool_resource(group: str) -> Any:
    """The lightkube resource class of InferencePools in `group` (ValueError if unknown)."""
    version = POOL_VERSIONS.get(group)
    if version is None:
        raise ValueError(f"unknown InferencePool group {group!r}")
    return resource_type(group, version, "InferencePool", "inferencepools")


def pool_selector(obj: Mapping[str, Any], group: str) -> dict[str, str]:
    """The pool's model-server selector as a label map."""
    selector = (obj.get("spec") or {}).get("selector") or {}
    if group == POOL_GROUP_V1:
        selector = selector.get("matchLabels") or {}
    return {str(k): str(v) for k, v in selector.items()}


def epp_service_name(obj: Mapping[str, Any], group: str) -> str:
    """Name of the pool's endpoint-picker Service ("" when the pool names none)."""
    spec = obj.get("spec") or {}
    ref = spec.get("endpointPickerRef" if group == POOL_GROUP_V1 else "extensionRef") or {}
    return str(ref.get("name") or "")


def metrics_port(service: Mapping[str, Any]) -> int | None:
    """Port of the first Service port whose name contains `metric`: numeric target, else port."""
    for port in (service.get("spec") or {}).get("ports") or []:
        if "metric" not in str(port.get("name") or ""):
            continue
        target = port.get("targetPort")
        if isinstance(target, int) or (
            isinstance(target, str) and target.isascii() and target.isdigit()
        ):
            return int(target)
        return int(port["port"]) if port.get("port") is not None else None
    return None


def ready_pod_ips(pods: Iterable[Mapping[str, Any]]) -> list[str]:
    """IPs of pods that are Ready, have an IP and are not being deleted, sorted."""
    ips: list[str] = []
    for pod in pods:
        status = pod.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        deleting = (pod.get("metadata") or {}).get("deletionTimestamp")
        if ready and status.get("podIP") and not deleting:
            ips.append(str(status["podIP"]))
    return sorted(ips)


class KubePools:
    """`PoolSource` over the InferencePools of one API group, cached for `refresh_interval`."""

    def __init__(
        self,
        cluster: KubeCluster,
        pool_group: str = POOL_GROUP_V1ALPHA2,
        *,
        clock: Clock | None = None,
        refresh_interval: float = 1.0,
    ) -> None:
        self.cluster = cluster
        self.group = pool_group
        self.resource = pool_resource(pool_group)
        self.clock = clock or RealClock()
        self.refresh_interval = refresh_interval
        self._cached: list[InferencePool] | None = None
        self._loaded_at = 0.0
        self._problems: dict[tuple[str, str], str] = {}

    async def pools(self) -> list[InferencePool]:
        """Every pool with its EPP metrics URLs (listed afresh after `refresh_interval`)."""
        now = self.clock.now()
        if self._cached is None or now - self._loaded_at >= self.refresh_interval:
            self._cached = await self._load()
            self._loaded_at = now
        return list(self._cached)

    async def _load(self) -> list[InferencePool]:
        client = self.cluster.client
        scope = self.cluster.namespace or ALL_NAMESPACES
        found: list[InferencePool] = []
        seen: set[tuple[str, str]] = set()
        async for item in client.list(self.resource, namespace=scope):
            obj = item.to_dict()
            meta = obj.get("metadata") or {}
            key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
            seen.add(key)
            pool, problem = await self._pool(key, obj)
            self._note(key, problem)
            if pool is not None:
                found.append(pool)
        for gone in set(self._problems) - seen:
            del self._problems[gone]
        return found

    async def _pool(
        self, key: tuple[str, str], obj: Mapping[str, Any]
    ) -> tuple[InferencePool | None, str]:
        namespace, name = key
        service_name = epp_service_name(obj, self.group)
        if not service_name:
            return None, "names no endpoint picker"
        try:
            service = (
                await self.cluster.client.get(Service, service_name, namespace=namespace)
            ).to_dict()
        except ApiError as err:
            return None, f"EPP Service {service_name}: {err.status.message}"
        port = metrics_port(service)
        if port is None:
            return None, f"EPP Service {service_name} has no port whose name contains 'metric'"
        selector = (service.get("spec") or {}).get("selector") or {}
        pods: list[dict[str, Any]] = []
        if selector:
            labels: dict[str, Any] = {str(k): str(v) for k, v in selector.items()}
            listing = self.cluster.client.list(Pod, namespace=namespace, labels=labels)
            pods = [p.to_dict() async for p in listing]
        urls = tuple(metrics_url(ip, port) for ip in ready_pod_ips(pods))
        return InferencePool(namespace, name, pool_selector(obj, self.group), urls), ""

    def _note(self, key: tuple[str, str], problem: str) -> None:
        """Log a pool's problem once, and once more when it changes or clears."""
        before = self._problems.get(key, "")
        if problem == before:
            return
        if problem:
            self._problems[key] = problem
            log.warning("InferencePool %s/%s left out: %s", *key, problem)
        else:
            self._problems.pop(key, None)
            log.info("InferencePool %s/%s usable again", *key)


_PROTOCOL_CHECK: type[PoolSource] = KubePools
