"""`grpc.health.v1.Health` of the EPP (spec §10), on its own plaintext port.

grpcio-health-checking's stock servicer keeps a static status table; the EPP's
answer depends on live state (datastore synced, leadership) and on upstream's
service-name rules, so `Check` and `List` are computed per call here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
LIVENESS = "liveness"
READINESS = "readiness"

_SERVING: int = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING: int = health_pb2.HealthCheckResponse.NOT_SERVING
_UNKNOWN: int = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
# grpc listens with SO_REUSEPORT by default, so a second process on the same port would
# silently share it; Go's listener (upstream) refuses. Every EPP gRPC server turns it off.
NO_REUSEPORT = (("grpc.so_reuseport", 0),)


class EppHealth:
    """SERVING iff synced; under leader election liveness always, readiness iff also leader."""

    def __init__(
        self, synced: Callable[[], bool], is_leader: Callable[[], bool] | None = None
    ) -> None:
        self.synced = synced
        self.is_leader = is_leader  # None: leader election off

    def status(self, service: str) -> int:
        """The `HealthCheckResponse.ServingStatus` for `service`."""
        if self.is_leader is None:
            return _SERVING if self.synced() else _NOT_SERVING
        if service == LIVENESS:
            return _SERVING
        if service in (READINESS, "", EXT_PROC_SERVICE):
            return _SERVING if self.synced() and self.is_leader() else _NOT_SERVING
        return _UNKNOWN

    def services(self) -> list[str]:
        """The names `List` reports."""
        if self.is_leader is None:
            return [EXT_PROC_SERVICE]
        return [EXT_PROC_SERVICE, LIVENESS, READINESS]

    async def Check(  # noqa: N802 - gRPC method name
        self, request: Any, context: Any
    ) -> Any:
        return health_pb2.HealthCheckResponse(status=self.status(request.service))

    async def List(  # noqa: N802 - gRPC method name
        self, request: Any, context: Any
    ) -> Any:
        statuses = {
            name: health_pb2.HealthCheckResponse(status=self.status(name))
            for name in self.services()
        }
        return health_pb2.HealthListResponse(statuses=statuses)

    async def Watch(  # noqa: N802 - gRPC method name
        self, request: Any, context: Any
    ) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Watch is not implemented")


async def serve_health(
    health: EppHealth, port: int, host: str = "0.0.0.0"
) -> tuple[grpc.aio.Server, int]:
    """Start the plaintext health server on `host:port`; returns it and its port."""
    server = grpc.aio.server(options=NO_REUSEPORT)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    await server.start()
    return server, bound
