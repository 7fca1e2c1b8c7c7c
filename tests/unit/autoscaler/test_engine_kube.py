"""The saturation engine and controller on Kubernetes: the fake API server and a fake Prometheus.

Real `SaturationEngine` + `KubeCluster` + `PrometheusMetricsSource` +
`ControllerMetrics` + `StatusBook`, talking HTTP to `kubefake` and `promfake`;
the tests read what a user reads: the VA objects on the API server, the
`wva_*` exposition, and the API server's write log.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from pyllmd.autoscaler.collect.prometheus import (
    PrometheusClient,
    PrometheusMetricsSource,
    PrometheusOptions,
)
from pyllmd.autoscaler.decide.analyze.capacity_store import RECORD_TTL_SECONDS
from pyllmd.autoscaler.decide.api import InvalidObject, validate_variant_autoscaling
from pyllmd.autoscaler.decide.cycle import EngineSettings
from pyllmd.autoscaler.decide.status import StatusBook
from pyllmd.autoscaler.kube.cluster import KubeCluster, WatchEvent, connect
from pyllmd.autoscaler.loops.controller import Controller
from pyllmd.autoscaler.loops.metrics import ControllerMetrics
from pyllmd.autoscaler.loops.saturation import SaturationEngine
from pyllmd.core import plugins
from pyllmd.core.clock import VirtualClock
from pyllmd.core.promtext import parse_samples
from tests.unit.autoscaler import kubefake_api as api
from tests.unit.autoscaler.kubefake import KubeFake
from tests.unit.autoscaler.kubefake_api import ApiStatusError
from tests.unit.autoscaler.promfake import EVAL_TIME, FakePrometheus, Reply, api_error, vector
from tests.unit.autoscaler.promfake import serve_prometheus as serve_prom

NS = "llm"
SYSTEM = "workload-variant-autoscaler-system"
MODEL = "meta-llama/Llama-3.1-8B"
SAT = "wva-saturation-scaling-config"
STAMP = "2023-11-14T22:13:20Z"  # EVAL_TIME as metav1.Time


def saturation(kv_spare: float = 0.1) -> dict[str, str]:
    body = f"kvCacheThreshold: 0.80\nqueueLengthThreshold: 5\nkvSpareTrigger: {kv_spare}\n"
    return {"default": body + "queueSpareTrigger: 3\n"}


@dataclass
class Prom:
    """What the fake Prometheus knows: per pod (namespace, KV usage, queue length)."""

    pods: dict[str, tuple[str, float, float]] = field(default_factory=dict)
    kv_error: str = ""
    request_count: float | None = None  # upstream's model_request_count (None: no series)
    recent_success: bool = False  # pyllmd's model_recent_success has an answer

    def answer(self, promql: str) -> Reply:
        found = re.search(r'namespace="([^"]*)"', promql)
        ns = found.group(1) if found else ""
        if promql.startswith("sum(increase(vllm:request_success_total"):
            return vector() if self.request_count is None else vector(({}, self.request_count))
        if promql.startswith("sum((max_over_time(vllm:request_success_total"):
            return vector(({}, 3.0)) if self.recent_success else vector()
        if promql.startswith("max by (pod) (max_over_time(vllm:kv_cache_usage_perc"):
            if self.kv_error:
                return api_error(422, "execution", self.kv_error)
            return vector(*(({"pod": p}, kv) for p, (n, kv, _) in self.pods.items() if n == ns))
        if promql.startswith("max by (pod) (max_over_time(vllm:num_requests_waiting"):
            return vector(*(({"pod": p}, q) for p, (n, _, q) in self.pods.items() if n == ns))
        return vector()  # every other query: no series

    def serve(
        self, kube: KubeFake, namespace: str, deployment: str, kv: float, q: float = 0
    ) -> None:
        for pod in kube.pods_of(namespace, deployment):
            self.pods[pod] = (namespace, kv, q)


class Rig:
    """One controller's engine over the fakes."""

    def __init__(
        self, kube: KubeFake, prom: FakePrometheus, state: Prom, instance: str = "", **kw: Any
    ) -> None:
        self.kube, self.state = kube, state
        self.clock = VirtualClock(wall_start=EVAL_TIME)
        self.cluster = KubeCluster(
            connect(server=kube.url), controller_instance=instance, system_namespace=SYSTEM
        )
        self.client = PrometheusClient(
            PrometheusOptions(base_url=prom.url, retry_steps=1), clock=self.clock
        )
        self.metrics = ControllerMetrics(instance)
        settings = EngineSettings(system_namespace=SYSTEM, controller_instance=instance, **kw)
        self.engine = SaturationEngine(
            self.cluster,
            PrometheusMetricsSource(self.client),
            self.metrics,
            StatusBook(),
            self.clock,
            settings,
        )

    async def close(self) -> None:
        await self.client.close()
        await self.cluster.close()

    def va(self, name: str, ns: str = NS) -> dict[str, Any]:
        obj = self.kube.get(api.VARIANT_AUTOSCALINGS, ns, name)
        assert obj is not None
        return obj

    def condition(self, name: str, type_: str, ns: str = NS) -> dict[str, Any] | None:
        conditions = (self.va(name, ns).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), None)

    def reason(self, name: str, type_: str, ns: str = NS) -> tuple[str, str] | None:
        c = self.condition(name, type_, ns)
        return None if c is None else (c["status"], c["reason"])

    def alloc(self, name: str, ns: str = NS) -> dict[str, Any] | None:
        return (self.va(name, ns).get("status") or {}).get("desiredOptimizedAlloc")

    def gauges(self, metric: str = "wva_desired_replicas") -> dict[tuple[str, str], float]:
        """(namespace, variant) → value of one `wva_*` family."""
        samples = parse_samples(self.metrics.render().decode())
        return {
            (s.labels["namespace"], s.labels["variant_name"]): s.value
            for s in samples
            if s.name == metric
        }

    def writes(self, fragment: str) -> list[api.ApiCall]:
        return [c for c in self.kube.calls if fragment in c.path and c.method != "GET"]


