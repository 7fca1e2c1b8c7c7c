"""REST and gRPC on one port (sim/portmux.py), with real clients on loopback."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
import pytest_asyncio
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from pyllmd.core.tls import write_self_signed
from pyllmd.sim.server.portmux import PREFACE, PortMux, classify


def test_classify_waits_for_a_whole_preface() -> None:
    assert classify(PREFACE) == "grpc"
    assert classify(PREFACE[:5]) is None
    assert classify(b"") is None
    assert classify(b"GET / HTTP/1.1\r\n") == "http"
    assert classify(b"\x16\x03\x01") == "http"  # a TLS ClientHello


async def _mux(tls: ssl.SSLContext | None) -> AsyncIterator[int]:
    app = web.Application()

    async def hello(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/health", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    grpc_server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), grpc_server)
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()
    sock = socket.create_server(("127.0.0.1", 0))
    mux = PortMux(sock, runner.server, ("127.0.0.1", grpc_port), tls)  # type: ignore[arg-type]
    mux.start()
    try:
        yield mux.port
    finally:
        await mux.close()
        await runner.cleanup()
        await grpc_server.stop(None)


@pytest_asyncio.fixture
async def plain() -> AsyncIterator[int]:
    async for port in _mux(None):
        yield port


@pytest_asyncio.fixture
async def tls(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    cert, key = write_self_signed(tmp_path, "sim")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    async for port in _mux(ctx):
        yield port, cert


async def _grpc_health(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        return int(reply.status)


async def test_rest_and_grpc_share_the_port(plain: int) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(3):  # keep-alive: one sniff, several requests
            async with s.get(f"http://127.0.0.1:{plain}/health") as r:
                assert (r.status, await r.json()) == (200, {"ok": True})
    assert await _grpc_health(plain) == health_pb2.HealthCheckResponse.SERVING


async def test_tls_rest_and_cleartext_grpc(tls: tuple[int, Path]) -> None:
    port, cert = tls
    client_ctx = ssl.create_default_context(cafile=str(cert))
    client_ctx.check_hostname = False
    async with aiohttp.ClientSession() as s:
        async with s.get(f"https://127.0.0.1:{port}/health", ssl=client_ctx) as r:
            assert r.status == 200
        with pytest.raises(aiohttp.ClientError):
            async with s.get(f"http://127.0.0.1:{port}/health") as r:
                await r.read()
    assert await _grpc_health(port) == health_pb2.HealthCheckResponse.SERVING


async def test_silent_and_closed_connections_do_not_break_the_listener(plain: int) -> None:
    with socket.create_connection(("127.0.0.1", plain)):
        pass  # connect, send nothing, close
    partial = socket.create_connection(("127.0.0.1", plain))
    partial.sendall(PREFACE[:4])
    partial.close()
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{plain}/health") as r:
        assert r.status == 200
