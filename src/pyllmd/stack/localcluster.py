"""The local cluster: VariantAutoscalings and their "Deployments" as simulator processes.

This is the autoscaler's `Cluster` for a laptop: each variant's Deployment is a
set of `pyllmd sim` processes on free loopback ports (one process = one pod),
`scale` starts or stops processes, and the pods are published to Prometheus
through a file_sd targets file carrying the `namespace` and `pod` labels that
the upstream PromQL queries select on. No Kubernetes is needed; the controller
code cannot tell the difference.

Pods are children of `core.process.spawn` (own session, output in
`<log_dir>/<pod>.log`). A pod that dies on its own is logged with its exit status
and last output lines and replaced after a back-off (per Deployment, like
CrashLoopBackOff); a pod removed by a scale-down is first taken out of the ready
set (the gateway stops sending to it), then stopped, and its log deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from pyllmd.autoscaler.decide.api import CrossVersionObjectReference, VariantAutoscaling
from pyllmd.autoscaler.decide.model import Container, Decision, GpuNode, PodInfo, Workload
from pyllmd.autoscaler.decide.status import with_status_patch
from pyllmd.core.listen import LOOPBACK, free_port
from pyllmd.core.process import Backoff, exit_text, http_ready, spawn, tail_lines, terminate
from pyllmd.stackfile import STACK_KEYS, LocalSpec, parse_local_spec

__all__ = [
    "STACK_KEYS",
    "LocalActuator",
    "LocalCluster",
    "LocalDeployment",
    "LocalSpec",
    "Pod",
    "parse_local_spec",
]

log = logging.getLogger(__name__)


@dataclass
class Pod:
    """One simulator process."""

    name: str
    port: int
    process: asyncio.subprocess.Process
    ready: bool = False
    ready_since: float | None = None  # wall seconds when it became ready

    @property
    def url(self) -> str:
        """Base URL of the pod's OpenAI API."""
        return f"http://{LOOPBACK}:{self.port}"


@dataclass
class LocalDeployment:
    """A Deployment whose pods are simulator processes started with `args`."""

    namespace: str
    name: str
    args: tuple[str, ...]
    replicas: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    gpus_per_replica: int = 1
    pods: list[Pod] = field(default_factory=list)