@pytest_asyncio.fixture
async def state() -> Prom:
    return Prom()


@pytest_asyncio.fixture
async def prom(state: Prom) -> AsyncIterator[FakePrometheus]:
    async with serve_prom(state.answer) as fake:
        yield fake


@pytest_asyncio.fixture
async def rig(kube: KubeFake, prom: FakePrometheus, state: Prom) -> AsyncIterator[Rig]:
    kube.add_namespace(NS)
    kube.add_namespace(SYSTEM)
    kube.add_config_map(SYSTEM, SAT, saturation())
    r = Rig(kube, prom, state)
    yield r
    await r.close()


def add_variant(rig: Rig, name: str, kv: float | None, ns: str = NS, **va: Any) -> None:
    """A Deployment at 1 replica, its VA, and (unless `kv` is None) metrics for its pod."""
    rig.kube.add_deployment(ns, name, 1)
    rig.kube.add_va(ns, name, model_id=MODEL, **va)
    if kv is not None:
        rig.state.serve(rig.kube, ns, name, kv)


# -- multi-controller isolation -------------------------------------------------------------


async def test_wva_acc_12_controller_instance_filters_vas_and_labels_gauges(
    kube: KubeFake, prom: FakePrometheus, state: Prom
) -> None:
    kube.add_namespace(NS)
    kube.add_config_map(SYSTEM, SAT, saturation())
    label = "wva.llmd.ai/controller-instance"
    r = Rig(kube, prom, state, instance="a")
    try:
        add_variant(r, "mine", 0.75, labels={label: "a"})
        add_variant(r, "theirs", 0.75, labels={label: "b"})
        add_variant(r, "plain", 0.75)
        await r.engine.cycle()
        assert r.reason("mine", "MetricsAvailable") == ("True", "MetricsFound")
        assert "status" not in r.va("theirs") and "status" not in r.va("plain")
        text = r.metrics.render().decode()
        assert 'wva_desired_replicas{accelerator_type="A100",controller_instance="a",' in text
        assert set(r.gauges()) == {(NS, "mine")}
    finally:
        await r.close()


# -- targets ---------------------------------------------------------------------------------


