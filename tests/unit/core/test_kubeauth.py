"""`/metrics` protection by TokenReview + SubjectAccessReview, against the fake API server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio
from aiohttp import web

from pyllmd.core.clock import VirtualClock
from pyllmd.core.kubeauth import KubeAuthorizer, bearer_token, guarded_handler, refuse_all
from pyllmd.core.kubeclient import connect
from tests.unit.autoscaler.kubefake import KubeFake, running_kube

PROM = {"username": "system:serviceaccount:monitoring:prometheus", "uid": "u1", "groups": ["sa"]}


@pytest_asyncio.fixture
async def kube() -> AsyncIterator[KubeFake]:
    async with running_kube() as fake:
        fake.tokens["good"] = PROM
        fake.tokens["nobody"] = {"username": "nobody"}
        fake.grants.add((PROM["username"], "/metrics", "get"))
        yield fake


@pytest_asyncio.fixture
async def authorizer(kube: KubeFake) -> AsyncIterator[tuple[KubeAuthorizer, VirtualClock]]:
    client = connect(server=kube.url)
    clock = VirtualClock()
    try:
        yield KubeAuthorizer(client, clock), clock
    finally:
        await client.close()


def reviews(kube: KubeFake, kind: str) -> int:
    return sum(1 for c in kube.calls if c.path.endswith(kind) and c.method == "POST")


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") == ""
    assert bearer_token("") == ""


async def test_allowed_scraper_passes_and_reviews_are_cached(
    kube: KubeFake, authorizer: tuple[KubeAuthorizer, VirtualClock]
) -> None:
    auth, clock = authorizer
    assert (await auth.decide("Bearer good", "/metrics", "GET")).status == 200
    assert (await auth.decide("Bearer good", "/metrics", "GET")).status == 200
    assert reviews(kube, "tokenreviews") == 1
    assert reviews(kube, "subjectaccessreviews") == 1
    sar = next(c.body for c in kube.calls if c.path.endswith("subjectaccessreviews"))
    assert sar["spec"]["user"] == PROM["username"]
    assert sar["spec"]["groups"] == ["sa"]
    assert sar["spec"]["nonResourceAttributes"] == {"path": "/metrics", "verb": "get"}
    await clock.advance(61)  # the token review expires, the allow does not
    assert (await auth.decide("Bearer good", "/metrics", "GET")).status == 200
    assert reviews(kube, "tokenreviews") == 2
    assert reviews(kube, "subjectaccessreviews") == 1


async def test_unknown_token_and_missing_token_are_401(
    authorizer: tuple[KubeAuthorizer, VirtualClock],
) -> None:
    auth, _ = authorizer
    assert (await auth.decide("", "/metrics", "GET")).status == 401
    assert (await auth.decide("Bearer forged", "/metrics", "GET")).status == 401


async def test_user_without_grant_is_403_and_denial_expires(
    kube: KubeFake, authorizer: tuple[KubeAuthorizer, VirtualClock]
) -> None:
    auth, clock = authorizer
    denied = await auth.decide("Bearer nobody", "/metrics", "GET")
    assert (denied.status, denied.message) == (403, "Authorization denied for user nobody")
    kube.grants.add(("nobody", "/metrics", "get"))
    assert (await auth.decide("Bearer nobody", "/metrics", "GET")).status == 403  # cached
    await clock.advance(31)
    assert (await auth.decide("Bearer nobody", "/metrics", "GET")).status == 200


async def test_unreachable_api_server() -> None:
    client = connect(server="http://127.0.0.1:9", timeout=2)
    try:
        auth = KubeAuthorizer(client, VirtualClock())
        assert (await auth.decide("Bearer good", "/metrics", "GET")).status == 401
    finally:
        await client.close()


async def test_guarded_handler_over_http(
    kube: KubeFake, authorizer: tuple[KubeAuthorizer, VirtualClock]
) -> None:
    auth, _ = authorizer

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text="up 1\n")

    app = web.Application()
    app.router.add_get("/metrics", guarded_handler(metrics, auth.decide))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as s:
            url = f"http://127.0.0.1:{port}/metrics"
            async with s.get(url) as r:
                assert (r.status, await r.text()) == (401, "Unauthorized\n")
            async with s.get(url, headers={"Authorization": "Bearer nobody"}) as r:
                assert r.status == 403
            async with s.get(url, headers={"Authorization": "Bearer good"}) as r:
                assert (r.status, await r.text()) == (200, "up 1\n")
    finally:
        await runner.cleanup()


async def test_refuse_all_without_api_server() -> None:
    decide = refuse_all("no Kubernetes API server to review tokens")
    assert (await decide("", "/metrics", "GET")).status == 401
    assert (await decide("Bearer x", "/metrics", "GET")).status == 403