class LocalCluster:
    """`Cluster` over local simulator processes; `reconcile()` makes pods match replicas."""

    def __init__(
        self,
        spec: LocalSpec,
        targets_file: Path | None = None,
        sim_command: Sequence[str] = (sys.executable, "-m", "pyllmd", "sim"),
        ready_timeout: float = 20.0,
        log_dir: Path | None = None,
        backoff: Backoff | None = None,
        drain: float = 0.5,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.vas = {(v.metadata.namespace, v.metadata.name): v for v in spec.vas}
        self.deployments = {
            (d.namespace, d.name): LocalDeployment(
                d.namespace, d.name, d.args, d.replicas, dict(d.labels), d.gpus_per_replica
            )
            for d in spec.deployments
        }
        self._config_maps = dict(spec.config_maps)
        self._nodes = list(spec.nodes)
        self.targets_file = targets_file
        self.sim_command = tuple(sim_command)
        self.ready_timeout = ready_timeout
        self._wall = wall
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self.log_dir = log_dir
        self.backoff = backoff or Backoff()
        self.drain = drain  # seconds between leaving the ready set and SIGTERM
        self._started: dict[str, float] = {}  # pod name -> monotonic start time
        self._crashes: dict[tuple[str, str], tuple[float, float]] = {}  # delay, restart at
        self._stopping: list[Pod] = []  # removed from their Deployment, not yet stopped

    # -- Cluster protocol -------------------------------------------------------

    async def list_variant_autoscalings(self) -> list[VariantAutoscaling]:
        return [v.model_copy(deep=True) for v in self.vas.values()]

    async def get_workload(
        self, namespace: str, ref: CrossVersionObjectReference
    ) -> Workload | None:
        dep = self.deployments.get((namespace, ref.name))
        if dep is None or ref.kind not in ("Deployment", ""):
            return None
        alive = [p for p in dep.pods if p.process.returncode is None]
        return Workload(
            namespace=namespace,
            name=dep.name,
            spec_replicas=dep.replicas,
            status_replicas=len(alive),
            ready_replicas=sum(p.ready for p in alive),
            template_labels=dep.labels,
            containers=(
                Container(
                    command=self.sim_command, args=dep.args, gpu_requests=dep.gpus_per_replica
                ),
            ),
        )

    async def patch_status(self, va: VariantAutoscaling, status: Mapping[str, Any]) -> None:
        key = (va.metadata.namespace, va.metadata.name)
        stored = self.vas.get(key)
        if stored is None:
            return
        self.vas[key] = with_status_patch(stored, status)

    async def scale(self, namespace: str, ref: CrossVersionObjectReference, replicas: int) -> bool:
        dep = self.deployments.get((namespace, ref.name))
        if dep is None:
            raise LookupError(f"deployment {namespace}/{ref.name} not found")
        if dep.replicas == replicas:
            return False
        log.info(
            "scale deployment=%s/%s from=%d to=%d", namespace, ref.name, dep.replicas, replicas
        )
        dep.replicas = replicas
        self.request_reconcile()
        return True

    async def pods(self, namespace: str) -> list[PodInfo]:
        return [
            PodInfo(
                p.name, d.name, p.ready_since if p.ready and p.process.returncode is None else None
            )
            for (ns, _), d in self.deployments.items()
            if ns == namespace
            for p in d.pods
        ]

    async def config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self._config_maps.get((namespace, name))

    async def gpu_nodes(self, selector: str = "") -> list[GpuNode]:
        return list(self._nodes)

    # -- local-only operations ---------------------------------------------------

    def set_config_map(self, namespace: str, name: str, data: Mapping[str, str] | None) -> None:
        """Create, replace or (with None) delete a ConfigMap."""
        if data is None:
            self._config_maps.pop((namespace, name), None)
        else:
            self._config_maps[(namespace, name)] = dict(data)

    def ready_pods(self, model_id: str) -> list[Pod]:
        """Ready pods of every variant serving `model_id` (what a gateway routes to)."""
        names = {
            (va.metadata.namespace, va.spec.scale_target_ref.name)
            for va in self.vas.values()
            if va.spec.model_id == model_id
        }
        return [
            p
            for key in names
            if (d := self.deployments.get(key)) is not None
            for p in d.pods
            if p.ready and p.process.returncode is None
        ]

    def request_reconcile(self) -> None:
        """Ask the background supervisor (`run`) to bring pods in line with replicas."""
        self._wake.set()

    async def run(self) -> None:
        """Supervise pods until cancelled: reconcile on request, and every few seconds."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=2.0)
            self._wake.clear()
            try:
                await self.reconcile()
            except Exception:  # a failed start must not end supervision
                log.exception("reconcile failed")

    async def reconcile(self) -> None:
        """Start or stop processes until every Deployment has its replicas, then publish targets."""
        async with self._lock:
            stopping: list[Pod] = []
            for key, dep in self.deployments.items():
                for pod in [p for p in dep.pods if p.process.returncode is not None]:
                    self._died(key, pod)
                dep.pods = [p for p in dep.pods if p.process.returncode is None]
                while len(dep.pods) > dep.replicas:
                    pod = dep.pods.pop()  # newest first, like a ReplicaSet scale-down
                    pod.ready = False  # out of the gateway's pool before it stops
                    stopping.append(pod)
                if len(dep.pods) < dep.replicas and not self._may_start(key):
                    continue
                starting = [await self._start_pod(dep) for _ in range(dep.replicas - len(dep.pods))]
                dep.pods.extend(starting)
            self._write_targets()
            if stopping:
                self._stopping.extend(stopping)
                await asyncio.sleep(self.drain)
                await asyncio.gather(*(self._stop(p) for p in stopping))
                self._stopping = [p for p in self._stopping if p not in stopping]
        waiting = [p for d in self.deployments.values() for p in d.pods if not p.ready]
        await asyncio.gather(*(self._wait_ready(p) for p in waiting))
        async with self._lock:
            self._write_targets()

    def _died(self, key: tuple[str, str], pod: Pod) -> None:
        """Log a pod that exited on its own; back off before replacing it."""
        now = time.monotonic()
        uptime = now - self._started.pop(pod.name, now)
        previous, _ = self._crashes.get(key, (0.0, 0.0))
        delay = self.backoff.next_delay(previous, uptime)
        self._crashes[key] = (delay, now + delay)
        log_file = self._pod_log(pod.name)
        last = " | ".join(tail_lines(log_file, 3))
        log.warning(
            "pod exited pod=%s %s; replacing it in %g s%s%s",
            pod.name, exit_text(pod.process.returncode), delay,
            f" (output: {log_file})" if log_file is not None else "",
            f"; last lines: {last}" if last else "",
        )  # fmt: skip
        asyncio.get_running_loop().call_later(delay, self.request_reconcile)

    def _may_start(self, key: tuple[str, str]) -> bool:
        _, restart_at = self._crashes.get(key, (0.0, 0.0))
        return time.monotonic() >= restart_at

    def _pod_log(self, name: str) -> Path | None:
        return self.log_dir / f"{name}.log" if self.log_dir is not None else None

    async def close(self, grace: float = 3.0) -> None:
        """Stop every pod (all at once)."""
        pods = [*self._stopping, *(p for dep in self.deployments.values() for p in dep.pods)]
        self._stopping = []
        for dep in self.deployments.values():
            for pod in dep.pods:
                pod.ready = False
            dep.pods.clear()
        await asyncio.gather(*(self._stop(p, grace) for p in pods))
        self._write_targets()
        if self._http is not None:
            await self._http.close()

    async def _start_pod(self, dep: LocalDeployment) -> Pod:
        name = f"{dep.name}-{secrets.token_hex(4)}-{secrets.token_hex(2)}"
        port = free_port()
        env = dict(os.environ, POD_NAME=name, POD_NAMESPACE=dep.namespace, POD_IP=LOOPBACK)
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        proc = await spawn(
            [*self.sim_command, *dep.args, "--host", LOOPBACK, "--port", str(port)],
            self._pod_log(name), env,
        )  # fmt: skip
        self._started[name] = time.monotonic()
        log.info("pod started pod=%s port=%d pid=%d", name, port, proc.pid)
        return Pod(name, port, proc)

    async def _stop(self, pod: Pod, grace: float = 5.0) -> None:
        """Stop a pod we removed; its log goes with it."""
        await terminate(pod.process, grace)
        self._started.pop(pod.name, None)
        log.info("pod stopped pod=%s", pod.name)
        log_file = self._pod_log(pod.name)
        if log_file is not None:
            with contextlib.suppress(OSError):
                log_file.unlink()

    async def _wait_ready(self, pod: Pod) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1))
        if await http_ready(
            pod.process, pod.url + "/health", self.ready_timeout, session=self._http
        ):
            pod.ready, pod.ready_since = True, self._wall()
        else:
            log.warning("pod not ready pod=%s", pod.name)

    def _write_targets(self) -> None:
        """Prometheus file_sd: one target per pod, labelled like Kubernetes pod discovery."""
        if self.targets_file is None:
            return
        groups = [
            {
                "targets": [f"{LOOPBACK}:{p.port}"],
                "labels": {"namespace": d.namespace, "pod": p.name},
            }
            for d in self.deployments.values()
            for p in d.pods
        ]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups, indent=1))
        tmp.replace(self.targets_file)  # atomic, so Prometheus never reads half a file


class LocalActuator:
    """Plays the HPA of the local stack: sets each variant's replicas to its decided target."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    async def apply(self, decisions: Sequence[Decision]) -> None:
        """Scale every decided variant's Deployment to the target."""
        for d in decisions:
            va = self.cluster.vas.get((d.namespace, d.variant))
            if va is None:
                continue
            await self.cluster.scale(d.namespace, va.spec.scale_target_ref, d.target_replicas)
