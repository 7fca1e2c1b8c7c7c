"""The EPP's endpoints and their latest metrics (spec §3.3), shared by the scheduler and scraper.

`Datastore` is plain single-threaded state (asyncio); every mutation bumps a
version so `snapshot()` rebuilds its tuple only after a change — the
scheduler asks for it on every request. Which pods become endpoints is the pure
function `endpoints_for_pod`; watching Kubernetes is the shell's job.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from pyllmd.epp.scheduling.types import Endpoint, EndpointMetrics

__all__ = ["Datastore", "endpoints_for_pod", "endpoints_from_static", "static_pod_name"]

Listener = Callable[[Sequence[Endpoint], Sequence[str]], None]
"""Called with (added or changed-address endpoints, removed names) after a mutation."""


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def endpoints_for_pod(
    pod_name: str,
    namespace: str,
    ip: str,
    labels: Mapping[str, str],
    ready: bool,
    deleting: bool,
    target_ports: Sequence[int],
    metrics_port_override: int = 0,
) -> list[Endpoint]:
    """The endpoints of one matching pod: none unless Ready and not deleting, else one per
    target port, `<pod>-rank-<i>` in port order. Metrics are scraped on the endpoint's own
    port, or on the deprecated override when the pool has exactly one target port."""
    if not ready or deleting or not ip:
        return []
    single = len(target_ports) == 1 and metrics_port_override != 0
    return [
        Endpoint(
            name=f"{pod_name}-rank-{i}",
            namespace=namespace,
            pod_name=pod_name,
            address=ip,
            port=port,
            labels=dict(labels),
            metrics_host=_hostport(ip, metrics_port_override if single else port),
        )
        for i, port in enumerate(target_ports)
    ]


def static_pod_name(address: str, port: int) -> str:
    """The pseudo pod name of a `--static-endpoints` entry: `10-0-0-1-8000`."""
    return re.sub(r"[^a-z0-9]+", "-", f"{address}-{port}".lower()).strip("-")


class StaticEntry(Protocol):
    """One `--static-endpoints` entry (`options.StaticEndpoint`): a server and its labels."""

    @property
    def address(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def labels(self) -> Mapping[str, str]: ...


def endpoints_from_static(
    entries: Iterable[StaticEntry], namespace: str, metrics_port_override: int = 0
) -> list[Endpoint]:
    """`--static-endpoints` as endpoints: each entry a ready single-port pod."""
    out: list[Endpoint] = []
    for entry in entries:
        pod = static_pod_name(entry.address, entry.port)
        out += endpoints_for_pod(
            pod, namespace, entry.address, entry.labels, True, False, [entry.port],
            metrics_port_override,
        )  # fmt: skip
    return out


class Datastore:
    """Endpoints keyed by namespaced name, with a `synced` flag for readiness."""

    def __init__(self) -> None:
        self._endpoints: dict[str, Endpoint] = {}
        self._snapshot: tuple[Endpoint, ...] = ()
        self._dirty = False
        self.synced = False
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Be told about membership changes (the scraper starts/stops its tasks)."""
        self._listeners.append(listener)

    def _notify(self, added: Sequence[Endpoint], removed: Sequence[str]) -> None:
        if added or removed:
            self._dirty = True
            for listener in self._listeners:
                listener(added, removed)

    def get(self, namespaced_name: str) -> Endpoint | None:
        """The endpoint with this `<namespace>/<name>`, if present."""
        return self._endpoints.get(namespaced_name)

    def __len__(self) -> int:
        return len(self._endpoints)

    def upsert(self, endpoint: Endpoint) -> None:
        """Add an endpoint or update its address/labels, keeping its last metrics."""
        key = endpoint.namespaced_name
        old = self._endpoints.get(key)
        if old is not None:
            endpoint = dataclasses.replace(endpoint, metrics=old.metrics)
            if old == endpoint:
                return
        self._endpoints[key] = endpoint
        moved = old is None or old.metrics_host != endpoint.metrics_host
        self._dirty = True
        self._notify([endpoint] if moved else [], [])

    def remove(self, namespaced_name: str) -> bool:
        """Drop an endpoint; False if absent."""
        if self._endpoints.pop(namespaced_name, None) is None:
            return False
        self._notify([], [namespaced_name])
        return True

    def replace_all(self, endpoints: Iterable[Endpoint]) -> None:
        """Make the set exactly `endpoints` (a full resync), keeping metrics of survivors."""
        wanted = {e.namespaced_name: e for e in endpoints}
        for key in [k for k in self._endpoints if k not in wanted]:
            self.remove(key)
        for endpoint in wanted.values():
            self.upsert(endpoint)

    def set_static(self, endpoints: Iterable[Endpoint]) -> None:
        """Install a fixed endpoint set and mark the store synced at once."""
        self.replace_all(endpoints)
        self.synced = True

    def clear(self) -> None:
        """Forget every endpoint and become unsynced (the pool disappeared)."""
        self.replace_all(())
        self.synced = False

    def update_metrics(self, namespaced_name: str, metrics: EndpointMetrics) -> bool:
        """Store a scrape result; False if the endpoint is gone meanwhile."""
        old = self._endpoints.get(namespaced_name)
        if old is None:
            return False
        self._endpoints[namespaced_name] = dataclasses.replace(old, metrics=metrics)
        self._dirty = True
        return True

    def snapshot_tuple(self) -> tuple[Endpoint, ...]:
        """All endpoints sorted by namespaced name; rebuilt only after a change."""
        if self._dirty:
            self._snapshot = tuple(self._endpoints[k] for k in sorted(self._endpoints))
            self._dirty = False
        return self._snapshot

    def snapshot(self) -> list[Endpoint]:
        """`snapshot_tuple` as a fresh list the caller may change."""
        return list(self.snapshot_tuple())