async def test_wva_acc_13_missing_target_is_reported_within_one_cycle(rig: Rig) -> None:
    rig.kube.add_va(NS, "llama", model_id=MODEL)
    await rig.engine.cycle()
    cond = rig.condition("llama", "TargetResolved")
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("False", "TargetNotFound")
    assert cond["message"] == "Scale target Deployment llama not found"
    assert cond["observedGeneration"] == 1 and cond["lastTransitionTime"] == STAMP


async def test_wva_acc_14_target_created_later_is_found_without_touching_the_va(
    rig: Rig,
) -> None:
    rig.kube.add_va(NS, "llama", model_id=MODEL)
    await rig.engine.cycle()
    spec_before = rig.va("llama")["spec"]
    rig.kube.add_deployment(NS, "llama", 1)
    await rig.engine.cycle()
    cond = rig.condition("llama", "TargetResolved")
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("True", "TargetFound")
    assert cond["message"] == "Scale target Deployment llama found"
    va_path = f"/apis/llmd.ai/v1alpha1/namespaces/{NS}/variantautoscalings/llama"
    assert rig.kube.writes_to(va_path) == []  # only /status was written
    assert rig.va("llama")["spec"] == spec_before
    assert rig.va("llama")["metadata"]["generation"] == 1


# -- metrics and decisions -------------------------------------------------------------------


async def test_wva_acc_15_no_metrics_means_metrics_missing_and_no_gauge(rig: Rig) -> None:
    add_variant(rig, "llama", None)
    await rig.engine.cycle()
    cond = rig.condition("llama", "MetricsAvailable")
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "MetricsMissing")
    assert cond["message"] == (
        "No saturation metrics available - pods may not be ready or metrics not yet scraped"
    )
    assert rig.gauges() == {} and rig.alloc("llama") is None
    assert rig.reason("llama", "TargetResolved") == ("True", "TargetFound")


async def test_wva_acc_16_no_accelerator_label_gets_no_allocation(rig: Rig) -> None:
    add_variant(rig, "llama", 0.75, accelerator=None)
    await rig.engine.cycle()
    await rig.engine.cycle()
    assert rig.alloc("llama") is None
    assert rig.reason("llama", "MetricsAvailable") == ("False", "MetricsMissing")
    assert rig.gauges() == {}


async def test_wva_acc_17_decision_is_persisted_with_conditions(rig: Rig) -> None:
    add_variant(rig, "llama", 0.75)  # spare KV 0.05 < 0.10 → scale up
    await rig.engine.cycle()
    status = rig.va("llama")["status"]
    assert status["desiredOptimizedAlloc"] == {
        "numReplicas": 2,
        "accelerator": "A100",
        "lastRunTime": STAMP,
    }
    assert status["actuation"] == {"applied": True}  # persisted, unlike upstream
    metrics = rig.condition("llama", "MetricsAvailable")
    assert metrics is not None and (metrics["status"], metrics["reason"]) == (
        "True",
        "MetricsFound",
    )
    assert metrics["message"] == "Saturation metrics data is available for scaling decisions"
    ready = rig.condition("llama", "OptimizationReady")
    assert ready is not None and (ready["status"], ready["reason"]) == (
        "True",
        "SaturationOnlyMode",
    )
    assert ready["message"].startswith("saturation-only decision: ")
    assert ready["message"].endswith("(target: 2 replicas)")
    assert rig.gauges() == {(NS, "llama"): 2.0}
    assert rig.gauges("wva_current_replicas") == {(NS, "llama"): 1.0}
    validate_variant_autoscaling(rig.va("llama"))  # what we wrote passes the CRD schema


async def test_wva_acc_18_shared_target_gets_no_metric_based_decision(rig: Rig) -> None:
    rig.kube.add_deployment(NS, "shared", 1)
    rig.kube.add_va(NS, "a", target="shared", model_id=MODEL)
    rig.kube.add_va(NS, "b", target="shared", model_id=MODEL)
    rig.state.serve(rig.kube, NS, "shared", 0.75)
    add_variant(rig, "own", 0.75)  # same model group, its own Deployment
    await rig.engine.cycle()
    for name in ("a", "b"):
        assert rig.alloc(name) is None
        assert rig.reason(name, "MetricsAvailable") == ("False", "MetricsMissing")
    assert rig.alloc("own") is not None and rig.alloc("own")["numReplicas"] == 2  # type: ignore[index]
    assert set(rig.gauges()) == {(NS, "own")}


