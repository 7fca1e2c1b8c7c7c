"""Watch-fed reads for the scale-from-zero engine, as controller-runtime's cached client gives.

The scale-from-zero engine ticks every 100 ms and reads every VariantAutoscaling
and each one's target on every tick; asked of the API server that is thousands of
requests a minute. `KubeCache` is a `Cluster` whose reads come from informers
(`core.informer`): VariantAutoscalings (this controller's instance label, the
watched namespace or all), Deployments (same scope) and, when watching all
namespaces, Namespaces (for the exclusion annotation). Each is listed once at
start and then follows its watch; only an expired watch (410 Gone) lists again.
Objects are parsed once per change (`check_va`, `workload_from_object`), not per
tick. Writes (status, scale) and the rarely needed reads (LeaderWorkerSet
targets, pods, ConfigMaps, nodes) go to the API server through `KubeCluster`.

The informers start on the first read, which waits (up to `sync_timeout`) for
their first listing; objects handed out are shared and must not be modified.
The saturation engine keeps reading the API server directly: it runs once per
`GLOBAL_OPT_INTERVAL` and must see its own status writes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from pyllmd.autoscaler.decide.api import CrossVersionObjectReference, VariantAutoscaling
from pyllmd.autoscaler.decide.model import GpuNode, PodInfo, Workload
from pyllmd.autoscaler.decide.status import InvalidVariantAutoscaling, check_va
from pyllmd.autoscaler.interfaces import Cluster
from pyllmd.autoscaler.kube.cluster import (
    LWS_API_VERSION,
    Deployment,
    KubeCluster,
    Namespace,
    VariantAutoscalingResource,
)
from pyllmd.autoscaler.kube.objects import workload_from_object
from pyllmd.core.informer import Informer, Obj

T = TypeVar("T")
Key = tuple[str, str]  # (namespace, name)


class Store(Generic[T]):
    """Objects of one kind by (namespace, name), each parsed once when it changes."""

    def __init__(self, parse: Callable[[Obj], T]) -> None:
        self.parse = parse
        self.items: dict[Key, T] = {}

    @staticmethod
    def key(obj: Obj) -> Key:
        meta = obj.get("metadata") or {}
        return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))

    def replace(self, objs: list[Obj]) -> None:
        """A full listing: the store becomes exactly these objects."""
        self.items = {self.key(o): self.parse(o) for o in objs}

    def apply(self, event_type: str, obj: Obj) -> None:
        """One watch event (ADDED, MODIFIED, DELETED; BOOKMARK and others ignored)."""
        if event_type == "DELETED":
            self.items.pop(self.key(obj), None)
        elif event_type in ("ADDED", "MODIFIED"):
            self.items[self.key(obj)] = self.parse(obj)


def _annotations(obj: Obj) -> Mapping[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


class KubeCache:
    """A `Cluster` reading VAs, Deployments and Namespaces from watch-fed caches."""

    def __init__(
        self,
        cluster: KubeCluster,
        *,
        watch_timeout: int = 300,
        retry_delay: float = 1.0,
        sync_timeout: float = 30.0,
    ) -> None:
        self.cluster = cluster
        self.sync_timeout = sync_timeout
        self.vas: Store[VariantAutoscaling | InvalidVariantAutoscaling] = Store(check_va)
        self.deployments: Store[Workload] = Store(workload_from_object)
        self.namespaces: Store[Mapping[str, str]] | None = None
        scope = cluster.namespace or "*"
        opts: dict[str, Any] = {"watch_timeout": watch_timeout, "retry_delay": retry_delay}
        self.informers = [
            Informer(
                cluster.client, VariantAutoscalingResource, scope,
                self.vas.replace, self.vas.apply, labels=cluster.va_labels(), **opts,
            ),
            Informer(
                cluster.client, Deployment, scope,
                self.deployments.replace, self.deployments.apply, **opts,
            ),
        ]  # fmt: skip
        if not cluster.namespace:  # the exclusion annotation is read for any namespace
            self.namespaces = Store(_annotations)
            self.informers.append(
                Informer(
                    cluster.client, Namespace, "",
                    self.namespaces.replace, self.namespaces.apply, **opts,
                )
            )  # fmt: skip
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start the informers (once) and wait for their first listings."""
        if not self._tasks:
            self._tasks = [asyncio.create_task(i.run()) for i in self.informers]
        waits = [i.synced.wait() for i in self.informers]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), self.sync_timeout)
        except TimeoutError:
            raise RuntimeError(
                f"caches not filled within {self.sync_timeout:g}s (cannot list from the API server)"
            ) from None

    async def close(self) -> None:
        """Stop the informers."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    # -- reads from the caches ------------------------------------------------------------------

    async def list_variant_autoscalings(self) -> list[VariantAutoscaling]:
        return (await self.list_variant_autoscalings_checked())[0]

    async def list_variant_autoscalings_checked(
        self,
    ) -> tuple[list[VariantAutoscaling], list[InvalidVariantAutoscaling]]:
        """As `KubeCluster.list_variant_autoscalings_checked`, from the cache."""
        await self.start()
        valid: list[VariantAutoscaling] = []
        invalid: list[InvalidVariantAutoscaling] = []
        for _, checked in sorted(self.vas.items.items(), key=lambda kv: kv[0]):
            if checked.metadata.deletion_timestamp:
                continue
            if isinstance(checked, InvalidVariantAutoscaling):
                invalid.append(checked)
            else:
                valid.append(checked)
        return valid, invalid

    async def get_workload(
        self, namespace: str, ref: CrossVersionObjectReference
    ) -> Workload | None:
        """A Deployment target from the cache; a LeaderWorkerSet one from the API server."""
        if (ref.api_version, ref.kind) == (LWS_API_VERSION, "LeaderWorkerSet"):
            return await self.cluster.get_workload(namespace, ref)
        await self.start()
        return self.deployments.items.get((namespace, ref.name))

    async def namespace_annotations(self, name: str) -> Mapping[str, str]:
        if self.namespaces is None:
            return await self.cluster.namespace_annotations(name)
        await self.start()
        return self.namespaces.items.get(("", name), {})

    # -- everything else: the API server ----------------------------------------------------------

    async def patch_status(self, va: VariantAutoscaling, status: Mapping[str, Any]) -> None:
        await self.cluster.patch_status(va, status)

    async def scale(self, namespace: str, ref: CrossVersionObjectReference, replicas: int) -> bool:
        return await self.cluster.scale(namespace, ref, replicas)

    async def pods(self, namespace: str) -> list[PodInfo]:
        return await self.cluster.pods(namespace)

    async def config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return await self.cluster.config_map(namespace, name)

    async def gpu_nodes(self, selector: str = "") -> list[GpuNode]:
        return await self.cluster.gpu_nodes(selector)


_PROTOCOL_CHECK: type[Cluster] = KubeCache
