"""grpc.health.v1 of the EPP (spec §10): answers follow sync state and leadership."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pyllmd.epp.extproc.contracts import StaticEndpoints
from pyllmd.epp.extproc.health import EXT_PROC_SERVICE, EppHealth, serve_health
from pyllmd.epp.extproc.servicer import ExtProcServicer, serve_epp

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class Flag:
    def __init__(self, value: bool) -> None:
        self.value = value

    def __call__(self) -> bool:
        return self.value


async def test_epp_acc_62_readiness_follows_sync_over_grpc() -> None:
    synced = Flag(False)
    server, port = await serve_health(EppHealth(synced), 0, host="127.0.0.1")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            async def check(service: str) -> int:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
                return int(reply.status)

            assert await check("readiness") == NOT_SERVING
            synced.value = True
            assert await check("readiness") == SERVING
            assert await check("inference-extension") == SERVING  # any name without election
            listed = await stub.List(health_pb2.HealthListRequest())
            assert dict(listed.statuses).keys() == {EXT_PROC_SERVICE}
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in stub.Watch(health_pb2.HealthCheckRequest(service="")):
                    pass
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(None)


def test_epp_acc_62_leader_election_follower() -> None:
    leader = Flag(False)
    health = EppHealth(Flag(True), is_leader=leader)
    assert health.status("liveness") == SERVING
    assert health.status("readiness") == NOT_SERVING
    assert health.status(EXT_PROC_SERVICE) == NOT_SERVING
    assert health.status("foo") == UNKNOWN
    leader.value = True
    assert [health.status(s) for s in ("readiness", "", EXT_PROC_SERVICE)] == [SERVING] * 3
    assert health.services() == [EXT_PROC_SERVICE, "liveness", "readiness"]


def test_leader_not_synced_is_not_ready() -> None:
    health = EppHealth(Flag(False), is_leader=Flag(True))
    assert health.status("readiness") == NOT_SERVING
    assert health.status("liveness") == SERVING


async def test_a_second_server_on_a_port_in_use_is_refused_not_shared() -> None:
    """grpc listens with SO_REUSEPORT by default: two EPPs would split the traffic of one
    port. As Go's listener, the second must fail to listen instead."""
    first, port = await serve_health(EppHealth(Flag(True)), 0, host="127.0.0.1")
    try:
        with pytest.raises((RuntimeError, OSError)):
            second, _ = await serve_health(EppHealth(Flag(True)), port, host="127.0.0.1")
            await second.stop(None)
        with pytest.raises((RuntimeError, OSError)):
            third, _ = await serve_epp(ExtProcServicer(Nobody(), StaticEndpoints([])), port,
                                       host="127.0.0.1", secure=False)  # fmt: skip
            await third.stop(None)
    finally:
        await first.stop(None)


class Nobody:
    def schedule(self, request: Any, candidates: Any) -> Any:
        raise AssertionError("not called")