async def test_wva_acc_54_the_saturation_engine_never_writes_replicas(rig: Rig) -> None:
    add_variant(rig, "up", 0.75)
    rig.kube.add_deployment(NS, "down", 3)
    rig.kube.add_va(NS, "down", model_id="other")
    for pod in rig.kube.pods_of(NS, "down"):
        rig.state.pods[pod] = (NS, 0.05, 0)
    for _ in range(3):
        await rig.engine.cycle()
    assert rig.alloc("up") is not None and rig.alloc("down") is not None
    assert rig.writes("/deployments") == [] and rig.writes("/replicasets") == []
    assert rig.writes("/leaderworkersets") == [] and rig.writes("/statefulsets") == []
    assert {(c.method, c.path.rsplit("/", 1)[-1]) for c in rig.kube.calls if c.method != "GET"} == {
        ("PATCH", "status")
    }


async def test_wva_acc_55_prometheus_error_keeps_previous_desired(rig: Rig) -> None:
    add_variant(rig, "llama", 0.75)
    await rig.engine.cycle()
    assert rig.gauges() == {(NS, "llama"): 2.0}
    rig.state.kv_error = "query timed out in expression evaluation"
    await rig.engine.cycle()
    assert rig.gauges() == {(NS, "llama"): 2.0}
    assert rig.gauges("wva_current_replicas") == {(NS, "llama"): 1.0}
    cond = rig.condition("llama", "MetricsAvailable")
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "PrometheusError")
    assert "kv_cache_usage query failed" in cond["message"]
    assert "query timed out" in cond["message"]
    assert rig.alloc("llama") is not None and rig.alloc("llama")["numReplicas"] == 2  # type: ignore[index]


async def test_deleted_va_loses_its_series(rig: Rig) -> None:
    add_variant(rig, "stay", 0.75)
    add_variant(rig, "go", 0.75)
    await rig.engine.cycle()
    assert set(rig.gauges()) == {(NS, "stay"), (NS, "go")}
    rig.kube.delete(api.VARIANT_AUTOSCALINGS, NS, "go")
    await rig.engine.cycle()
    for family in ("wva_desired_replicas", "wva_current_replicas", "wva_desired_ratio"):
        assert set(rig.gauges(family)) == {(NS, "stay")}
    assert 'variant_name="go"' not in rig.metrics.render().decode()


# -- configuration ---------------------------------------------------------------------------


async def test_wva_acc_09_saturation_configmap_update_applies_next_cycle(rig: Rig) -> None:
    add_variant(rig, "llama", 0.5)  # spare KV 0.80 − 0.50 = 0.30
    await rig.engine.cycle()
    assert rig.alloc("llama")["numReplicas"] == 1  # type: ignore[index]
    rig.kube.update(api.CONFIGMAPS, SYSTEM, SAT, {"data": saturation(0.29)})
    await rig.engine.cycle()
    assert rig.alloc("llama")["numReplicas"] == 1  # type: ignore[index]  # 0.30 ≥ 0.29
    rig.kube.update(api.CONFIGMAPS, SYSTEM, SAT, {"data": saturation(0.31)})
    await rig.engine.cycle()
    assert rig.alloc("llama")["numReplicas"] == 2  # type: ignore[index]  # 0.30 < 0.31


async def test_wva_acc_10_namespace_local_configmap_overrides_for_its_namespace_only(
    rig: Rig,
) -> None:
    rig.kube.update(api.CONFIGMAPS, SYSTEM, SAT, {"data": saturation(0.4)})
    for ns in ("team-a", "team-b"):
        rig.kube.add_namespace(ns)
        add_variant(rig, "llama", 0.5, ns=ns)
    rig.kube.add_config_map("team-a", SAT, saturation(0.1))
    await rig.engine.cycle()
    assert rig.alloc("llama", "team-a")["numReplicas"] == 1  # type: ignore[index]  # local 0.1
    assert rig.alloc("llama", "team-b")["numReplicas"] == 2  # type: ignore[index]  # global 0.4
    rig.kube.delete(api.CONFIGMAPS, "team-a", SAT)
    await rig.engine.cycle()
    assert rig.alloc("llama", "team-a")["numReplicas"] == 2  # type: ignore[index]


