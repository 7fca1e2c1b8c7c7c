"""A real Prometheus for the local stack: generated config, self-signed TLS, process control.

The autoscaler only talks to Prometheus over `https` (as upstream requires), so
the stack serves Prometheus' API with a self-signed certificate for
127.0.0.1 and hands the CA file to the controller. Pods are discovered through
a file_sd targets file that the local cluster rewrites as pods come and go.
The process is supervised: if it dies, the death is logged and it is started again
(same port, config and TSDB) after a back-off.
"""

from __future__ import annotations

import json
import shutil
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from pyllmd.core.listen import LOOPBACK
from pyllmd.core.process import Process, Supervisor, spawn_ready
from pyllmd.core.tls import write_self_signed


@dataclass(frozen=True)
class TlsFiles:
    """A self-signed certificate (also its own CA) and its key, as PEM files."""

    cert: Path
    key: Path


def self_signed(directory: Path, host: str = LOOPBACK) -> TlsFiles:
    """A one-year self-signed certificate valid for `host` (IP SAN) and localhost."""
    cert, key = write_self_signed(directory, "tls", ips=(host,))
    return TlsFiles(cert, key)


def prometheus_config(
    scrape_interval: str,
    pod_targets_file: Path | None = None,
    static: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, object]:
    """A Prometheus config: file_sd job `pods` (labels namespace/pod) and static jobs."""
    jobs: list[dict[str, object]] = []
    if pod_targets_file is not None:
        jobs.append({"job_name": "pods", "file_sd_configs": [{"files": [str(pod_targets_file)]}]})
    for job, targets in (static or {}).items():
        jobs.append({"job_name": job, "static_configs": [{"targets": list(targets)}]})
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": jobs,
    }


def prometheus_binary() -> str:
    """Path of Debian's `prometheus`, or a clear error naming the install command."""
    found = shutil.which("prometheus")
    if found is None:
        raise FileNotFoundError(
            "prometheus is not installed: apt-get install -y --no-install-recommends prometheus"
        )
    return found


class PrometheusProcess:
    """Prometheus serving HTTPS on a loopback port, with its own TSDB directory."""

    def __init__(self, directory: Path, port: int, config: Mapping[str, object]) -> None:
        self.directory = directory
        self.port = port
        self.config = config
        self.tls = self_signed(directory)
        self.ready_timeout = 20.0
        self.supervisor = Supervisor("prometheus", self._launch, self.log_file)

    @property
    def url(self) -> str:
        """Base URL of the HTTPS API."""
        return f"https://{LOOPBACK}:{self.port}"

    @property
    def log_file(self) -> Path:
        """Where Prometheus' output goes."""
        return self.directory / "prometheus.log"

    @property
    def process(self) -> Process | None:
        """The current Prometheus process."""
        return self.supervisor.process

    async def start(self, ready_timeout: float = 20.0) -> None:
        """Start the process, wait until `/-/ready` answers, and keep it running."""
        self.ready_timeout = ready_timeout
        config = self.directory / "prometheus.yml"
        config.write_text(yaml.safe_dump(dict(self.config)))
        web = self.directory / "web.yml"
        web.write_text(
            json.dumps(
                {
                    "tls_server_config": {
                        "cert_file": str(self.tls.cert),
                        "key_file": str(self.tls.key),
                    }
                }
            )
        )
        await self.supervisor.start()

    async def _launch(self) -> Process:
        return await spawn_ready(
            [
                prometheus_binary(),
                f"--config.file={self.directory / 'prometheus.yml'}",
                f"--web.config.file={self.directory / 'web.yml'}",
                f"--storage.tsdb.path={self.directory / 'tsdb'}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
                "--web.enable-lifecycle",
            ],
            self.log_file,
            self.url + "/-/ready",
            self.ready_timeout,
            lambda: f"prometheus did not become ready (see {self.log_file})",
            interval=0.1,
            ssl=ssl.create_default_context(cafile=str(self.tls.cert)),
        )

    async def stop(self, grace: float = 5.0) -> None:
        """Stop supervising, then terminate (then kill) the process."""
        await self.supervisor.stop(grace)
