"""Scale from zero on Kubernetes: InferencePools, the EPP Service and pods, a live EPP /metrics.

The fake API server holds the pool, the EPP Service and its pods; the pods'
IP is 127.0.0.1 and the Service's metrics target port is an in-process
aiohttp server answering like an endpoint picker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from pyllmd.autoscaler.collect.epp import EppScraper
from pyllmd.autoscaler.collect.prometheus import PrometheusClient, PrometheusOptions
from pyllmd.autoscaler.config import ControllerConfig
from pyllmd.autoscaler.decide.api import CrossVersionObjectReference
from pyllmd.autoscaler.kube.cache import KubeCache
from pyllmd.autoscaler.kube.cluster import KubeCluster, connect
from pyllmd.autoscaler.kube.pools import (
    POOL_GROUP_V1,
    POOL_GROUP_V1ALPHA2,
    KubePools,
    epp_service_name,
    metrics_port,
    pool_selector,
    ready_pod_ips,
)
from pyllmd.autoscaler.loops.metrics import ControllerMetrics
from pyllmd.autoscaler.loops.scalefromzero import ScaleFromZeroEngine
from pyllmd.autoscaler.run import build_controller
from pyllmd.core.clock import VirtualClock
from tests.unit.autoscaler import eppfake
from tests.unit.autoscaler import kubefake_api as api
from tests.unit.autoscaler.eppfake import POOLS, TOKEN, Epp
from tests.unit.autoscaler.kubefake import KubeFake

NS = "llm"
MODEL = "meta-llama/Llama-3.1-8B"
DEPLOY = f"/apis/apps/v1/namespaces/{NS}/deployments/llama"


def queue_text(value: float, model: str = MODEL) -> str:
    return eppfake.queue_text(value, model)


def add_pool(kube: KubeFake, group: str, epp_port: int, selector: dict[str, str]) -> None:
    eppfake.add_pool(kube, group, epp_port, selector, NS)


class Rig:
    def __init__(self, kube: KubeFake, group: str = POOL_GROUP_V1ALPHA2) -> None:
        self.kube = kube
        self.clock = VirtualClock()
        self.cluster = KubeCluster(connect(server=kube.url))
        self.scraper = EppScraper(bearer_token=TOKEN)
        self.metrics = ControllerMetrics()
        self.pools = KubePools(self.cluster, group, clock=self.clock, refresh_interval=0)
        self.engine = ScaleFromZeroEngine(
            self.cluster, self.pools, self.scraper, self.metrics, self.clock
        )

    async def close(self) -> None:
        await self.scraper.close()
        await self.cluster.close()

    def va(self) -> dict[str, Any]:
        obj = self.kube.get(api.VARIANT_AUTOSCALINGS, NS, "llama")
        assert obj is not None
        return obj

    def reasons(self) -> dict[str, str]:
        conditions = (self.va().get("status") or {}).get("conditions") or []
        return {c["type"]: c["reason"] for c in conditions}

    def writes(self) -> list[api.ApiCall]:
        return [c for c in self.kube.calls if c.method != "GET"]


@pytest_asyncio.fixture(params=[POOL_GROUP_V1ALPHA2, POOL_GROUP_V1])
async def rig(request: Any, kube: KubeFake, epp: Epp) -> AsyncIterator[Rig]:
    group = request.param
    kube.add_namespace(NS)
    kube.add_deployment(NS, "llama", 0, labels={"pool": "llama"})
    kube.add_va(NS, "llama", model_id=MODEL)
    add_pool(kube, group, epp.port, {"pool": "llama"})
    r = Rig(kube, group)
    yield r
    await r.close()


async def test_wva_acc_46_queued_request_wakes_the_variant(rig: Rig, epp: Epp) -> None:
    epp.body = queue_text(2)
    decisions = await rig.engine.tick()
    assert [(d.variant, d.target_replicas) for d in decisions] == [("llama", 1)]
    dep = rig.kube.get(api.DEPLOYMENTS, NS, "llama")
    assert dep is not None and dep["spec"]["replicas"] == 1
    status = rig.va()["status"]
    assert status["desiredOptimizedAlloc"]["numReplicas"] == 1
    assert status["desiredOptimizedAlloc"]["accelerator"] == "A100"
    assert rig.reasons()["OptimizationReady"] == "ScaleFromZeroMode"
    assert rig.reasons()["MetricsAvailable"] == "ScaleFromZero"
    assert epp.auth == [f"Bearer {TOKEN}"]  # scraped with the reader token
    assert (
        b'wva_desired_replicas{accelerator_type="A100",namespace="llm",variant_name="llama"} 1'
        in (rig.metrics.render())
    )


@pytest.mark.parametrize(
    "body", [queue_text(0), queue_text(2, model="other/model"), ""], ids=["empty", "other", "none"]
)
async def test_wva_acc_47_no_queue_for_the_model_changes_nothing(
    rig: Rig, epp: Epp, body: str
) -> None:
    epp.body = body
    assert await rig.engine.tick() == []
    assert rig.writes() == []
    assert len(epp.auth) == 1  # it did look


async def test_wva_acc_48_no_pool_known_changes_nothing(kube: KubeFake, epp: Epp) -> None:
    kube.add_namespace(NS)
    kube.add_deployment(NS, "llama", 0)
    kube.add_va(NS, "llama", model_id=MODEL)
    for group in POOLS:
        r = Rig(kube, group)
        try:
            assert await r.engine.tick() == []
        finally:
            await r.close()
    assert [c for c in kube.calls if c.method != "GET"] == [] and epp.auth == []


async def test_wva_acc_49_target_already_up_gets_no_write(rig: Rig, epp: Epp) -> None:
    epp.body = queue_text(2)
    assert len(await rig.engine.tick()) == 1
    before = len(rig.writes())
    assert await rig.engine.tick() == []  # now at 1 replica: not inactive any more
    assert len(rig.writes()) == before
    ref = CrossVersionObjectReference(apiVersion="apps/v1", kind="Deployment", name="llama")
    assert await rig.cluster.scale(NS, ref, 1) is False
    assert len(rig.writes()) == before


async def test_wva_acc_50_wakes_through_the_scale_subresource_only(rig: Rig, epp: Epp) -> None:
    epp.body = queue_text(3)
    await rig.engine.tick()
    assert rig.kube.writes_to(DEPLOY) == []
    scale = rig.kube.writes_to(DEPLOY + "/scale")
    assert [(c.method, c.body["spec"]["replicas"]) for c in scale] == [("PUT", 1)]


async def test_pool_that_selects_other_pods_wakes_nothing(kube: KubeFake, epp: Epp) -> None:
    kube.add_namespace(NS)
    kube.add_deployment(NS, "llama", 0)
    kube.add_va(NS, "llama", model_id=MODEL)
    add_pool(kube, POOL_GROUP_V1ALPHA2, epp.port, {"pool": "someone-else"})
    epp.body = queue_text(2)
    r = Rig(kube)
    try:
        assert await r.engine.tick() == []
    finally:
        await r.close()
    assert [c for c in kube.calls if c.method != "GET"] == []


async def test_excluded_namespace_is_not_woken(rig: Rig, epp: Epp) -> None:
    rig.kube.update(
        api.NAMESPACES, None, NS, {"metadata": {"annotations": {"wva.llmd.ai/exclude": "true"}}}
    )
    epp.body = queue_text(2)
    assert await rig.engine.tick() == []
    assert rig.writes() == []


async def test_pool_without_usable_epp_service_is_left_out(kube: KubeFake, epp: Epp) -> None:
    kube.add_namespace(NS)
    add_pool(kube, POOL_GROUP_V1ALPHA2, epp.port, {"pool": "llama"})
    kube.update(api.SERVICES, NS, "epp", {"spec": {"ports": [{"name": "grpc", "port": 9002}]}})
    kube.create(
        api.INFERENCEPOOLS_V1ALPHA2,
        {"metadata": {"name": "orphan", "namespace": NS}, "spec": {"selector": {"a": "b"}}},
    )
    r = Rig(kube)
    try:
        assert await r.pools.pools() == []
    finally:
        await r.close()


async def test_pools_are_listed_with_their_epp_urls(kube: KubeFake, epp: Epp) -> None:
    kube.add_namespace(NS)
    add_pool(kube, POOL_GROUP_V1, epp.port, {"pool": "llama"})
    clock = VirtualClock()
    cluster = KubeCluster(connect(server=kube.url))
    pools = KubePools(cluster, POOL_GROUP_V1, clock=clock, refresh_interval=1.0)
    try:
        [pool] = await pools.pools()
        assert (pool.namespace, pool.name, dict(pool.selector)) == (NS, "pool", {"pool": "llama"})
        assert pool.metrics_urls == (f"http://127.0.0.1:{epp.port}/metrics",)
        kube.delete(api.INFERENCEPOOLS_V1, NS, "pool")
        assert len(await pools.pools()) == 1  # cached for the refresh interval
        await clock.advance(1.0)
        assert await pools.pools() == []
    finally:
        await cluster.close()


def test_pool_fields_of_both_api_versions() -> None:
    v1 = {"spec": {"selector": {"matchLabels": {"a": "1"}}, "endpointPickerRef": {"name": "e"}}}
    alpha = {"spec": {"selector": {"a": "1"}, "extensionRef": {"name": "e"}}}
    assert pool_selector(v1, POOL_GROUP_V1) == pool_selector(alpha, POOL_GROUP_V1ALPHA2)
    assert epp_service_name(v1, POOL_GROUP_V1) == epp_service_name(alpha, POOL_GROUP_V1ALPHA2)
    assert epp_service_name(v1, POOL_GROUP_V1ALPHA2) == ""


@pytest.mark.parametrize(
    "ports,expected",
    [
        ([{"name": "grpc", "port": 9002}, {"name": "http-metrics", "port": 9090}], 9090),
        ([{"name": "metrics", "port": 80, "targetPort": 9090}], 9090),
        ([{"name": "metrics", "port": 80, "targetPort": "metrics"}], 80),
        ([{"name": "metric-a", "port": 1}, {"name": "metric-b", "port": 2}], 1),
        ([{"name": "grpc", "port": 9002}], None),
        ([], None),
    ],
)
def test_metrics_port(ports: list[dict[str, Any]], expected: int | None) -> None:
    assert metrics_port({"spec": {"ports": ports}}) == expected


def test_ready_pod_ips() -> None:
    def pod(ip: str, ready: str, deleting: bool = False) -> dict[str, Any]:
        meta = {"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {}
        conditions = [{"type": "Ready", "status": ready}]
        return {"metadata": meta, "status": {"podIP": ip, "conditions": conditions}}

    pods = [pod("10.0.0.2", "True"), pod("10.0.0.1", "True"), pod("10.0.0.3", "False")]
    pods += [pod("", "True"), pod("10.0.0.4", "True", deleting=True), {}]
    assert ready_pod_ips(pods) == ["10.0.0.1", "10.0.0.2"]


async def test_run_wires_pools_scraper_and_events(kube: KubeFake) -> None:
    cfg = ControllerConfig(
        prometheus_base_url="https://prometheus.example:9090",
        pool_group=POOL_GROUP_V1,
        epp_metric_reader_bearer_token=TOKEN,
        scale_from_zero_engine_max_concurrency=3,
        watch_namespace=NS,
    )
    cluster = KubeCluster(connect(server=kube.url), namespace=NS)
    clock = VirtualClock()
    client = PrometheusClient(PrometheusOptions(base_url=cfg.prometheus_base_url), clock)
    scraper = EppScraper(bearer_token=cfg.epp_metric_reader_bearer_token)
    try:
        controller = build_controller(cfg, cluster, client, scraper, clock)
        assert controller.events is cluster
        assert controller.saturation.settings.watch_namespace == NS
        from_zero = controller.from_zero
        assert from_zero is not None and from_zero.scraper is scraper
        assert isinstance(from_zero.cluster, KubeCache) and from_zero.cluster.cluster is cluster
        assert isinstance(from_zero.pools, KubePools) and from_zero.pools.group == POOL_GROUP_V1
        assert from_zero.scope.watch_namespace == NS
    finally:
        await scraper.close()
        await client.close()
        await cluster.close()
