"""`pyllmd epp` against the fake API server: `/metrics` auth and leader election (checks 61, 62)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pyllmd.core.clock import RealClock
from pyllmd.core.kubeclient import connect
from pyllmd.epp import run as epp_run
from pyllmd.epp.config.loader import load_config_text
from pyllmd.epp.options import load_options
from pyllmd.epp.run import Epp, RunningEpp, build_epp, lead, lease_name, start_epp
from tests.unit.autoscaler import kubefake_api as api
from tests.unit.autoscaler.kubefake import KubeFake, running_kube

STATIC = "--static-endpoints=127.0.0.1:8001"
LOCAL = ["--bind-address=127.0.0.1", "--grpc-port=0", "--grpc-health-port=0", "--metrics-port=0"]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


@pytest_asyncio.fixture
async def kube() -> AsyncIterator[KubeFake]:
    async with running_kube() as fake:
        fake.tokens["prom"] = {"username": "system:serviceaccount:monitoring:prometheus"}
        fake.tokens["intruder"] = {"username": "intruder"}
        fake.grants.add(("system:serviceaccount:monitoring:prometheus", "/metrics", "get"))
        yield fake


async def fake_fetch(url: str) -> str:
    return "vllm:num_requests_waiting 0\nvllm:num_requests_running 0\n"


def epp_with(kube: KubeFake, *flags: str) -> Epp:
    return build_epp(
        load_options([STATIC, *LOCAL, "--pool-namespace=llm", *flags], {}),
        load_config_text(None),
        clock=RealClock(),
        fetch=fake_fetch,
        kube=connect(server=kube.url),
    )


async def get(url: str, token: str = "") -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as s, s.get(url, headers=headers) as r:
        return r.status, await r.text()


async def test_epp_acc_61_metrics_auth_reviews_tokens(kube: KubeFake) -> None:
    running = await start_epp(epp_with(kube))
    try:
        url = f"http://127.0.0.1:{running.metrics_port}/metrics"
        assert await get(url) == (401, "Unauthorized\n")
        assert await get(url, "forged") == (401, "Unauthorized\n")
        assert await get(url, "intruder") == (403, "Authorization denied for user intruder\n")
        status, body = await get(url, "prom")
        assert status == 200
        assert "inference_extension_info{" in body
    finally:
        await running.close(grace=0)
    running = await start_epp(epp_with(kube, "--metrics-endpoint-auth=false"))
    try:
        status, _ = await get(f"http://127.0.0.1:{running.metrics_port}/metrics")
        assert status == 200
    finally:
        await running.close(grace=0)


async def health(running: RunningEpp, service: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.health_port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service)
        )
        return int(reply.status)


async def wait_for(probe: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await probe():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def test_epp_acc_62_leader_election_readiness_and_failover(
    kube: KubeFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replicas: only the leader is ready; when it stops, the follower takes over."""
    monkeypatch.setattr(epp_run, "RETRY_PERIOD", 0.1)
    monkeypatch.setattr(epp_run, "RENEW_DEADLINE", 0.5)
    flags = ("--ha-enable-leader-election", "--metrics-endpoint-auth=false")
    replicas = [await start_epp(epp_with(kube, *flags)) for _ in range(2)]
    stops = [asyncio.Event(), asyncio.Event()]
    campaigns = [
        asyncio.create_task(lead(r.epp.elector, stop))  # type: ignore[arg-type]
        for r, stop in zip(replicas, stops, strict=True)
    ]
    try:

        async def one_leader() -> bool:
            return sum([await health(r, "readiness") == SERVING for r in replicas]) == 1

        await wait_for(one_leader)
        leader = 0 if await health(replicas[0], "readiness") == SERVING else 1
        follower = replicas[1 - leader]
        assert await health(follower, "liveness") == SERVING
        assert await health(follower, "readiness") == NOT_SERVING
        assert await health(follower, "") == NOT_SERVING
        assert await health(follower, "foo") == UNKNOWN
        lease = kube.get(api.LEASES, "llm", lease_name(replicas[0].epp.options))
        assert lease is not None
        assert lease["metadata"]["name"] == (
            "epp-llm-static.gateway-api-inference-extension.sigs.k8s.io"
        )
        assert lease["spec"]["holderIdentity"] == replicas[leader].epp.elector.identity  # type: ignore[union-attr]
        stops[leader].set()  # the leader shuts down and releases the lease
        assert await campaigns[leader] is True
        await replicas[leader].epp.elector.release()  # type: ignore[union-attr]

        async def follower_ready() -> bool:
            return await health(follower, "readiness") == SERVING

        await wait_for(follower_ready)
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*campaigns, return_exceptions=True)
        for r in replicas:
            await r.close(grace=0)