async def test_wva_acc_11_excluded_namespace_is_ignored(rig: Rig) -> None:
    annotation = {"wva.llmd.ai/exclude": "true"}
    rig.kube.add_namespace("quiet", annotations=annotation)
    rig.kube.add_config_map("quiet", SAT, saturation(0.4))
    rig.kube.add_config_map(NS, SAT, saturation(0.4))
    add_variant(rig, "llama", 0.5, ns="quiet")
    add_variant(rig, "llama", 0.5)
    configs = await rig.engine.read_configs({"quiet", NS})
    assert set(configs.saturation_local) == {NS}
    await rig.engine.cycle()
    assert "status" not in rig.va("llama", "quiet")  # deviation: engines skip it too
    assert set(rig.gauges()) == {(NS, "llama")}


async def test_the_watch_namespace_is_never_excluded(
    kube: KubeFake, prom: FakePrometheus, state: Prom
) -> None:
    kube.add_namespace("quiet", annotations={"wva.llmd.ai/exclude": "true"})
    kube.add_config_map(SYSTEM, SAT, saturation(0.1))
    kube.add_config_map("quiet", SAT, saturation(0.4))
    r = Rig(kube, prom, state, watch_namespace="quiet")
    try:
        add_variant(r, "llama", 0.5, ns="quiet")
        assert set((await r.engine.read_configs({"quiet"})).saturation_local) == {"quiet"}
        await r.engine.cycle()
        assert r.alloc("llama", "quiet")["numReplicas"] == 2  # type: ignore[index]
    finally:
        await r.close()


async def test_deleted_global_configmap_keeps_its_last_values(rig: Rig) -> None:
    rig.kube.update(api.CONFIGMAPS, SYSTEM, SAT, {"data": saturation(0.31)})
    add_variant(rig, "llama", 0.2)
    await rig.engine.cycle()
    assert rig.alloc("llama")["numReplicas"] == 1  # type: ignore[index]
    rig.kube.delete(api.CONFIGMAPS, SYSTEM, SAT)
    rig.state.serve(rig.kube, NS, "llama", 0.5)
    await rig.engine.cycle()
    assert rig.alloc("llama")["numReplicas"] == 2  # type: ignore[index]  # 0.31 still in effect


# -- invalid objects -------------------------------------------------------------------------


def _invalid_message(obj: dict[str, Any]) -> str:
    with pytest.raises(InvalidObject) as err:
        validate_variant_autoscaling(obj)
    return err.value.message


@pytest.mark.parametrize(
    "spec",
    [
        {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "modelID": ""},
        {
            "scaleTargetRef": {"kind": "Deployment", "name": "x"},
            "modelID": "m",
            "variantCost": "abc",
        },
        {"modelID": "m"},
    ],
    ids=["empty-model", "bad-cost", "no-target"],
)
async def test_invalid_va_gets_invalid_configuration_and_others_go_on(
    rig: Rig, spec: dict[str, Any]
) -> None:
    body = {"metadata": {"name": "broken", "namespace": NS}, "spec": spec}
    rig.kube.create(api.VARIANT_AUTOSCALINGS, body)
    add_variant(rig, "llama", 0.75)
    await rig.engine.cycle()
    cond = rig.condition("broken", "OptimizationReady")
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("False", "InvalidConfiguration")
    assert cond["message"] == _invalid_message(rig.va("broken"))
    assert cond["message"].startswith('VariantAutoscaling.llmd.ai "broken" is invalid: spec.')
    assert rig.alloc("llama") is not None and set(rig.gauges()) == {(NS, "llama")}
    writes = len(rig.writes("/broken/status"))
    await rig.engine.cycle()
    assert len(rig.writes("/broken/status")) == writes == 1  # unchanged: not rewritten
    assert [v.metadata.name for v in await rig.cluster.list_variant_autoscalings()] == ["llama"]


