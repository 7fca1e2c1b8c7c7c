"""The scale-from-zero engine reads VAs, Deployments and Namespaces from watch-fed caches.

Real `ScaleFromZeroEngine` + `KubeCache` + `KubeCluster` against the fake API
server, whose request log is what the assertions count: one listing per kind
at start, one more per expired watch, no GET per tick.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from pyllmd.autoscaler.collect.epp import EppScraper
from pyllmd.autoscaler.kube.cache import KubeCache
from pyllmd.autoscaler.kube.cluster import KubeCluster, connect
from pyllmd.autoscaler.kube.pools import POOL_GROUP_V1ALPHA2, KubePools
from pyllmd.autoscaler.loops.metrics import ControllerMetrics
from pyllmd.autoscaler.loops.scalefromzero import ScaleFromZeroEngine
from pyllmd.core.clock import VirtualClock
from tests.unit.autoscaler import kubefake_api as api
from tests.unit.autoscaler.eppfake import TOKEN, Epp, add_pool, queue_text
from tests.unit.autoscaler.kubefake import KubeFake, running_kube

NS = "llm"
VAS = 45
TICK = 0.1
COLLECTIONS = {
    "VariantAutoscaling": r"/apis/llmd\.ai/v1alpha1(/namespaces/[^/]+)?/variantautoscalings",
    "Deployment": r"/apis/apps/v1(/namespaces/[^/]+)?/deployments",
    "Namespace": r"/api/v1/namespaces",
}


def fill(kube: KubeFake, epp_port: int) -> None:
    """45 VAs (one model each) whose Deployments are at 0, and a pool selecting their pods."""
    kube.add_namespace(NS)
    for i in range(VAS):
        kube.add_deployment(NS, f"v{i}", 0, labels={"pool": "p"})
        kube.add_va(NS, f"v{i}", model_id=f"m{i}")
    add_pool(kube, POOL_GROUP_V1ALPHA2, epp_port, {"pool": "p"}, NS)


def reads(kube: KubeFake, since: int = 0) -> Counter[tuple[str, str]]:
    """(kind, list | watch | get) → GET requests for the cached kinds since call `since`."""
    found: Counter[tuple[str, str]] = Counter()
    for call in kube.calls[since:]:
        for kind, collection in COLLECTIONS.items():
            if call.method != "GET":
                continue
            if re.fullmatch(collection, call.path):
                found[(kind, "watch" if call.query.get("watch") else "list")] += 1
            elif re.fullmatch(collection + "/[^/]+", call.path):
                found[(kind, "get")] += 1
    return found


async def until(check: Callable[[], bool]) -> None:
    """Let the watch streams deliver (real sockets) until `check` holds; bounded."""
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the cache did not catch up")


class Rig:
    def __init__(self, kube: KubeFake) -> None:
        self.kube = kube
        self.clock = VirtualClock()
        self.cluster = KubeCluster(connect(server=kube.url))
        self.cache = KubeCache(self.cluster, retry_delay=0.05)
        self.scraper = EppScraper(bearer_token=TOKEN)
        pools = KubePools(self.cluster, POOL_GROUP_V1ALPHA2, clock=self.clock)
        self.engine = ScaleFromZeroEngine(
            self.cache, pools, self.scraper, ControllerMetrics(), self.clock
        )

    async def ticks(self, n: int) -> list[str]:
        """`n` ticks 100 ms of virtual time apart; the variants woken."""
        woken: list[str] = []
        for _ in range(n):
            woken += [d.variant for d in await self.engine.tick()]
            await self.clock.advance(TICK)
        return woken

    async def close(self) -> None:
        await self.cache.close()
        await self.scraper.close()
        await self.cluster.close()


@pytest_asyncio.fixture
async def rig(kube: KubeFake, epp: Epp) -> AsyncIterator[Rig]:
    fill(kube, epp.port)
    r = Rig(kube)
    yield r
    await r.close()


async def test_a_minute_of_ticks_lists_once_and_gets_nothing(rig: Rig, epp: Epp) -> None:
    kube = rig.kube
    start = len(kube.calls)
    assert await rig.ticks(200) == []
    kube.drop_watches()  # e.g. the API server's watch timeout: resume, no new listing
    assert await rig.ticks(100) == []
    epp.body = queue_text(2, "m7")
    assert await rig.ticks(300) == ["v7"]  # woken once; the cache sees its new replicas
    found = reads(kube, start)
    for kind in ("VariantAutoscaling", "Deployment", "Namespace"):
        assert found[(kind, "list")] == 1, (kind, found)
        assert found[(kind, "get")] == 0, (kind, found)
        assert 1 <= found[(kind, "watch")] <= 3, (kind, found)
    scale_reads = [c for c in kube.calls[start:] if c.path.endswith("/scale")]
    assert [c.method for c in scale_reads] == ["GET", "PUT"]
    assert len(epp.auth) == 600  # one scrape of the pool per tick, not one per VA


async def test_the_cache_follows_changes(rig: Rig, epp: Epp) -> None:
    kube = rig.kube
    assert await rig.ticks(1) == []
    kube.update(api.DEPLOYMENTS, NS, "v3", {"spec": {"replicas": 1}})  # up by someone else
    kube.delete(api.VARIANT_AUTOSCALINGS, NS, "v4")
    kube.add_deployment(NS, "late", 0, labels={"pool": "p"})
    kube.add_va(NS, "late", model_id="m-late")
    await until(lambda: ("llm", "late") in rig.cache.vas.items)
    await until(lambda: rig.cache.deployments.items[("llm", "v3")].spec_replicas == 1)
    epp.body = queue_text(1, "m3") + queue_text(1, "m4") + queue_text(1, "m-late")
    assert await rig.ticks(1) == ["late"]


async def test_an_expired_watch_lists_again_once_and_misses_nothing(epp: Epp) -> None:
    async with running_kube(history=4) as kube:
        fill(kube, epp.port)
        r = Rig(kube)
        try:
            assert await r.ticks(3) == []
            start = len(kube.calls)
            # While the watches reconnect, more changes than the server's history holds.
            kube.drop_watches()
            for i in range(5):
                kube.update(api.DEPLOYMENTS, NS, f"v{i}", {"spec": {"replicas": 1}})
            kube.delete(api.VARIANT_AUTOSCALINGS, NS, "v9")
            kube.add_namespace("other")
            namespaces = r.cache.namespaces
            assert namespaces is not None
            await until(lambda: ("", "other") in namespaces.items)
            await until(lambda: ("llm", "v9") not in r.cache.vas.items)
            await until(lambda: r.cache.deployments.items[("llm", "v4")].spec_replicas == 1)
            found = reads(kube, start)
            for kind in ("VariantAutoscaling", "Deployment", "Namespace"):
                assert found[(kind, "list")] == 1, (kind, found)  # one per expiry
            assert [i.lists for i in r.cache.informers] == [2, 2, 2]
            epp.body = queue_text(1, "m0") + queue_text(1, "m9") + queue_text(1, "m8")
            assert await r.ticks(1) == ["v8"]  # v0 is up, v9 gone: the cache missed nothing
        finally:
            await r.close()


@pytest.mark.parametrize("namespace", ["", NS])
async def test_namespaces_are_watched_only_when_all_namespaces_are(
    kube: KubeFake, namespace: str
) -> None:
    kube.add_namespace(NS, annotations={"wva.llmd.ai/exclude": "true"})
    cluster = KubeCluster(connect(server=kube.url), namespace=namespace)
    cache = KubeCache(cluster)
    try:
        assert (cache.namespaces is None) == bool(namespace)
        annotations = await cache.namespace_annotations(NS)
        assert annotations == {"wva.llmd.ai/exclude": "true"}
    finally:
        await cache.close()
        await cluster.close()
