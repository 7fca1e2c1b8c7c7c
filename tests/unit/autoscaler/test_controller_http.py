"""The controller's probes as kubelet sees them (acceptance check 7)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from pyllmd.autoscaler.loops.controller import Controller
from pyllmd.autoscaler.loops.metrics import ControllerMetrics
from pyllmd.core.clock import VirtualClock


class SlowConfigs:
    """A saturation engine whose ConfigMap bootstrap waits for a signal (or fails)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.release = asyncio.Event()
        self.error = error

    async def read_configs(self, namespaces: set[str]) -> Any:
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return None


async def _probe(http: aiohttp.ClientSession, server: TestServer, path: str) -> tuple[int, str]:
    async with http.get(server.make_url(path)) as r:
        return r.status, await r.text()


async def _probes(engine: SlowConfigs) -> tuple[Controller, TestServer]:
    controller = Controller(engine, ControllerMetrics(), VirtualClock(), 60.0)  # type: ignore[arg-type]
    app = web.Application()
    app.add_routes(controller.health_routes())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return controller, server


async def test_wva_acc_07_readyz_waits_for_configmap_bootstrap() -> None:
    engine = SlowConfigs()
    controller, server = await _probes(engine)
    async with aiohttp.ClientSession() as http:
        assert await _probe(http, server, "/healthz") == (200, "ok")
        status, text = await _probe(http, server, "/readyz")
        assert status == 500 and text == "initial ConfigMap bootstrap not complete"
        boot = asyncio.create_task(controller.bootstrap())
        engine.release.set()
        await boot
        assert await _probe(http, server, "/readyz") == (200, "ok")
    await server.close()


async def test_readyz_reports_a_failed_bootstrap() -> None:
    engine = SlowConfigs(RuntimeError("configmaps is forbidden"))
    controller, server = await _probes(engine)
    engine.release.set()
    try:
        await controller.bootstrap()
    except RuntimeError:
        pass
    async with aiohttp.ClientSession() as http:
        status, text = await _probe(http, server, "/readyz")
    assert status == 500
    assert text == "initial ConfigMap bootstrap not complete: configmaps is forbidden"
    await server.close()


async def test_secure_metrics_review_the_scraper_with_the_api_server() -> None:
    """`--metrics-secure`: the scraper's token goes through TokenReview + SubjectAccessReview."""
    from pyllmd.core.kubeauth import KubeAuthorizer
    from pyllmd.core.kubeclient import connect
    from tests.unit.autoscaler.kubefake import running_kube

    async with running_kube() as kube:
        kube.tokens["prom"] = {"username": "prometheus"}
        kube.grants.add(("prometheus", "/metrics", "get"))
        client = connect(server=kube.url)
        controller = Controller(SlowConfigs(), ControllerMetrics(), VirtualClock(), 60.0)  # type: ignore[arg-type]
        app = web.Application()
        app.add_routes(controller.metrics_routes(KubeAuthorizer(client, VirtualClock()).decide))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as http:
                assert (await _probe(http, server, "/metrics"))[0] == 401
                url = server.make_url("/metrics")
                async with http.get(url, headers={"Authorization": "Bearer prom"}) as r:
                    assert r.status == 200
                    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        finally:
            await server.close()
            await client.close()