async def test_invalid_va_that_cannot_be_patched_does_not_stop_the_cycle(rig: Rig) -> None:
    spec = {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "modelID": ""}
    rig.kube.create(api.VARIANT_AUTOSCALINGS, {"metadata": {"name": "broken"}, "spec": spec})
    original = rig.kube._write

    def refuse(r: Any, *args: Any) -> Any:
        if r.name == "broken":
            raise ApiStatusError(422, "Invalid", "spec.modelID: Invalid value")
        return original(r, *args)

    rig.kube._write = refuse  # type: ignore[method-assign]
    add_variant(rig, "llama", 0.75)
    await rig.engine.cycle()
    assert rig.alloc("llama") is not None
    assert "status" not in rig.va("broken", "default")
    assert [c.method for c in rig.kube.calls if c.path.endswith("/broken/status")] == ["PATCH"]


async def test_malformed_status_is_dropped_not_fatal(rig: Rig) -> None:
    add_variant(rig, "llama", 0.75)
    rig.kube.update(api.VARIANT_AUTOSCALINGS, NS, "llama", {"status": {"conditions": "not a list"}})
    await rig.engine.cycle()
    assert rig.reason("llama", "MetricsAvailable") == ("True", "MetricsFound")


# -- event-driven reconcile ------------------------------------------------------------------


async def _until(check: Any, what: str, rounds: int = 500) -> None:
    for _ in range(rounds):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_watch_events_resolve_targets_between_cycles(rig: Rig) -> None:
    controller = Controller(rig.engine, rig.metrics, rig.clock, interval=3600.0, events=rig.cluster)
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    try:
        await _until(lambda: controller.cycles == 1, "first cycle")
        rig.kube.add_deployment(NS, "other", 1)
        rig.kube.add_va(NS, "new", model_id=MODEL)
        await _until(lambda: rig.condition("new", "TargetResolved") is not None, "VA created")
        assert rig.reason("new", "TargetResolved") == ("False", "TargetNotFound")
        rig.kube.add_deployment(NS, "new", 1)
        await _until(
            lambda: rig.reason("new", "TargetResolved") == ("True", "TargetFound"), "Deployment"
        )
        rig.kube.delete(api.DEPLOYMENTS, NS, "new")
        await _until(
            lambda: rig.reason("new", "TargetResolved") == ("False", "TargetNotFound"), "deleted"
        )
        spec = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "other"}}
        rig.kube.update(api.VARIANT_AUTOSCALINGS, NS, "new", {"spec": spec})
        await _until(
            lambda: rig.reason("new", "TargetResolved") == ("True", "TargetFound"), "VA spec edit"
        )
        cond = rig.condition("new", "TargetResolved")
        assert cond is not None and cond["message"] == "Scale target Deployment other found"
        assert cond["observedGeneration"] == 2
        assert controller.cycles == 1  # all of it without a saturation cycle
    finally:
        stop.set()
        await task


async def test_status_only_changes_trigger_no_pass(rig: Rig) -> None:
    controller = Controller(rig.engine, rig.metrics, rig.clock, interval=3600.0)
    rig.kube.add_va(NS, "llama", model_id=MODEL)
    event = WatchEvent("VariantAutoscaling", NS, "llama", "ADDED", generation=1)
    assert await controller.handle_event(event) is True
    patches = len(rig.writes("/llama/status"))
    assert patches == 1
    same = WatchEvent("VariantAutoscaling", NS, "llama", "MODIFIED", generation=1)
    assert await controller.handle_event(same) is False
    edited = WatchEvent("VariantAutoscaling", NS, "llama", "MODIFIED", generation=2)
    assert await controller.handle_event(edited) is True
    assert len(rig.writes("/llama/status")) == patches  # condition unchanged: no write
    gone = WatchEvent("VariantAutoscaling", NS, "llama", "DELETED", generation=2)
    assert await controller.handle_event(gone) is False
    cm = WatchEvent("ConfigMap", SYSTEM, SAT, "MODIFIED")
    assert await controller.handle_event(cm) is False


async def test_excluded_namespace_va_events_trigger_no_write(rig: Rig) -> None:
    rig.kube.add_namespace("quiet", annotations={"wva.llmd.ai/exclude": "true"})
    rig.kube.add_va("quiet", "llama", model_id=MODEL)
    assert await rig.engine.resolve_targets("quiet", va_name="llama") == []
    assert "status" not in rig.va("llama", "quiet")


