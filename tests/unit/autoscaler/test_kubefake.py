"""The fake API server answers with the real API's shapes and status codes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio

from tests.unit.autoscaler import kubefake_api as api
from tests.unit.autoscaler.kubefake import KubeFake, running_kube

VAS = "/apis/llmd.ai/v1alpha1/namespaces/ns/variantautoscalings"
DEPS = "/apis/apps/v1/namespaces/ns/deployments"
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest_asyncio.fixture
async def kube() -> AsyncIterator[KubeFake]:
    async with running_kube(history=5) as fake:
        fake.add_namespace("ns")
        yield fake


async def call(
    kube: KubeFake, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, str, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, kube.url + path, json=body, headers=headers) as r,
    ):
        return r.status, r.headers["Content-Type"], json.loads(await r.text())


def va_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "llmd.ai/v1alpha1",
        "kind": "VariantAutoscaling",
        "metadata": {"name": name},
        "spec": {"modelID": "m", "scaleTargetRef": {"kind": "Deployment", "name": name}},
        "status": {"desiredOptimizedAlloc": {"numReplicas": 9}},
    }


async def test_create_is_201_and_a_second_create_409(kube: KubeFake) -> None:
    code, ctype, obj = await call(kube, "POST", VAS, va_body("a"))
    assert (code, ctype) == (201, "application/json")
    assert obj["metadata"]["uid"] and obj["metadata"]["resourceVersion"]
    assert obj["metadata"]["namespace"] == "ns" and "status" not in obj  # status is ignored
    code, _, status = await call(kube, "POST", VAS, va_body("a"))
    assert code == 409 and status["kind"] == "Status" and status["reason"] == "AlreadyExists"


async def test_missing_object_is_a_404_status(kube: KubeFake) -> None:
    code, ctype, status = await call(kube, "GET", DEPS + "/nope")
    assert (code, ctype) == (404, "application/json")
    assert (
        status["reason"] == "NotFound" and status["message"] == 'deployments.apps "nope" not found'
    )
    assert status["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}


async def test_put_with_stale_resource_version_conflicts(kube: KubeFake) -> None:
    _, _, obj = await call(kube, "POST", VAS, va_body("a"))
    kube.update(api.VARIANT_AUTOSCALINGS, "ns", "a", {"metadata": {"labels": {"x": "1"}}})
    obj["spec"]["modelID"] = "other"
    code, _, status = await call(kube, "PUT", f"{VAS}/a", obj)
    assert code == 409 and status["reason"] == "Conflict"


async def test_main_path_ignores_status_and_status_path_ignores_spec(kube: KubeFake) -> None:
    await call(kube, "POST", VAS, va_body("a"))
    patch = {"spec": {"modelID": "m2"}, "status": {"desiredOptimizedAlloc": {"numReplicas": 1}}}
    _, _, obj = await call(kube, "PATCH", f"{VAS}/a", patch, MERGE)
    assert obj["spec"]["modelID"] == "m2" and "status" not in obj
    assert obj["metadata"]["generation"] == 2
    _, _, obj = await call(kube, "PATCH", f"{VAS}/a/status", patch, MERGE)
    assert obj["spec"]["modelID"] == "m2" and obj["status"]["desiredOptimizedAlloc"]["numReplicas"]
    assert obj["metadata"]["generation"] == 2  # status writes do not bump the generation


async def test_merge_null_deletes_and_json_patch_applies(kube: KubeFake) -> None:
    kube.add_deployment("ns", "d", 1, labels={"a": "1"})
    _, _, obj = await call(kube, "PATCH", f"{DEPS}/d", {"metadata": {"labels": {"a": None}}}, MERGE)
    assert "a" not in obj["metadata"]["labels"]
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 4}]
    headers = {"Content-Type": "application/json-patch+json"}
    _, _, obj = await call(kube, "PATCH", f"{DEPS}/d", ops, headers)
    assert obj["spec"]["replicas"] == 4


async def test_scale_subresource_shape(kube: KubeFake) -> None:
    kube.add_deployment("ns", "d", 2)
    code, _, scale = await call(kube, "GET", f"{DEPS}/d/scale")
    assert code == 200 and scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2}
    assert scale["status"] == {"replicas": 2, "selector": "app=d"}
    code, _, scale = await call(kube, "PATCH", f"{DEPS}/d/scale", {"spec": {"replicas": 5}}, MERGE)
    assert code == 200 and scale["spec"]["replicas"] == 5
    assert (kube.get(api.DEPLOYMENTS, "ns", "d") or {})["spec"]["replicas"] == 5


async def test_list_selectors(kube: KubeFake) -> None:
    kube.add_deployment("ns", "a", 1, labels={"tier": "x"})
    kube.add_deployment("ns", "b", 1, labels={"tier": "y"})
    for query, names in [
        ("labelSelector=tier%3Dx", ["a"]),
        ("labelSelector=tier+in+(x,y)", ["a", "b"]),
        ("labelSelector=tier!%3Dx", ["b"]),
        ("labelSelector=!tier", []),
        ("fieldSelector=metadata.name%3Db", ["b"]),
    ]:
        _, _, listing = await call(kube, "GET", f"{DEPS}?{query}")
        assert [i["metadata"]["name"] for i in listing["items"]] == names, query
        assert listing["kind"] == "DeploymentList" and listing["metadata"]["resourceVersion"]


async def test_watch_from_an_expired_resource_version_is_410(kube: KubeFake) -> None:
    for i in range(8):  # history holds 5 events
        kube.add_config_map("ns", f"c{i}", {})
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{kube.url}/api/v1/namespaces/ns/configmaps?watch=true&resourceVersion=1") as r,
    ):
        event = json.loads(await r.content.readline())
    assert event["type"] == "ERROR" and event["object"]["code"] == 410


async def test_watch_resumes_after_a_resource_version(kube: KubeFake) -> None:
    first = kube.add_config_map("ns", "c1", {})
    kube.add_config_map("ns", "c2", {})
    rv = first["metadata"]["resourceVersion"]
    url = f"{kube.url}/api/v1/namespaces/ns/configmaps?watch=true&resourceVersion={rv}"
    async with aiohttp.ClientSession() as s, s.get(url + "&timeoutSeconds=1") as r:
        lines = [json.loads(line) for line in (await r.text()).splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("ADDED", "c2")]


async def test_table_output_has_the_va_printer_columns(kube: KubeFake) -> None:
    kube.add_va("ns", "a", model_id="m")
    headers = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    _, _, table = await call(kube, "GET", VAS, headers=headers)
    assert table["kind"] == "Table"
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names == ["Name", "Target", "Model", "Optimized", "MetricsReady", "Age"]
    assert table["rows"][0]["cells"][:5] == ["a", "a", "m", None, None]
