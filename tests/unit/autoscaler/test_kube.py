"""KubeCluster / KubeActuator against the fake API server over real HTTP."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
import pytest_asyncio

from pyllmd.autoscaler.decide.api import CrossVersionObjectReference, VariantAutoscaling
from pyllmd.autoscaler.decide.model import Decision
from pyllmd.autoscaler.kube.cluster import (
    KubeActuator,
    KubeCluster,
    UnsupportedTargetError,
    WatchEvent,
    connect,
    targets_index,
)
from tests.unit.autoscaler import kubefake_api as api
from tests.unit.autoscaler.kubefake import KubeFake, running_kube

NS = "llm"
DEPLOY = CrossVersionObjectReference(apiVersion="apps/v1", kind="Deployment", name="llama-a100")


@pytest_asyncio.fixture
async def kube() -> AsyncIterator[KubeFake]:
    async with running_kube() as fake:
        fake.add_namespace(NS)
        yield fake


@pytest_asyncio.fixture
async def cluster(kube: KubeFake) -> AsyncIterator[KubeCluster]:
    c = KubeCluster(connect(server=kube.url))
    yield c
    await c.close()


# -- VariantAutoscaling listing -----------------------------------------------------------


async def test_lists_vas_of_all_namespaces_as_typed_objects(
    kube: KubeFake, cluster: KubeCluster
) -> None:
    kube.add_namespace("other")
    kube.add_va(NS, "a", model_id="m1", cost="5")
    kube.add_va("other", "b", model_id="m2", accelerator="H100")
    vas = sorted(await cluster.list_variant_autoscalings(), key=lambda v: v.metadata.name)
    assert [(v.metadata.namespace, v.metadata.name) for v in vas] == [(NS, "a"), ("other", "b")]
    assert vas[0].spec.model_id == "m1" and vas[0].spec.variant_cost == "5"
    assert vas[1].metadata.labels["inference.optimization/acceleratorName"] == "H100"
    assert vas[0].metadata.uid and vas[0].metadata.resource_version


async def test_watch_namespace_limits_the_listing(kube: KubeFake) -> None:
    kube.add_namespace("other")
    kube.add_va(NS, "a")
    kube.add_va("other", "b")
    c = KubeCluster(connect(server=kube.url), namespace="other")
    try:
        assert [v.metadata.name for v in await c.list_variant_autoscalings()] == ["b"]
    finally:
        await c.close()


async def test_controller_instance_filters_by_label_on_the_server(kube: KubeFake) -> None:
    label = "wva.llmd.ai/controller-instance"
    kube.add_va(NS, "mine", labels={label: "a"})
    kube.add_va(NS, "theirs", labels={label: "b"})
    kube.add_va(NS, "unlabelled")
    c = KubeCluster(connect(server=kube.url), controller_instance="a")
    try:
        assert [v.metadata.name for v in await c.list_variant_autoscalings()] == ["mine"]
    finally:
        await c.close()
    lists = [x for x in kube.calls if x.path.endswith("/variantautoscalings")]
    assert lists[-1].query["labelSelector"] == f"{label}=a"


async def test_vas_being_deleted_and_invalid_ones_are_skipped(
    kube: KubeFake, cluster: KubeCluster
) -> None:
    kube.add_va(NS, "live")
    kube.add_va(NS, "going")
    kube.update(
        api.VARIANT_AUTOSCALINGS,
        NS,
        "going",
        {"metadata": {"finalizers": ["x"], "deletionTimestamp": "2026-01-01T00:00:00Z"}},
    )
    kube.create(api.VARIANT_AUTOSCALINGS, {"metadata": {"name": "broken", "namespace": NS}})
    assert [v.metadata.name for v in await cluster.list_variant_autoscalings()] == ["live"]


# -- workloads ------------------------------------------------------------------------------


async def test_get_workload_reads_replicas_labels_args_env_and_gpus(
    kube: KubeFake, cluster: KubeCluster
) -> None:
    containers = [
        {
            "name": "vllm",
            "image": "vllm",
            "command": ["vllm", "serve"],
            "args": ["--model", "m", "--max-num-seqs=64"],
            "env": [
                {"name": "A", "value": "1"},
                {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ],
            "resources": {"requests": {"nvidia.com/gpu": "2", "cpu": "4"}},
        },
        {"name": "amd", "resources": {"limits": {"amd.com/gpu": 1}}},
        {"name": "intel", "resources": {"requests": {"intel.com/gpu": "1"}}},
    ]
    kube.add_deployment(NS, "llama-a100", 3, ready=2, labels={"tier": "x"}, containers=containers)
    w = await cluster.get_workload(NS, DEPLOY)
    assert w is not None
    assert (w.spec_replicas, w.status_replicas, w.ready_replicas) == (3, 3, 2)
    assert w.template_labels == {"app": "llama-a100", "tier": "x"}
    assert w.containers[0].command == ("vllm", "serve")
    assert w.containers[0].args == ("--model", "m", "--max-num-seqs=64")
    assert w.containers[0].env == {"A": "1"}
    assert [c.gpu_requests for c in w.containers] == [2, 1, 1]
    assert w.gpus_per_replica == 4


async def test_workload_without_gpus_counts_one_gpu_and_missing_one_is_none(
    kube: KubeFake, cluster: KubeCluster
) -> None:
    kube.add_deployment(NS, "llama-a100", 1)
    w = await cluster.get_workload(NS, DEPLOY)
    assert w is not None and w.gpus_per_replica == 1
    missing = CrossVersionObjectReference(kind="Deployment", name="nope")
    assert await cluster.get_workload(NS, missing) is None


async def test_status_replicas_zero_falls_back_to_spec(
    kube: KubeFake, cluster: KubeCluster
) -> None:
    kube.add_deployment(NS, "llama-a100", 2)
    kube.set_deployment_status(NS, "llama-a100", replicas=0, ready_replicas=0)
    w = await cluster.get_workload(NS, DEPLOY)
    assert w is not None and w.current_replicas == 2 and w.ready_replicas == 0


async def test_leaderworkerset_workload_counts_leader_and_workers(
    kube: KubeFake, cluster: KubeCluster
) -> None:
    gpu = {"resources": {"requests": {"nvidia.com/gpu": "8"}}}
    template = {"metadata": {"labels": {"app": "big"}}, "spec": {"containers": [gpu]}}
    kube.create(
        api.LEADERWORKERSETS,
        {
            "metadata": {"name": "big", "namespace": NS},
            "spec": {
                "replicas": 2,
                "leaderWorkerTemplate": {"size": 2, "workerTemplate": template},
            },
        },
    )
    ref = CrossVersionObjectReference(
        apiVersion="leaderworkerset.x-k8s.io/v1", kind="LeaderWorkerSet", name="big"
    )
    w = await cluster.get_workload(NS, ref)
    assert w is not None and w.spec_replicas == 2 and w.gpus_per_replica == 16
    assert w.template_labels == {"app": "big"}


# -- status ---------------------------------------------------------------------------------


async def test_status_merge_patch_round_trip(kube: KubeFake, cluster: KubeCluster) -> None:
    kube.add_va(NS, "a", model_id="m1")
    va = (await cluster.list_variant_autoscalings())[0]
    cond = {
        "type": "TargetResolved",
        "status": "True",
        "reason": "TargetFound",
        "message": "Scale target Deployment a found",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 1,
    }
    alloc = {"numReplicas": 3, "accelerator": "A100", "lastRunTime": "2026-01-01T00:00:00Z"}
    await cluster.patch_status(va, {"conditions": [cond], "desiredOptimizedAlloc": alloc})
    metrics = {"type": "MetricsAvailable", "status": "False", "reason": "MetricsMissing"}
    await cluster.patch_status(va, {"conditions": [cond, metrics]})
    again = await cluster.get_variant_autoscaling(NS, "a")
    assert again is not None
    assert again.status.desired_optimized_alloc is not None
    assert again.status.desired_optimized_alloc.num_replicas == 3
    assert [c.type for c in again.status.conditions] == ["TargetResolved", "MetricsAvailable"]
    assert again.status.conditions[0].reason == "TargetFound"
    assert again.spec.model_id == "m1"  # the status write left the spec alone
    patches = [c for c in kube.calls if c.method == "PATCH"]
    assert {c.path for c in patches} == {
        f"/apis/llmd.ai/v1alpha1/namespaces/{NS}/variantautoscalings/a/status"
    }
    assert all(c.content_type == "application/merge-patch+json" for c in patches)


async def test_status_patch_of_a_missing_va_raises_not_found(
    kube: KubeFake, cluster: KubeCluster
) -> None:
    kube.add_va(NS, "a")
    va = (await cluster.list_variant_autoscalings())[0]
    kube.delete(api.VARIANT_AUTOSCALINGS, NS, "a")
    with pytest.raises(Exception) as err:
        await cluster.patch_status(va, {"conditions": []})
    assert err.value.status.code == 404


# -- scale ----------------------------------------------------------------------------------


def deployment_path(name: str) -> str:
    return f"/apis/apps/v1/namespaces/{NS}/deployments/{name}"


async def test_wva_acc_50_scale_subresource_only(kube: KubeFake, cluster: KubeCluster) -> None:
    kube.add_deployment(NS, "llama-a100", 0)
    assert await cluster.scale(NS, DEPLOY, 1) is True
    dep = kube.get(api.DEPLOYMENTS, NS, "llama-a100")
    assert dep is not None and dep["spec"]["replicas"] == 1
    assert kube.writes_to(deployment_path("llama-a100")) == []
    writes = kube.writes_to(deployment_path("llama-a100") + "/scale")
    assert [w.method for w in writes] == ["PUT"]
    assert writes[0].body["kind"] == "Scale" and writes[0].body["spec"]["replicas"] == 1


async def test_wva_acc_49_no_write_when_at_target(kube: KubeFake, cluster: KubeCluster) -> None:
    kube.add_deployment(NS, "llama-a100", 1)
    assert await cluster.scale(NS, DEPLOY, 1) is False
    assert [c for c in kube.calls if c.method != "GET"] == []


async def test_empty_api_version_defaults_to_apps_v1(kube: KubeFake, cluster: KubeCluster) -> None:
    kube.add_deployment(NS, "llama-a100", 2)
    ref = CrossVersionObjectReference(kind="Deployment", name="llama-a100")
    assert await cluster.scale(NS, ref, 3) is True
    assert (kube.get(api.DEPLOYMENTS, NS, "llama-a100") or {})["spec"]["replicas"] == 3


async def test_scale_retries_after_a_conflicting_write(
    kube: KubeFake, cluster: KubeCluster
) -> None:
    kube.add_deployment(NS, "llama-a100", 0)
    original = kube._write
    bumped = False

    def racing_write(*args: object, **kwargs: object) -> object:
        nonlocal bumped
        if not bumped:  # someone else changes the Deployment between our GET and PUT
            bumped = True
            kube.update(api.DEPLOYMENTS, NS, "llama-a100", {"metadata": {"labels": {"x": "y"}}})
        return original(*args, **kwargs)  # type: ignore[arg-type]

    kube._write = racing_write  # type: ignore[method-assign]
    assert await cluster.scale(NS, DEPLOY, 2) is True
    puts = kube.writes_to(deployment_path("llama-a100") + "/scale")
    assert len(puts) == 2
    assert (kube.get(api.DEPLOYMENTS, NS, "llama-a100") or {})["spec"]["replicas"] == 2


async def test_leaderworkerset_scales_through_its_scale_subresource(
    kube: KubeFake, cluster: KubeCluster
) -> None:
    kube.create(
        api.LEADERWORKERSETS,
        {"metadata": {"name": "big", "namespace": NS}, "spec": {"replicas": 0}},
    )
    ref = CrossVersionObjectReference(
        apiVersion="leaderworkerset.x-k8s.io/v1", kind="LeaderWorkerSet", name="big"
    )
    assert await cluster.scale(NS, ref, 1) is True
    lws = kube.get(api.LEADERWORKERSETS, NS, "big")
    assert lws is not None and lws["spec"]["replicas"] == 1
    path = f"/apis/leaderworkerset.x-k8s.io/v1/namespaces/{NS}/leaderworkersets/big"
    assert kube.writes_to(path) == [] and len(kube.writes_to(path + "/scale")) == 1


async def test_unknown_target_kind_is_refused(cluster: KubeCluster) -> None:
    ref = CrossVersionObjectReference(apiVersion="example.com/v1", kind="Thing", name="t")
    with pytest.raises(UnsupportedTargetError):
        await cluster.scale(NS, ref, 1)


async def test_actuator_sets_each_decision_target_through_scale(
    kube: KubeFake, cluster: KubeCluster
) -> None:
    kube.add_deployment(NS, "llama-a100", 1)
    kube.add_va(NS, "va-a", target="llama-a100")
    decisions = [
        Decision("va-a", NS, "m", "A100", current_replicas=1, target_replicas=3),
        Decision("gone", NS, "m", "A100", current_replicas=1, target_replicas=5),
    ]
    await KubeActuator(cluster).apply(decisions)
    assert (kube.get(api.DEPLOYMENTS, NS, "llama-a100") or {})["spec"]["replicas"] == 3
    assert kube.writes_to(deployment_path("llama-a100")) == []


# -- pods, index, config maps, namespaces, nodes --------------------------------------------


async def test_pods_map_to_their_deployment_through_the_replicaset(
    kube: KubeFake, cluster: KubeCluster
) -> None:
    kube.add_deployment(NS, "llama-a100", 2)
    kube.add_deployment(NS, "llama-h100", 1)
    kube.add_pod(NS, "stray")  # no owner: dropped
    owners = {p.name: p.workload for p in await cluster.pods(NS)}
    pods_a = kube.pods_of(NS, "llama-a100")
    assert len(pods_a) == 2 and all(p.startswith("llama-a100-") for p in pods_a)
    assert {p: owners[p] for p in pods_a} == dict.fromkeys(pods_a, "llama-a100")
    assert owners[kube.pods_of(NS, "llama-h100")[0]] == "llama-h100"
    assert "stray" not in owners and len(owners) == 3


def _va(name: str, target: str, ns: str = NS) -> VariantAutoscaling:
    return VariantAutoscaling.model_validate(
        {
            "metadata": {"name": name, "namespace": ns},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": target}, "modelID": "m"},
        }
    )


def test_wva_acc_18_two_vas_same_target() -> None:
    index = targets_index([_va("a", "shared"), _va("b", "shared"), _va("c", "own")])
    assert index == {f"{NS}/apps/v1/Deployment/own": "c"}


def test_same_target_name_in_other_namespace_is_not_ambiguous() -> None:
    index = targets_index([_va("a", "d"), _va("b", "d", ns="other")])
    assert index == {f"{NS}/apps/v1/Deployment/d": "a", "other/apps/v1/Deployment/d": "b"}


async def test_config_map_data_or_none(kube: KubeFake, cluster: KubeCluster) -> None:
    kube.add_config_map(NS, "wva-saturation-scaling-config", {"default": "kvCacheThreshold: 0.8"})
    data = await cluster.config_map(NS, "wva-saturation-scaling-config")
    assert data == {"default": "kvCacheThreshold: 0.8"}
    assert await cluster.config_map(NS, "absent") is None


async def test_namespace_labels_and_annotations(kube: KubeFake, cluster: KubeCluster) -> None:
    kube.add_namespace(
        "x",
        labels={"wva.llmd.ai/config-enabled": "true"},
        annotations={"wva.llmd.ai/exclude": "true"},
    )
    assert (await cluster.namespace_labels("x"))["wva.llmd.ai/config-enabled"] == "true"
    assert (await cluster.namespace_annotations("x"))["wva.llmd.ai/exclude"] == "true"
    assert await cluster.namespace_annotations("missing") == {}


async def test_gpu_nodes_by_vendor_with_selector(kube: KubeFake, cluster: KubeCluster) -> None:
    kube.add_gpu_node("n1", "NVIDIA-A100-SXM4-80GB", 8, **{"wva.llmd.ai/shard": "a"})
    kube.add_gpu_node(
        "n2", "AMD-Instinct-MI300X", 4, vendor="amd.com", **{"wva.llmd.ai/shard": "b"}
    )
    kube.add_gpu_node("n3", "NVIDIA-H100", 0, **{"wva.llmd.ai/shard": "a"})  # none allocatable
    kube.add_node("cpu-only", {"wva.llmd.ai/shard": "a"}, {"cpu": "8"})
    nodes = await cluster.gpu_nodes()
    assert {(n.name, n.vendor, n.product, n.count) for n in nodes} == {
        ("n1", "nvidia.com", "NVIDIA-A100-SXM4-80GB", 8),
        ("n2", "amd.com", "AMD-Instinct-MI300X", 4),
    }
    shard_a = await cluster.gpu_nodes("wva.llmd.ai/shard=a")
    assert [n.name for n in shard_a] == ["n1"]
    assert [n.name for n in await cluster.gpu_nodes("wva.llmd.ai/shard in (b,c)")] == ["n2"]
    with pytest.raises(ValueError):
        await cluster.gpu_nodes("=broken")


# -- watch ----------------------------------------------------------------------------------


async def _next(events: AsyncIterator[WatchEvent], n: int = 1) -> list[WatchEvent]:
    return [await asyncio.wait_for(anext(events), 10) for _ in range(n)]


async def test_watch_reports_va_deployment_and_known_configmap_events(
    kube: KubeFake, cluster: KubeCluster
) -> None:
    kube.add_va(NS, "existing")
    events = cluster.watch_events()
    try:
        assert await _next(events) == [WatchEvent("VariantAutoscaling", NS, "existing", "ADDED")]
        kube.add_va(NS, "new")
        assert await _next(events) == [WatchEvent("VariantAutoscaling", NS, "new", "ADDED")]
        kube.update(api.VARIANT_AUTOSCALINGS, NS, "new", {"spec": {"modelID": "other"}})
        assert await _next(events) == [WatchEvent("VariantAutoscaling", NS, "new", "MODIFIED")]
        kube.add_config_map(NS, "unrelated", {})
        kube.add_config_map(NS, "wva-saturation-scaling-config", {})
        got = await _next(events)
        assert got == [WatchEvent("ConfigMap", NS, "wva-saturation-scaling-config", "ADDED")]
        kube.create(
            api.DEPLOYMENTS, {"metadata": {"name": "d", "namespace": NS}, "spec": {"replicas": 1}}
        )
        kube.set_deployment_status(NS, "d", replicas=1)
        kube.delete(api.DEPLOYMENTS, NS, "d")
        assert [e.event_type for e in await _next(events, 3)] == ["ADDED", "MODIFIED", "DELETED"]
    finally:
        await events.aclose()


async def test_watch_reconnects_without_replaying_or_losing_events(
    kube: KubeFake, cluster: KubeCluster
) -> None:
    events = cluster.watch_events()
    try:
        kube.add_va(NS, "one")
        assert [e.name for e in await _next(events)] == ["one"]
        kube.drop_watches()
        kube.add_va(NS, "two")  # happens while the client is reconnecting
        got = await _next(events)
        assert got == [WatchEvent("VariantAutoscaling", NS, "two", "ADDED")]
        watches = [c for c in kube.calls if c.query.get("watch") == "true"]
        assert any(c.query.get("resourceVersion") for c in watches)
    finally:
        await events.aclose()


async def test_watch_honours_the_instance_label(kube: KubeFake) -> None:
    c = KubeCluster(connect(server=kube.url), controller_instance="a")
    events = c.watch_events()
    try:
        kube.add_va(NS, "theirs", labels={"wva.llmd.ai/controller-instance": "b"})
        kube.add_va(NS, "mine", labels={"wva.llmd.ai/controller-instance": "a"})
        assert [e.name for e in await _next(events)] == ["mine"]
    finally:
        await events.aclose()
        await c.close()


# -- kubectl --------------------------------------------------------------------------------


async def test_wva_acc_04_kubectl_get_va_prints_columns(kube: KubeFake) -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is part of the machine image (see docs); install it to run this test"
    kube.add_va(NS, "llama-a100", model_id="meta-llama/Llama-3.1-8B")
    kube.update(
        api.VARIANT_AUTOSCALINGS,
        NS,
        "llama-a100",
        {
            "status": {
                "desiredOptimizedAlloc": {"numReplicas": 2, "accelerator": "A100"},
                "conditions": [{"type": "MetricsAvailable", "status": "True"}],
            }
        },
    )
    for what in ("va", "variantautoscalings", "variantautoscalings.llmd.ai"):
        proc = await asyncio.create_subprocess_exec(
            kubectl, "--server", kube.url, "-n", NS, "get", what,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        header, row = out.decode().splitlines()
        assert header.split() == ["NAME", "TARGET", "MODEL", "OPTIMIZED", "METRICSREADY", "AGE"]
        assert row.split()[:5] == [
            "llama-a100",
            "llama-a100",
            "meta-llama/Llama-3.1-8B",
            "2",
            "True",
        ]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"conditions": [{"type": "Ready", "status": "True",
                          "lastTransitionTime": "2023-11-14T22:13:20Z"}],
          "startTime": "2023-11-14T22:00:00Z"}, 1_700_000_000.0),
        ({"conditions": [{"type": "Ready", "status": "True"}],
          "startTime": "2023-11-14T22:00:00Z"}, 1_699_999_200.0),
        ({"conditions": [{"type": "Ready", "status": "False",
                          "lastTransitionTime": "2023-11-14T22:13:20Z"}]}, None),
        ({"phase": "Running"}, None),
    ],
)  # fmt: skip
async def test_pods_carry_the_time_they_became_ready(
    kube: KubeFake, cluster: KubeCluster, status: dict[str, object], expected: float | None
) -> None:
    kube.add_deployment(NS, "llama", 1)
    (name,) = kube.pods_of(NS, "llama")
    kube.update(api.PODS, NS, name, {"status": status})
    (pod,) = await cluster.pods(NS)
    assert (pod.name, pod.workload, pod.ready_since) == (name, "llama", expected)


async def test_a_ready_pod_without_times_falls_back_to_its_creation(
    kube: KubeFake, cluster: KubeCluster
) -> None:
    kube.add_deployment(NS, "llama", 1)
    (name,) = kube.pods_of(NS, "llama")
    kube.update(
        api.PODS, NS, name, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    )
    created = (kube.get(api.PODS, NS, name) or {})["metadata"]["creationTimestamp"]
    (pod,) = await cluster.pods(NS)
    assert pod.ready_since == datetime.fromisoformat(created).timestamp()