async def test_invalid_va_event_reports_invalid_configuration(rig: Rig) -> None:
    spec = {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "modelID": ""}
    rig.kube.create(
        api.VARIANT_AUTOSCALINGS, {"metadata": {"name": "b", "namespace": NS}, "spec": spec}
    )
    await rig.engine.resolve_targets(NS, va_name="b")
    assert rig.reason("b", "OptimizationReady") == ("False", "InvalidConfiguration")


# -- GPU limiter in the cycle -----------------------------------------------------------------


@pytest.mark.parametrize("free_gpus,expected", [(0, 1), (1, 2)])
async def test_limiter_caps_v1_scale_up_by_free_gpus(
    rig: Rig, free_gpus: int, expected: int
) -> None:
    body = saturation()["default"] + "enableLimiter: true\n"
    rig.kube.update(api.CONFIGMAPS, SYSTEM, SAT, {"data": {"default": body}})
    # the variant's one replica uses one A100; `free_gpus` more are on the node
    rig.kube.add_gpu_node("node-1", "NVIDIA-A100-SXM4-80GB", 1 + free_gpus)
    add_variant(rig, "llama", 0.75)  # spare KV 0.05 < 0.10 → wants +1 replica
    await rig.engine.cycle()
    assert rig.gauges() == {(NS, "llama"): float(expected)}


async def test_limited_mode_logs_the_gpu_inventory(
    kube: KubeFake, prom: FakePrometheus, state: Prom, caplog: pytest.LogCaptureFixture
) -> None:
    kube.add_namespace(SYSTEM)
    kube.add_gpu_node("node-1", "NVIDIA-H100-80GB-HBM3", 8)
    rig = Rig(kube, prom, state, limited_mode=True)
    with caplog.at_level("INFO", logger="pyllmd.autoscaler.loops.saturation"):
        await rig.engine.cycle()
    await rig.close()
    assert "limited mode: GPU inventory {'H100': 8}" in caplog.text


async def test_v2_capacity_of_a_deleted_variant_expires_after_its_lifetime(rig: Rig) -> None:
    body = saturation()["default"] + "analyzerName: saturation\n"
    rig.kube.update(api.CONFIGMAPS, SYSTEM, SAT, {"data": {"default": body}})
    add_variant(rig, "stay", 0.5)
    add_variant(rig, "gone", 0.5)
    await rig.engine.cycle()
    store = rig.engine.v2_state
    assert store.record(NS, MODEL, "gone") is not None
    learned = store.record(NS, MODEL, "gone").learned_at  # type: ignore[union-attr]
    assert learned == rig.clock.wall()  # stamped with the cycle's wall time, not 0
    rig.kube.delete(api.VARIANT_AUTOSCALINGS, NS, "gone")
    rig.kube.delete(api.DEPLOYMENTS, NS, "gone")
    await rig.clock.advance(RECORD_TTL_SECONDS - 60)
    await rig.engine.cycle()
    assert store.record(NS, MODEL, "gone") is not None  # not yet older than its lifetime
    await rig.clock.advance(120)
    await rig.engine.cycle()
    assert store.record(NS, MODEL, "gone") is None  # dropped by the cycle
    stay = store.record(NS, MODEL, "stay")  # refreshed every cycle, kept
    assert stay is not None and stay.learned_at == rig.clock.wall()


# -- scale to zero ---------------------------------------------------------------------------

S2Z = "wva-model-scale-to-zero-config"


def ready_at(rig: Rig, name: str, when: float) -> None:
    """Mark the pods of Deployment `name` Ready since `when` (wall seconds)."""
    stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {"type": "Ready", "status": "True", "lastTransitionTime": stamp}
    for pod in rig.kube.pods_of(NS, name):
        rig.kube.update(api.PODS, NS, pod, {"status": {"conditions": [condition]}})


@pytest_asyncio.fixture
async def idle_rig(rig: Rig) -> Rig:
    """Scale to zero on (retention 2m); one variant whose model saw no request in Prometheus."""
    body = "enable_scale_to_zero: true\nretention_period: 2m\n"
    rig.kube.add_config_map(SYSTEM, S2Z, {"default": body})
    add_variant(rig, "llama", 0.2)
    rig.state.request_count = 0.0
    return rig


