"""Start-up wiring of `pyllmd autoscaler`: the metrics endpoint's TLS."""

from __future__ import annotations

import ssl

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pyllmd.autoscaler.config import load_controller_config
from pyllmd.autoscaler.run import metrics_tls

ENV = {"PROMETHEUS_BASE_URL": "https://prometheus.example:9090"}


def test_metrics_plain_http_when_not_secure() -> None:
    cfg = load_controller_config(["--metrics-secure=false"], ENV)
    assert metrics_tls(cfg) is None


async def test_metrics_served_over_tls_with_a_self_signed_cert() -> None:
    cfg = load_controller_config(["--metrics-bind-address=127.0.0.1:0"], ENV)
    tls = metrics_tls(cfg)
    assert tls is not None and tls.minimum_version == ssl.TLSVersion.TLSv1_2

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text="wva_desired_replicas 1\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    server = TestServer(app, host="127.0.0.1", scheme="https")
    await server.start_server(ssl=tls)
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/metrics"), ssl=insecure) as r:
            assert r.status == 200 and "wva_desired_replicas" in await r.text()
        with pytest.raises(aiohttp.ClientError):
            plain = str(server.make_url("/metrics")).replace("https://", "http://")
            async with http.get(plain) as r:
                await r.read()
    await server.close()
