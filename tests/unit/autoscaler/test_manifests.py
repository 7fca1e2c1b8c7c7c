"""The shipped manifests under config/: they parse, the CRD's schema accepts the samples and
rejects what the API server rejects, the samples agree with the controller's parsers, and
every image is fully qualified."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from pyllmd.autoscaler.config import load_controller_config
from pyllmd.autoscaler.decide.api import InvalidObject, validate_variant_autoscaling
from pyllmd.autoscaler.yaml12 import parse_saturation_configmap, parse_scale_to_zero

CONFIG = Path(__file__).parents[3] / "config"
FILES = sorted(CONFIG.rglob("*.yaml"))


def docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def all_docs() -> list[Any]:
    return [d for f in FILES for d in docs(f)]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in all_docs() if isinstance(d, dict) and d.get("kind") == kind]


def crd() -> dict[str, Any]:
    (found,) = docs(CONFIG / "crd/bases/llmd.ai_variantautoscalings.yaml")
    return found  # type: ignore[no-any-return]


def schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def sample_vas() -> list[dict[str, Any]]:
    return docs(CONFIG / "samples/variantautoscaling-with-cost.yaml")


def test_every_yaml_file_parses() -> None:
    assert len(FILES) >= 30
    for path in FILES:
        assert docs(path), path


def test_wva_acc_04_crd_printer_columns_and_short_name() -> None:
    c = crd()
    assert c["apiVersion"] == "apiextensions.k8s.io/v1"
    assert c["metadata"]["name"] == "variantautoscalings.llmd.ai"
    spec = c["spec"]
    assert spec["group"] == "llmd.ai" and spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "VariantAutoscaling",
        "listKind": "VariantAutoscalingList",
        "plural": "variantautoscalings",
        "singular": "variantautoscaling",
        "shortNames": ["va"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = [
        (col["name"], col["type"], col["jsonPath"]) for col in version["additionalPrinterColumns"]
    ]
    assert columns == [
        ("Target", "string", ".spec.scaleTargetRef.name"),
        ("Model", "string", ".spec.modelID"),
        ("Optimized", "string", ".status.desiredOptimizedAlloc.numReplicas"),
        ("MetricsReady", "string", ".status.conditions[?(@.type=='MetricsAvailable')].status"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    s = schema()["properties"]["spec"]
    assert s["required"] == ["modelID", "scaleTargetRef"]
    assert s["properties"]["variantCost"]["default"] == "10.0"


def schema_valid(obj: dict[str, Any]) -> bool:
    return not list(jsonschema.Draft7Validator(schema()).iter_errors(obj))


def test_samples_validate_against_crd_schema_and_api() -> None:
    vas = sample_vas()
    assert len(vas) >= 2
    for obj in vas:
        assert schema_valid(obj)
        validate_variant_autoscaling(obj)
    assert any("variantCost" not in obj["spec"] for obj in vas)


def mutated(path: tuple[str, ...], value: object) -> dict[str, Any]:
    obj = copy.deepcopy(sample_vas()[0])
    target = obj
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "modelID"), None),
        (("spec", "modelID"), ""),
        (("spec", "scaleTargetRef"), None),
        (("spec", "scaleTargetRef", "kind"), None),
        (("spec", "scaleTargetRef", "name"), None),
        (("spec", "variantCost"), "-1"),
        (("spec", "variantCost"), "abc"),
        (("spec", "variantCost"), 5),
    ],
)
def test_wva_acc_01_03_schema_and_api_reject(path: tuple[str, ...], value: object) -> None:
    obj = mutated(path, value)
    assert not schema_valid(obj)
    with pytest.raises(InvalidObject):
        validate_variant_autoscaling(obj)


@pytest.mark.parametrize("cost", ["5", "12.50", "0"])
def test_wva_acc_03_schema_accepts(cost: str) -> None:
    obj = mutated(("spec", "variantCost"), cost)
    assert schema_valid(obj)
    validate_variant_autoscaling(obj)


def test_status_schema_agrees_with_api() -> None:
    good = mutated(
        ("status",), {"desiredOptimizedAlloc": {"accelerator": "H100", "numReplicas": 2}}
    )
    assert schema_valid(good)
    validate_variant_autoscaling(good)
    bad = mutated(("status",), {"desiredOptimizedAlloc": {"accelerator": "H", "numReplicas": -1}})
    assert not schema_valid(bad)


def images(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                yield value
            elif key == "image" and isinstance(value, dict) and "repository" in value:
                yield str(value["repository"])
            else:
                yield from images(value)
    elif isinstance(node, list):
        for item in node:
            yield from images(item)


def test_images_are_fully_qualified_and_not_docker_hub() -> None:
    found = [image for doc in all_docs() for image in images(doc)]
    # The tag is set once, in config/components/image (tests/unit/deploy checks it).
    assert "ghcr.io/pyllmd/pyllmd" in found
    for image in found:
        registry = image.split("/")[0]
        assert "/" in image and ("." in registry or ":" in registry), image
        assert registry not in ("docker.io", "index.docker.io", "registry-1.docker.io"), image


def test_manager_deployment() -> None:
    # config/ also holds the llm-d topology's Deployments (tests/unit/deploy checks them).
    (deploy,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "controller-manager"]
    assert deploy["metadata"]["namespace"] == "workload-variant-autoscaler-system"
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["pyllmd", "autoscaler"]
    assert "--leader-elect=true" in container["args"]
    assert deploy["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    kustomization = docs(CONFIG / "default/kustomization.yaml")[0]
    assert kustomization["namePrefix"] == "workload-variant-autoscaler-"
    assert kustomization["namespace"] == "workload-variant-autoscaler-system"


def rules_of(name: str) -> list[dict[str, Any]]:
    (role,) = [r for r in of_kind("ClusterRole") if r["metadata"]["name"] == name]
    return role["rules"]  # type: ignore[no-any-return]


def grants(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r.get("apiGroups", [])
        and resource in r.get("resources", [])
        and (verb in r["verbs"] or "*" in r["verbs"])
        for r in rules
    )


def test_manager_role() -> None:
    rules = rules_of("manager-role")
    for group in ("inference.networking.k8s.io", "inference.networking.x-k8s.io"):
        assert grants(rules, group, "inferencepools", "watch")
    assert grants(rules, "apps", "deployments/scale", "update")
    assert grants(rules, "llmd.ai", "variantautoscalings/status", "patch")
    assert grants(rules, "", "configmaps", "watch")
    leader = [r for r in of_kind("Role") if r["metadata"]["name"] == "leader-election-role"]
    assert grants(leader[0]["rules"], "coordination.k8s.io", "leases", "update")


def test_user_roles_use_the_real_group() -> None:
    assert grants(
        rules_of("variantautoscaling-admin-role"), "llmd.ai", "variantautoscalings", "delete"
    )
    assert grants(
        rules_of("variantautoscaling-editor-role"), "llmd.ai", "variantautoscalings", "update"
    )
    viewer = rules_of("variantautoscaling-viewer-role")
    assert grants(viewer, "llmd.ai", "variantautoscalings", "list")
    assert not grants(viewer, "llmd.ai", "variantautoscalings", "update")


def configmap(path: str) -> dict[str, str]:
    (cm,) = docs(CONFIG / path)
    return cm["data"]  # type: ignore[no-any-return]


def test_saturation_configmaps_parse_cleanly() -> None:
    for path in (
        "manager/configmap-saturation-scaling.yaml",
        "samples/saturation-scaling-config.yaml",
    ):
        entries, errors = parse_saturation_configmap(configmap(path))
        assert errors == [] and "default" in entries
    entries, _ = parse_saturation_configmap(configmap("samples/saturation-scaling-config.yaml"))
    assert len(entries) == 2


def test_scale_to_zero_sample_parses_cleanly() -> None:
    cfg, notes = parse_scale_to_zero(configmap("samples/model-scale-to-zero-config.yaml"))
    assert notes == [] and cfg.default is not None and cfg.default.retention == "15m"
    assert cfg.default.enable is True and len(cfg.models) == 2


def test_main_configmap_loads_as_controller_env() -> None:
    cfg = load_controller_config([], configmap("manager/configmap.yaml"))
    assert cfg.prometheus_base_url.startswith("https://")
    assert cfg.global_opt_interval == 60


def test_wva_acc_53_hpa_and_adapter_agree() -> None:
    (hpa,) = of_kind("HorizontalPodAutoscaler")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "wva_desired_replicas"
    assert set(metric["external"]["metric"]["selector"]["matchLabels"]) == {
        "variant_name",
        "exported_namespace",
    }
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}
    values = docs(CONFIG / "samples/prometheus-adapter-values.yaml")[0]
    (rule,) = values["rules"]["external"]
    assert rule["seriesQuery"] == 'wva_desired_replicas{variant_name!="",exported_namespace!=""}'
    assert rule["resources"]["overrides"] == {
        "exported_namespace": {"resource": "namespace"},
        "variant_name": {"resource": "deployment"},
    }
    assert rule["metricsQuery"] == "wva_desired_replicas{<<.LabelMatchers>>}"
    assert "--prometheus-ca-file=/etc/prometheus-ca/ca.crt" in values["extraArguments"]


def test_keda_scaled_object() -> None:
    (so,) = [s for s in of_kind("ScaledObject") if s["metadata"]["name"] == "llama-8b-l40s-scaler"]
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    meta = trigger["metadata"]
    assert meta["query"].startswith("wva_desired_replicas{variant_name=")
    assert (meta["threshold"], meta["activationThreshold"]) == ("1", "0")
    assert so["spec"]["fallback"] == {"failureThreshold": 3, "replicas": 2}


def test_service_monitor_scrapes_controller_over_https() -> None:
    monitors = [
        m
        for m in of_kind("ServiceMonitor")
        if m["metadata"]["name"] == "controller-manager-metrics-monitor"
    ]
    (endpoint,) = monitors[0]["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["scheme"], endpoint["path"]) == (
        "https",
        "https",
        "/metrics",
    )
    (service,) = [
        s for s in of_kind("Service") if s["metadata"]["name"].endswith("metrics-service")
    ]
    assert service["spec"]["ports"][0]["name"] == "https"