async def test_a_woken_variant_is_not_zeroed_before_its_pod_is_a_retention_period_old(
    idle_rig: Rig, kube: KubeFake, prom: FakePrometheus, state: Prom
) -> None:
    rig = idle_rig
    ready_at(rig, "llama", rig.clock.wall() - 30)  # woken 30 s ago; Prometheus counted nothing
    await rig.engine.cycle()
    assert rig.gauges() == {(NS, "llama"): 1.0}
    # a restarted controller (or a new leader) reads the same pods and still keeps it
    restarted = Rig(kube, prom, state)
    try:
        await restarted.clock.advance(89)  # the pod is 119 s old
        await restarted.engine.cycle()
        assert restarted.gauges() == {(NS, "llama"): 1.0}
        await restarted.clock.advance(1)  # 120 s: the retention period has passed
        await restarted.engine.cycle()
        assert restarted.gauges() == {(NS, "llama"): 0.0}
    finally:
        await restarted.close()


async def test_a_success_first_seen_within_the_window_keeps_the_model(idle_rig: Rig) -> None:
    rig = idle_rig
    ready_at(rig, "llama", rig.clock.wall() - 3600)
    rig.state.recent_success = True  # e.g. a counter born at 20 in its first scrape
    await rig.engine.cycle()
    assert rig.gauges() == {(NS, "llama"): 1.0}
    rig.state.recent_success = False
    await rig.engine.cycle()
    assert rig.gauges() == {(NS, "llama"): 0.0}


async def test_guards_are_asked_only_when_upstream_would_zero(
    idle_rig: Rig, prom: FakePrometheus
) -> None:
    rig = idle_rig
    rig.state.request_count = 2.0
    await rig.engine.cycle()
    assert not any(q.startswith("sum((max_over_time") for q in prom.queries)
    rig.state.request_count = 0.0
    await rig.engine.cycle()
    assert any(q.startswith("sum((max_over_time") for q in prom.queries)


# -- analyzers of other packages (entry points, docs/user-guide/admin/plugins.md) -------------

ANALYZER_MODULE = """
from pyllmd.autoscaler.decide.model import Decision


class Fixed:
    version = "v1"

    def analyze(self, group, config, now):
        return [Decision(v.name, v.namespace, v.model_id, v.accelerator, v.current_replicas, 4,
                         "fixed") for v in group.variants]


def make(state):
    return Fixed()
"""


def install(base: Path, name: str, entry_points: str, module: str = "") -> None:
    """A distribution `name` 1.0 in `base` with these entry points (and module, if given)."""
    info = base / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    if module:
        (base / "pyllmd_test_fixed_analyzer.py").write_text(module, encoding="utf-8")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path whose distributions this process discovers (fresh cache)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.discover.cache_clear()
    yield tmp_path
    plugins.discover.cache_clear()


def use_analyzer(rig: Rig, name: str) -> None:
    body = saturation()["default"] + f"analyzerName: {name}\n"
    rig.kube.update(api.CONFIGMAPS, SYSTEM, SAT, {"data": {"default": body}})


async def test_an_installed_analyzer_decides_the_targets(rig: Rig, site: Path) -> None:
    install(
        site,
        "fixed-analyzer",
        "[pyllmd.autoscaler.analyzers]\nfixed = pyllmd_test_fixed_analyzer:make\n",
        ANALYZER_MODULE,
    )
    add_variant(rig, "llama", 0.5)  # V1 keeps this at 1 replica (spare KV 0.30)
    use_analyzer(rig, "fixed")
    await rig.engine.cycle()
    assert rig.alloc("llama") is not None and rig.alloc("llama")["numReplicas"] == 4  # type: ignore[index]


async def test_a_broken_analyzer_is_one_error_line_and_no_decision(
    rig: Rig, site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    install(site, "broken-analyzer", "[pyllmd.autoscaler.analyzers]\nbroken = no_such_mod:make\n")
    add_variant(rig, "llama", 0.5)
    use_analyzer(rig, "broken")
    with caplog.at_level(logging.ERROR):
        await rig.engine.cycle()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "analyzerName broken: entry point 'broken = no_such_mod:make' (group "
        "pyllmd.autoscaler.analyzers, package broken-analyzer 1.0) failed to load: "
        "ModuleNotFoundError: No module named 'no_such_mod'"
    ]
    assert rig.alloc("llama") is None
