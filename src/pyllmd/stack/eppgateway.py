"""The local stack's `gateway: envoy-epp`: a real Envoy and `pyllmd epp` in front of the pods.

Instead of the stand-in gateway (`gateway.py`), requests go through the same
parts as on a cluster: Envoy runs the ext_proc filter against a `pyllmd epp`
process with flow control on, and routes each request to the pod the EPP picks.
The EPP learns the pods from an endpoints file (its `--endpoints-file`, a
Prometheus file_sd file) that this module rewrites whenever the ready pods of
the model change, so a model scaled to zero is an empty pool: requests wait in
the EPP's flow-control queue, whose gauge the scale-from-zero engine reads.
Both children are supervised: a death is logged and the child started again (same
ports and arguments) after a back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pyllmd.core.listen import LOOPBACK, free_port
from pyllmd.core.process import Process, Supervisor, spawn_ready
from pyllmd.epp.config.gateway import DEFAULT_EPP_CONFIG
from pyllmd.stack.envoy import EnvoyProcess, envoy_bootstrap

log = logging.getLogger(__name__)

PUBLISH_INTERVAL = 0.1  # seconds between checks of the ready pods

TargetGroups = list[dict[str, Any]]
"""Prometheus file_sd groups: `[{"targets": ["ip:port"], "labels": {...}}]`."""


def write_targets(path: Path, groups: TargetGroups) -> None:
    """Replace `path` atomically, so the EPP never reads half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups, indent=1))
    tmp.replace(path)


class EnvoyEppGateway:
    """Envoy on `listen_port` + a `pyllmd epp` child over the pods `groups()` returns."""

    def __init__(
        self,
        directory: Path,
        listen_port: int,
        groups: Callable[[], TargetGroups],
        namespace: str,
        epp_config: str = DEFAULT_EPP_CONFIG,
    ) -> None:
        self.directory = directory
        self.listen_port = listen_port or free_port()
        self.groups = groups
        self.namespace = namespace
        self.epp_config = epp_config
        self.endpoints_file = directory / "epp-endpoints.json"
        self.grpc_port, self.health_port, self.metrics_port = (free_port() for _ in range(3))
        self.envoy = EnvoyProcess(
            directory, envoy_bootstrap(self.listen_port, self.grpc_port, free_port())
        )
        self.ready_timeout = 30.0
        self.epp_supervisor = Supervisor("epp", self._launch_epp, self.epp_log)
        self._published: TargetGroups | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """Base URL of the OpenAI API (Envoy's listener)."""
        return f"http://{LOOPBACK}:{self.listen_port}"

    @property
    def metrics_url(self) -> str:
        """The EPP's `/metrics` (flow-control queue gauge included)."""
        return f"http://{LOOPBACK}:{self.metrics_port}/metrics"

    @property
    def epp_log(self) -> Path:
        """Where the EPP's output goes."""
        return self.directory / "epp.log"

    def epp_argv(self) -> list[str]:
        """The `pyllmd epp` command line."""
        return [
            sys.executable, "-m", "pyllmd", "epp",
            f"--endpoints-file={self.endpoints_file}", f"--pool-namespace={self.namespace}",
            f"--bind-address={LOOPBACK}", f"--grpc-port={self.grpc_port}",
            f"--grpc-health-port={self.health_port}", f"--metrics-port={self.metrics_port}",
            "--metrics-endpoint-auth=false", "--config-text", self.epp_config,
        ]  # fmt: skip

    def publish(self) -> bool:
        """Rewrite the endpoints file if the ready pods changed; True when written."""
        groups = self.groups()
        if groups == self._published:
            return False
        write_targets(self.endpoints_file, groups)
        self._published = groups
        return True

    async def _publish_loop(self) -> None:
        while True:
            await asyncio.sleep(PUBLISH_INTERVAL)
            try:
                self.publish()
            except OSError:
                log.exception("writing %s failed", self.endpoints_file)

    @property
    def epp(self) -> Process | None:
        """The current `pyllmd epp` process."""
        return self.epp_supervisor.process

    async def start(self, ready_timeout: float = 30.0) -> None:
        """Start the EPP, wait for its metrics, then Envoy; keep the endpoints file current."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ready_timeout = ready_timeout
        self.publish()
        try:
            await self.epp_supervisor.start()
            await self.envoy.start()
        except BaseException:
            await self.stop()
            raise
        self._task = asyncio.create_task(self._publish_loop(), name="epp endpoints")
        log.info("envoy+epp gateway up url=%s epp_metrics=%s", self.url, self.metrics_url)

    async def _launch_epp(self) -> Process:
        return await spawn_ready(
            self.epp_argv(),
            self.epp_log,
            self.metrics_url,
            self.ready_timeout,
            self._epp_failure,
        )

    def _epp_failure(self) -> str:
        tail = self.epp_log.read_text(errors="replace").strip().splitlines()[-1:]
        return f"pyllmd epp did not start (see {self.epp_log}): {' '.join(tail)}"

    async def stop(self) -> None:
        """Stop the publisher, Envoy and the EPP."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.gather(self.envoy.stop(grace=3.0), self.epp_supervisor.stop(grace=3.0))


def pool_groups(
    pods: Sequence[tuple[str, int, Mapping[str, str]]],
) -> TargetGroups:
    """One file_sd group per ready pod `(host, port, pod labels)`, in a stable order."""
    return [
        {"targets": [f"{host}:{port}"], "labels": dict(labels)}
        for host, port, labels in sorted(pods, key=lambda p: (p[0], p[1]))
    ]
