"""An in-process endpoint picker's /metrics and the InferencePool objects that point at it.

Shared by the scale-from-zero tests: the fake API server holds the pool, the
EPP Service and its pods (IP 127.0.0.1); the Service's metrics target port is
this aiohttp server, answering like an endpoint picker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest_asyncio
from aiohttp import web

from pyllmd.autoscaler.kube.pools import POOL_GROUP_V1, POOL_GROUP_V1ALPHA2
from tests.unit.autoscaler import kubefake_api as api
from tests.unit.autoscaler.kubefake import KubeFake

TOKEN = "epp-reader-token"
POOLS = {POOL_GROUP_V1: api.INFERENCEPOOLS_V1, POOL_GROUP_V1ALPHA2: api.INFERENCEPOOLS_V1ALPHA2}


def queue_text(value: float, model: str) -> str:
    """The EPP's flow-control queue gauge for `model`."""
    return (
        "# HELP inference_extension_flow_control_queue_size Requests in the queue.\n"
        "# TYPE inference_extension_flow_control_queue_size gauge\n"
        f'inference_extension_flow_control_queue_size{{fairness_id="x",priority="0",'
        f'target_model_name="{model}"}} {value}\n'
    )


@dataclass
class Epp:
    """The in-process endpoint picker: what it answers and who asked."""

    port: int = 0
    body: str = ""
    auth: list[str] = field(default_factory=list)


@pytest_asyncio.fixture
async def epp() -> AsyncIterator[Epp]:
    """The EPP's /metrics on a loopback port (bearer `TOKEN` required), an empty queue."""
    state = Epp()

    async def metrics(request: web.Request) -> web.Response:
        state.auth.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.Response(status=401)
        return web.Response(text=state.body, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield state
    finally:
        await runner.cleanup()


def add_pool(
    kube: KubeFake, group: str, epp_port: int, selector: dict[str, str], namespace: str
) -> None:
    """An InferencePool of `group`, its EPP Service and one Ready plus one unready EPP pod."""
    if group == POOL_GROUP_V1:
        spec: dict[str, Any] = {
            "selector": {"matchLabels": selector},
            "targetPorts": [{"number": 8000}],
            "endpointPickerRef": {"name": "epp", "port": {"number": 9002}},
        }
    else:
        spec = {"selector": selector, "targetPortNumber": 8000, "extensionRef": {"name": "epp"}}
    meta = {"name": "pool", "namespace": namespace}
    kube.create(POOLS[group], {"metadata": meta, "spec": spec})
    ports = [
        {"name": "grpc-ext-proc", "port": 9002, "targetPort": 9002},
        {"name": "http-metrics", "port": 9090, "targetPort": epp_port},
    ]
    kube.create(
        api.SERVICES,
        {
            "metadata": {"name": "epp", "namespace": namespace},
            "spec": {"selector": {"app": "epp"}, "ports": ports},
        },
    )
    for name, ip, ready in (("epp-0", "127.0.0.1", "True"), ("epp-1", "127.0.0.2", "False")):
        kube.create(
            api.PODS,
            {
                "metadata": {"name": name, "namespace": namespace, "labels": {"app": "epp"}},
                "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": ready}]},
            },
        )
