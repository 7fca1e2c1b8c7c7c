"""Endpoint discovery over the fake Kubernetes API server (spec §3.1-3.3, §10)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pyllmd.core.kubeclient import connect
from pyllmd.epp.config.loader import load_config_text
from pyllmd.epp.datalayer.kube import (
    PodDiscovery,
    PoolSpec,
    pod_ready,
    pool_from_object,
)
from pyllmd.epp.datastore import Datastore
from pyllmd.epp.objectives import GROUP_V1ALPHA2
from pyllmd.epp.options import load_options
from pyllmd.epp.run import build_epp, start_epp
from tests.unit.autoscaler import kubefake_api as api
from tests.unit.autoscaler.kubefake import KubeFake, running_kube

NS = "llm"
Obj = dict[str, Any]


@pytest_asyncio.fixture
async def kube() -> AsyncIterator[KubeFake]:
    async with running_kube() as fake:
        yield fake


def pool_body(
    name: str = "pool", ports: tuple[int, ...] = (8000, 8001), app: str = "vllm", ns: str = NS
) -> Obj:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": app}},
            "targetPorts": [{"number": p} for p in ports],
            "endpointPickerRef": {"name": "epp", "port": {"number": 9002}},
        },
    }


def add_pool(kube: KubeFake, **kwargs: Any) -> Obj:
    return kube.create(api.INFERENCEPOOLS_V1, pool_body(**kwargs))


def add_pod(
    kube: KubeFake,
    name: str,
    ip: str,
    *,
    ready: bool = True,
    labels: Mapping[str, str] | None = None,
    ns: str = NS,
    deleting: bool = False,
) -> Obj:
    meta: Obj = {"name": name, "namespace": ns, "labels": dict(labels or {"app": "vllm"})}
    if deleting:
        meta.update(finalizers=["x/hold"], deletionTimestamp="2024-01-01T00:00:00Z")
    status = {
        "phase": "Running",
        "podIP": ip,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    return kube.create(
        api.PODS, {"metadata": meta, "spec": {"containers": [{"name": "m"}]}, "status": status}
    )


def set_ready(kube: KubeFake, name: str, ready: bool) -> None:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    kube.update(api.PODS, NS, name, {"status": {"conditions": conditions}})


async def until(check: Callable[[], bool], what: str) -> None:
    """Yield to the loop until `check()` holds (bounded by iterations, not wall time)."""
    for _ in range(2000):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


def names(ds: Datastore) -> list[str]:
    return [e.name for e in ds.snapshot_tuple()]


@pytest_asyncio.fixture
async def discovered(kube: KubeFake) -> AsyncIterator[tuple[KubeFake, Datastore, PodDiscovery]]:
    """Pool-mode discovery of pool `pool` in NS, running against the fake."""
    client = connect(server=kube.url)
    ds = Datastore()
    disc = PodDiscovery(client, ds, NS, pool_name="pool", retry_delay=0.01)
    task = asyncio.create_task(disc.run())
    try:
        yield kube, ds, disc
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()


# ------------------------------------------------------------------ pure rules


def test_pool_from_object_reads_v1_and_v1alpha2_shapes() -> None:
    assert pool_from_object(pool_body(ports=(8000, 8001, 8000))) == PoolSpec(
        {"app": "vllm"}, (8000, 8001)
    )
    v1alpha2 = {"spec": {"selector": {"app": "x"}, "targetPortNumber": 8000}}
    assert pool_from_object(v1alpha2) == PoolSpec({"app": "x"}, (8000,))
    assert pool_from_object(None) is None
    assert pool_from_object({"metadata": {"deletionTimestamp": "t"}, "spec": {}}) is None


def test_pod_ready_needs_ready_condition_and_no_deletion() -> None:
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert pod_ready(ready)
    assert not pod_ready({"status": {"phase": "Running"}})
    assert not pod_ready({**ready, "metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}})


# ------------------------------------------------------------------ pool mode


async def test_epp_acc_56_two_ports_two_pods_four_endpoints(
    discovered: tuple[KubeFake, Datastore, PodDiscovery],
) -> None:
    kube, ds, _ = discovered
    add_pod(kube, "vllm-a", "10.0.0.1")
    add_pod(kube, "vllm-b", "10.0.0.2")
    add_pod(kube, "other", "10.0.0.9", labels={"app": "other"})
    add_pool(kube, ports=(8000, 8001))
    await until(lambda: len(ds) == 4 and ds.synced, "4 endpoints")
    assert names(ds) == ["vllm-a-rank-0", "vllm-a-rank-1", "vllm-b-rank-0", "vllm-b-rank-1"]
    rank1 = ds.get(f"{NS}/vllm-b-rank-1")
    assert rank1 is not None
    assert (rank1.pod_name, rank1.hostport, rank1.metrics_host) == (
        "vllm-b",
        "10.0.0.2:8001",
        "10.0.0.2:8001",
    )
    assert rank1.labels == {"app": "vllm"}


async def test_epp_acc_57_only_ready_pods_are_endpoints(
    discovered: tuple[KubeFake, Datastore, PodDiscovery],
) -> None:
    kube, ds, _ = discovered
    add_pool(kube, ports=(8000,))
    add_pod(kube, "ready", "10.0.0.1")
    add_pod(kube, "starting", "10.0.0.2", ready=False)
    add_pod(kube, "leaving", "10.0.0.3", deleting=True)
    await until(lambda: names(ds) == ["ready-rank-0"], "only the ready pod")
    set_ready(kube, "starting", True)
    await until(lambda: names(ds) == ["ready-rank-0", "starting-rank-0"], "became ready")
    set_ready(kube, "ready", False)
    await until(lambda: names(ds) == ["starting-rank-0"], "became unready")
    kube.update(api.PODS, NS, "starting", {"metadata": {"labels": {"app": "moved"}}})
    await until(lambda: names(ds) == [], "no longer matching")
    add_pod(kube, "late", "10.0.0.4")
    await until(lambda: names(ds) == ["late-rank-0"], "added")
    kube.delete(api.PODS, NS, "late")
    await until(lambda: names(ds) == [], "deleted")
    assert ds.synced


async def test_missing_pool_is_not_synced_and_deletion_clears(
    discovered: tuple[KubeFake, Datastore, PodDiscovery],
) -> None:
    kube, ds, disc = discovered
    add_pod(kube, "vllm-a", "10.0.0.1")
    await until(lambda: disc.pool_informer.synced.is_set(), "pool listed")
    assert not ds.synced and len(ds) == 0
    add_pool(kube, ports=(8000,))
    await until(lambda: ds.synced and len(ds) == 1, "pool read")
    kube.delete(api.INFERENCEPOOLS_V1, NS, "pool")
    await until(lambda: not ds.synced and len(ds) == 0, "pool gone")
    add_pool(kube, ports=(8000,))
    await until(lambda: ds.synced and len(ds) == 1, "pool back")


async def test_selector_and_port_changes_resync(
    discovered: tuple[KubeFake, Datastore, PodDiscovery],
) -> None:
    kube, ds, _ = discovered
    add_pod(kube, "a", "10.0.0.1", labels={"app": "vllm"})
    add_pod(kube, "b", "10.0.0.2", labels={"app": "sglang"})
    add_pool(kube, ports=(8000,))
    await until(lambda: names(ds) == ["a-rank-0"], "selector app=vllm")
    kube.update(
        api.INFERENCEPOOLS_V1,
        NS,
        "pool",
        {"spec": {"selector": {"matchLabels": {"app": "sglang"}}}},
    )
    await until(lambda: names(ds) == ["b-rank-0"], "selector app=sglang")
    ports = [{"number": 9000}, {"number": 9001}]
    kube.update(api.INFERENCEPOOLS_V1, NS, "pool", {"spec": {"targetPorts": ports}})
    await until(lambda: names(ds) == ["b-rank-0", "b-rank-1"], "two ports")
    endpoint = ds.get(f"{NS}/b-rank-0")
    assert endpoint is not None and endpoint.port == 9000


async def test_other_pools_and_namespaces_are_ignored(
    discovered: tuple[KubeFake, Datastore, PodDiscovery],
) -> None:
    kube, ds, disc = discovered
    add_pod(kube, "a", "10.0.0.1")
    add_pool(kube, name="elsewhere")
    add_pool(kube, ns="default")
    add_pod(kube, "b", "10.0.0.2", ns="default")
    await until(lambda: disc.pool_informer.synced.is_set(), "pool listed")
    await asyncio.sleep(0.05)  # let stray events (there should be none) arrive
    assert not ds.synced and len(ds) == 0


async def test_watches_reconnect_after_the_server_drops_them(
    discovered: tuple[KubeFake, Datastore, PodDiscovery],
) -> None:
    kube, ds, _ = discovered
    add_pool(kube, ports=(8000,))
    add_pod(kube, "a", "10.0.0.1")
    await until(lambda: names(ds) == ["a-rank-0"], "first pod")
    kube.drop_watches()
    add_pod(kube, "b", "10.0.0.2")
    kube.delete(api.PODS, NS, "a")
    await until(lambda: names(ds) == ["b-rank-0"], "changes after the reconnect")


async def test_v1alpha2_pool_group(kube: KubeFake) -> None:
    kube.create(
        api.INFERENCEPOOLS_V1ALPHA2,
        {
            "metadata": {"name": "old", "namespace": NS},
            "spec": {"selector": {"app": "vllm"}, "targetPortNumber": 8000},
        },
    )
    add_pod(kube, "a", "10.0.0.1")
    client = connect(server=kube.url)
    ds = Datastore()
    disc = PodDiscovery(client, ds, NS, pool_name="old", pool_group=GROUP_V1ALPHA2)
    task = asyncio.create_task(disc.run())
    try:
        await until(lambda: ds.synced and names(ds) == ["a-rank-0"], "v1alpha2 pool")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()


# ------------------------------------------------------------------ wired through options


async def wired(kube: KubeFake, argv: list[str], env: dict[str, str]) -> Any:
    options = load_options(
        [
            *argv,
            "--bind-address=127.0.0.1",
            "--grpc-port=0",
            "--grpc-health-port=0",
            "--metrics-port=0",
            "--secure-serving=false",
        ],
        env,
    )

    async def fetch(url: str) -> str:
        return "vllm:num_requests_waiting 0\n"

    epp = build_epp(
        options,
        load_config_text(None),
        rng=random.Random(1),
        fetch=fetch,
        kube=connect(server=kube.url),
    )
    return await start_epp(epp)


async def test_epp_acc_10_pool_namespace_from_env(kube: KubeFake) -> None:
    add_pool(kube, ns="ns1", ports=(8000,))
    add_pod(kube, "a", "10.0.0.1", ns="ns1")
    add_pool(kube, ns="default", ports=(8000,))
    add_pod(kube, "b", "10.0.0.2", ns="default")
    running = await wired(kube, ["--pool-name=pool"], {"NAMESPACE": "ns1"})
    try:
        ds = running.epp.datastore
        await until(lambda: ds.synced and len(ds) == 1, "pool in ns1")
        assert [e.namespaced_name for e in ds.snapshot_tuple()] == ["ns1/a-rank-0"]
        assert running.epp.servicer.model_rewrite is not None  # pool mode: rewrites and
        assert running.epp.servicer.objective_priority is not None  # objectives are wired
    finally:
        await running.close(grace=0)
    running = await wired(kube, ["--pool-name=pool"], {})
    try:
        ds = running.epp.datastore
        await until(lambda: ds.synced and len(ds) == 1, "pool in default")
        assert [e.namespaced_name for e in ds.snapshot_tuple()] == ["default/b-rank-0"]
    finally:
        await running.close(grace=0)


async def test_epp_acc_9_standalone_is_synced_at_once_and_finds_pods(kube: KubeFake) -> None:
    add_pod(kube, "vllm-1", "10.0.0.1", labels={"app": "vllm", "env": "prod"})
    add_pod(kube, "vllm-2", "10.0.0.2", labels={"app": "vllm", "env": "dev"})
    argv = ["--endpoint-selector=app=vllm,env=prod", "--endpoint-target-ports=8000,8001"]
    running = await wired(kube, [*argv, f"--pool-namespace={NS}"], {"POD_NAME": "epp-5d9f7c-abcde"})
    try:
        ds = running.epp.datastore
        assert running.epp.options.pool_name == "epp"
        assert running.epp.rewrites is None and running.epp.informers == []
        await until(lambda: ds.synced, "synced")
        await until(lambda: names(ds) == ["vllm-1-rank-0", "vllm-1-rank-1"], "selected pods")
    finally:
        await running.close(grace=0)


async def test_epp_acc_62_health_follows_the_pool_read(kube: KubeFake) -> None:
    add_pod(kube, "a", "10.0.0.1")
    running = await wired(kube, ["--pool-name=pool", f"--pool-namespace={NS}"], {})
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.health_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            async def readiness() -> int:
                request = health_pb2.HealthCheckRequest(service="readiness")
                return int((await stub.Check(request)).status)

            await until(lambda: running.epp.discovery.pool_informer.synced.is_set(), "listed")
            assert await readiness() == health_pb2.HealthCheckResponse.NOT_SERVING
            add_pool(kube, ports=(8000,))
            await until(lambda: running.epp.datastore.synced, "pool read")
            assert await readiness() == health_pb2.HealthCheckResponse.SERVING
            kube.delete(api.INFERENCEPOOLS_V1, NS, "pool")
            await until(lambda: not running.epp.datastore.synced, "pool gone")
            assert await readiness() == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await running.close(grace=0)


@pytest.mark.parametrize("missing", ["InferencePool", "Pod"])
async def test_unserved_resources_keep_discovery_retrying(missing: str) -> None:
    resources = tuple(
        r
        for r in api.ALL_RESOURCES
        if r.kind != missing or r.group == GROUP_V1ALPHA2  # drop the v1 pool or the pods
    )
    async with running_kube(resources=resources) as kube:
        client = connect(server=kube.url)
        ds = Datastore()
        disc = PodDiscovery(client, ds, NS, pool_name="pool", retry_delay=0.001)
        task = asyncio.create_task(disc.run())
        try:
            await asyncio.sleep(0.05)
            assert not task.done() and not ds.synced
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()
