"""config/ renders with `kubectl kustomize`, and what it renders would be accepted and would run.

Every overlay renders; every rendered object validates against the Kubernetes
schemas or the custom resources' schemas; every container runs the Makefile's
image, under a restricted securityContext with requests and limits, with a
command line the current `pyllmd` accepts; the InferencePool selects the model
servers and names the endpoint picker's Service. Each check is shown to fail on
a mutated object, so none passes by checking nothing.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes_validate
import pytest
import yaml
from tools import doccheck

from tests.unit.deploy import manifests as m
from tests.unit.deploy.manifests import Obj

LLM_D = "config/overlays/llm-d"
# Kustomization fields of kustomize v5.0 this project uses; anything else might be newer.
KUSTOMIZE_FIELDS = frozenset(
    {
        "apiVersion", "kind", "resources", "components", "patches", "images", "namespace",
        "namePrefix", "configMapGenerator", "generatorOptions",
    }
)  # fmt: skip


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    logging.disable(logging.CRITICAL)  # the parsers' deprecation warnings
    yield
    logging.disable(logging.NOTSET)


def _is_component(path: Any) -> bool:
    return bool(yaml.safe_load(path.read_text()).get("kind") == "Component")


@pytest.mark.parametrize(
    "directory",
    [
        str(p.parent.relative_to(m.ROOT))
        for p in m.kustomizations()
        if not _is_component(p)
    ],
)  # fmt: skip
def test_every_kustomization_renders(directory: str) -> None:
    assert m.render(directory), f"{directory} renders nothing"


def test_kustomizations_use_only_kustomize_5_0_fields() -> None:
    for path in m.kustomizations():
        fields = set(yaml.safe_load(path.read_text()))
        assert fields <= KUSTOMIZE_FIELDS, f"{path}: {sorted(fields - KUSTOMIZE_FIELDS)}"


def test_the_overlays_are_the_documented_ones() -> None:
    overlays = [e for e in m.ENTRY_POINTS if e.startswith("config/overlays/")]
    assert overlays == [
        "config/overlays/llm-d", "config/overlays/pd", "config/overlays/scale-to-zero"
    ]  # fmt: skip


@pytest.mark.parametrize("entry", m.ENTRY_POINTS)
def test_every_rendered_object_validates(entry: str) -> None:
    assert m.schema_problems(m.render(entry)) == []


def test_the_kubernetes_schemas_are_those_kubernetes_validate_uses() -> None:
    # schema_problems builds each validator once; kubernetes_validate.validate agrees.
    objects = m.render(LLM_D)
    builtin = [o for o in objects if (o["apiVersion"], o["kind"]) not in m.crd_kinds()]
    assert {o["kind"] for o in builtin} >= {"Deployment", "Service", "ConfigMap", "Role"}
    for obj in builtin:
        kubernetes_validate.validate(obj, m.KUBERNETES_VERSION, strict=True)
    broken = m.mutated(builtin, "Deployment", "llama-8b-epp", lambda o: o["spec"].update(x=1))
    with pytest.raises(kubernetes_validate.ValidationError):
        for obj in broken:
            kubernetes_validate.validate(obj, m.KUBERNETES_VERSION, strict=True)
    assert len(m.schema_problems(broken)) == 1


@pytest.mark.parametrize("entry", m.ENTRY_POINTS)
def test_every_container_runs_the_makefile_image(entry: str) -> None:
    assert m.image_problems(m.render(entry), m.makefile_image()) == []


def test_one_images_entry_names_the_makefile_image() -> None:
    entries = [
        (path, entry)
        for path in m.kustomizations()
        for entry in yaml.safe_load(path.read_text()).get("images", [])
    ]
    assert len(entries) == 1, entries
    path, entry = entries[0]
    assert path == m.CONFIG / "components" / "image" / "kustomization.yaml"
    name = entry.get("newName", entry["name"])
    assert f"{name}:{entry['newTag']}" == m.makefile_image()
    assert name.split("/")[0] not in {"docker.io", "index.docker.io"}
    assert "." in name.split("/")[0], f"{name}: not qualified with a registry host"


@pytest.mark.parametrize("entry", m.ENTRY_POINTS)
def test_every_pod_is_restricted_with_requests_and_limits(entry: str) -> None:
    assert m.pod_problems(m.render(entry)) == []


@pytest.mark.parametrize("entry", m.ENTRY_POINTS)
def test_every_container_command_line_parses(entry: str) -> None:
    assert m.command_problems(m.render(entry)) == []


# ---------------------------------------------------------------- the topology's wiring


def _one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    hits = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(hits) == 1, f"{len(hits)} {kind} {name or ''}"
    return hits[0]


def _selected(objects: list[Obj], selector: dict[str, str]) -> list[Obj]:
    return [
        o
        for o in objects
        if o["kind"] == "Deployment"
        and selector.items() <= o["spec"]["template"]["metadata"]["labels"].items()
    ]


@pytest.mark.parametrize("entry", [LLM_D, "config/overlays/pd", "config/overlays/scale-to-zero"])
def test_the_pool_selects_the_model_servers_and_names_the_epp(entry: str) -> None:
    objects = m.render(entry)
    pool = _one(objects, "InferencePool")
    servers = _selected(objects, pool["spec"]["selector"]["matchLabels"])
    sims = [o for o in objects if o["kind"] == "Deployment" and "sim" in o["metadata"]["name"]]
    assert servers == sims and servers
    for server in servers:
        ports = {
            p["containerPort"]
            for c in m.containers(server)
            for p in c.get("ports", [])
        }  # fmt: skip
        assert {p["number"] for p in pool["spec"]["targetPorts"]} <= ports
    ref = pool["spec"]["endpointPickerRef"]
    service = _one(objects, "Service", ref["name"])
    port = next(p for p in service["spec"]["ports"] if p["port"] == ref["port"]["number"])
    epp = _selected(objects, service["spec"]["selector"])
    assert [d["metadata"]["name"] for d in epp] == ["llama-8b-epp"]
    (container,) = m.containers(epp[0])
    assert port.get("targetPort", port["port"]) in {p["containerPort"] for p in container["ports"]}
    args = container["args"]
    assert args[args.index("--pool-name") + 1] == pool["metadata"]["name"]
    for route in (o for o in objects if o["kind"] == "HTTPRoute"):
        (backend,) = route["spec"]["rules"][0]["backendRefs"]
        assert (backend["kind"], backend["name"]) == ("InferencePool", pool["metadata"]["name"])


def test_the_epp_runs_two_replicas_with_leader_election_and_grpc_probes() -> None:
    objects = m.render(LLM_D)
    epp = _one(objects, "Deployment", "llama-8b-epp")
    assert epp["spec"]["replicas"] == 2
    (container,) = m.containers(epp)
    assert "--ha-enable-leader-election" in container["args"]
    health = next(p for p in container["ports"] if p["name"] == "grpc-health")["containerPort"]
    assert health == 9003  # --grpc-health-port's default
    assert container["livenessProbe"]["grpc"] == {"port": health, "service": "liveness"}
    assert container["readinessProbe"]["grpc"] == {"port": health, "service": "readiness"}
    pdb = _one(objects, "PodDisruptionBudget", "llama-8b-epp")
    assert _selected(objects, pdb["spec"]["selector"]["matchLabels"]) == [epp]


@pytest.mark.parametrize("entry", [LLM_D, "config/overlays/pd"])
def test_every_simulator_is_probed_on_health_and_ready(entry: str) -> None:
    sims = [
        c
        for o in m.render(entry)
        for c in m.containers(o)
        if c.get("command") == ["pyllmd", "sim"]
    ]  # fmt: skip
    assert sims
    for c in sims:
        assert c["livenessProbe"]["httpGet"]["path"] == "/health"
        assert c["readinessProbe"]["httpGet"]["path"] == "/ready"


def test_the_metrics_of_the_three_parts_are_scraped_with_their_auth() -> None:
    objects = m.render(LLM_D)
    monitors = {o["metadata"]["name"]: o for o in objects if o["kind"].endswith("Monitor")}
    assert _selected(objects, monitors["model-servers"]["spec"]["selector"]["matchLabels"])
    epp = monitors["llama-8b-epp"]["spec"]["endpoints"][0]
    secret = _one(objects, "Secret", epp["authorization"]["credentials"]["name"])
    assert secret["type"] == "kubernetes.io/service-account-token"
    account = secret["metadata"]["annotations"]["kubernetes.io/service-account.name"]
    binding = next(
        o
        for o in objects
        if o["kind"] == "ClusterRoleBinding"
        and any(s["name"] == account for s in o["subjects"])
    )  # fmt: skip
    role = _one(objects, "ClusterRole", binding["roleRef"]["name"])
    assert {"nonResourceURLs": ["/metrics"], "verbs": ["get"]} in role["rules"]
    wva = monitors["workload-variant-autoscaler-controller-manager-metrics-monitor"]
    assert wva["spec"]["endpoints"][0]["bearerTokenFile"]


def test_the_autoscaler_watches_the_model_servers_namespace() -> None:
    objects = m.render(LLM_D)
    (manager,) = m.containers(
        _one(objects, "Deployment", "workload-variant-autoscaler-controller-manager")
    )
    assert "--watch-namespace=llm-d" in manager["args"]
    va = _one(objects, "VariantAutoscaling")
    assert va["metadata"]["namespace"] == "llm-d"
    target = _one(objects, "Deployment", va["spec"]["scaleTargetRef"]["name"])
    assert target["metadata"]["namespace"] == "llm-d"


def test_scale_to_zero_hands_the_replicas_to_keda() -> None:
    objects = m.render("config/overlays/scale-to-zero")
    scaled = _one(objects, "ScaledObject")
    target = _one(objects, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])
    assert scaled["spec"]["minReplicaCount"] == 0
    assert "replicas" not in target["spec"]
    (epp,) = m.containers(_one(objects, "Deployment", "llama-8b-epp"))
    config = _one(objects, "ConfigMap", "llama-8b-epp")["data"]["flow-control-plugins.yaml"]
    assert "/config/flow-control-plugins.yaml" in epp["args"]
    assert yaml.safe_load(config)["featureGates"] == ["flowControl"]


def test_pd_puts_the_sidecar_on_the_serving_port_of_the_decode_pods() -> None:
    objects = m.render("config/overlays/pd")
    decode = _one(objects, "Deployment", "sim-llama-8b-decode")
    sidecar, sim = m.containers(decode)
    assert sidecar["command"] == ["pyllmd", "pd-sidecar"]
    assert "--port=8000" in sidecar["args"] and "--vllm-port=8200" in sidecar["args"]
    assert "--port=8200" in sim["args"]
    roles = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]["llm-d.ai/role"]
        for d in objects
        if d["kind"] == "Deployment" and "sim" in d["metadata"]["name"]
    }  # fmt: skip
    assert roles == {"sim-llama-8b-decode": "decode", "sim-llama-8b-prefill": "prefill"}


# ---------------------------------------------------------------- the checks catch mistakes


def _args(index: int | None, value: str) -> Callable[[Obj], None]:
    def change(obj: Obj) -> None:
        args = obj["spec"]["template"]["spec"]["containers"][0]["args"]
        if index is None:
            args.append(value)
        else:
            args[index] = value

    return change


MUTATIONS: list[tuple[str, str, str, Callable[[Obj], None], str]] = [
    ("schema", "Deployment", "sim-llama-8b-a100",
     lambda o: o["spec"].update(replica=2), "'replica' was unexpected"),
    ("schema", "Service", "llama-8b-epp",
     lambda o: o["spec"]["ports"][0].update(port="9002"), "'9002' is not of type 'integer'"),
    ("schema", "InferencePool", "llama-8b",
     lambda o: o["spec"]["targetPorts"][0].update(number=0), "less than the minimum of 1"),
    ("schema", "InferencePool", "llama-8b",
     lambda o: o["spec"]["endpointPickerRef"].pop("port"), "'port' is a required property"),
    ("schema", "InferenceObjective", "batch",
     lambda o: o["spec"].update(priority="low"), "is not of type 'integer'"),
    ("schema", "HTTPRoute", "llama-8b",
     lambda o: o["spec"]["rules"][0]["timeouts"].update(request="5 min"), "does not match"),
    ("schema", "Gateway", "llm-d-gateway",
     lambda o: o["spec"]["listeners"][0].pop("protocol"), "'protocol' is a required property"),
    ("schema", "VariantAutoscaling", "sim-llama-8b-a100",
     lambda o: o["spec"].update(modelId="m"), "'modelId' was unexpected"),
    ("schema", "PodMonitor", "model-servers",
     lambda o: o["spec"]["podMetricsEndpoints"][0].update(intervall="5s"), "'intervall'"),
    ("schema", "ServiceMonitor", "llama-8b-epp",
     lambda o: o["spec"]["endpoints"][0]["authorization"].update(credential={}), "'credential'"),
    ("image", "Deployment", "sim-llama-8b-a100",
     lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image="quay.io/x/y:1"),
     "not the Makefile's"),
    ("pod", "Deployment", "llama-8b-epp",
     lambda o: o["spec"]["template"]["spec"]["containers"][0]["securityContext"].pop(
         "capabilities"), "capabilities.drop is not [ALL]"),
    ("pod", "Deployment", "sim-llama-8b-a100",
     lambda o: o["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].pop("cpu"),
     "no cpu in resources.limits"),
    ("command", "Deployment", "llama-8b-epp", _args(None, "--pool-nmae=x"),
     "unknown flag: --pool-nmae"),
    ("command", "Deployment", "sim-llama-8b-a100", _args(None, "--port=70000"),
     "--port: invalid port '70000'"),
    ("command", "ConfigMap", "llama-8b-epp",
     lambda o: o["data"].update({"default-plugins.yaml": "apiVersion: inference.networking"
                                 ".x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n"
                                 "- type: no-such-scorer\n"}),
     "plugin type 'no-such-scorer' is not registered"),
    ("command", "ConfigMap", "workload-variant-autoscaler-wva-variantautoscaling-config",
     lambda o: o["data"].update(PROMETHEUS_BASE_URL="http://prometheus:9090"),
     "PROMETHEUS_BASE_URL: must be an https:// URL"),
]  # fmt: skip
CHECKS: dict[str, Callable[[list[Obj]], list[str]]] = {
    "schema": m.schema_problems,
    "image": lambda objects: m.image_problems(objects, m.makefile_image()),
    "pod": m.pod_problems,
    "command": m.command_problems,
}


@pytest.mark.parametrize(
    ("check", "kind", "name", "change", "expected"),
    MUTATIONS,
    ids=[f"{c}-{k}-{e[:24]}" for c, k, _n, _f, e in MUTATIONS],
)
def test_a_mutated_object_fails_its_check(
    check: str, kind: str, name: str, change: Callable[[Obj], None], expected: str
) -> None:
    objects = m.render(LLM_D)
    assert CHECKS[check](objects) == []
    problems = CHECKS[check](m.mutated(objects, kind, name, change))
    assert len(problems) == 1 and expected in problems[0], problems


# ---------------------------------------------------------------- the Grafana dashboards


def test_the_dashboards_ship_as_labelled_config_maps_with_their_variables() -> None:
    files = {p.name: json.loads(p.read_text()) for p in (m.CONFIG / "dashboards").glob("*.json")}
    assert set(files) == {"model-servers.json", "endpoint-picker.json", "autoscaler.json"}
    maps = [
        o
        for o in m.render(LLM_D)
        if o["kind"] == "ConfigMap" and o["metadata"].get("labels", {}).get("grafana_dashboard")
    ]
    assert {o["metadata"]["labels"]["grafana_dashboard"] for o in maps} == {"1"}
    shipped = {key: json.loads(text) for o in maps for key, text in o["data"].items()}
    assert shipped == files
    assert len({d["uid"] for d in files.values()}) == len(files)
    for name, dashboard in files.items():
        variables = [v["name"] for v in dashboard["templating"]["list"]]
        assert variables == ["datasource", "namespace", "model"], name
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}", (name, panel["title"])
            for target in panel["targets"]:
                assert "$namespace" in target["expr"], (name, panel["title"], target["expr"])


def test_every_dashboard_query_names_metrics_the_code_declares() -> None:
    # The e2e test runs the queries; this catches a misspelt metric without a stack.
    source = "\n".join(p.read_text() for p in (m.ROOT / "src" / "pyllmd").rglob("*.py"))
    unknown = set()
    for path in (m.CONFIG / "dashboards").glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                for name in doccheck.METRIC.findall(target["expr"]):
                    if re.sub(r"_(bucket|sum|count|total)$", "", name) not in source:
                        unknown.add((path.name, name))
    assert not unknown
