"""The Kubernetes manifests under config/, rendered and checked offline.

Each check is a function from rendered objects to a list of problems (one line
each, naming the object), so a test can run it on the real manifests and on a
mutated copy that must fail:

* `schema_problems`: every object against the Kubernetes schemas of
  `kubernetes-validate` (its strict ones: an unknown field is an error; the
  validator is built as its `validate` builds it, once per kind), or, for custom
  resources, against the JSON schemas in `schemas/` (written from the pinned
  upstream API types) and the VariantAutoscaling CRD shipped in config/crd;
* `image_problems`: every container runs the Makefile's IMAGE;
* `pod_problems`: restricted securityContext, requests and limits everywhere;
* `command_problems`: every container's command and args parse with the current
  command line (tools/doccheck.py's parsers: flag parsing and the checks each
  command runs before it serves, nothing started), with the container's
  environment (fieldRefs, ConfigMaps, Secrets) and its mounted ConfigMap files.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import yaml
from kubernetes_validate.utils import all_versions, major_minor, schema_contents
from tools import doccheck

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "config"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
# The oldest Kubernetes minor the manifests are written for (gRPC probes are GA since 1.27).
KUBERNETES_VERSION = "1.30"
# What `kubectl apply -k` / `kubectl kustomize` is given: config/default (the autoscaler
# alone) and every overlay of the llm-d topology; config/samples holds examples.
ENTRY_POINTS = ("config/default", "config/samples") + tuple(
    str(p.relative_to(ROOT)) for p in sorted((CONFIG / "overlays").iterdir()) if p.is_dir()
)
WORKLOADS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job"})

Obj = dict[str, Any]


def name_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


@functools.cache
def _render(directory: str) -> str:
    done = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{done.stderr}")
    return done.stdout


def render(directory: str) -> list[Obj]:
    """The objects `kubectl kustomize` renders from a directory (fresh copies)."""
    return [o for o in yaml.safe_load_all(_render(directory)) if o]


def kustomizations() -> list[Path]:
    """Every kustomization.yaml under config/."""
    return sorted(CONFIG.rglob("kustomization.yaml"))


def makefile_image() -> str:
    found = re.search(r"^IMAGE \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert found, "the Makefile has no `IMAGE ?= ...` line"
    return found.group(1)


# ---------------------------------------------------------------- schemas


def _strict(schema: Any) -> Any:
    """A CRD's structural schema with unknown fields refused (the API server would
    prune them silently: here a typo must fail)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def _crd_schemas() -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> JSON schema: the hand-written ones, and the CRDs of config/crd."""
    found: dict[tuple[str, str], Any] = {}
    for path in sorted(SCHEMAS.glob("*.yaml")):
        schema = yaml.safe_load(path.read_text())
        kinds = schema["properties"]["kind"]
        api = schema["properties"]["apiVersion"]["const"]
        for kind in kinds.get("enum", [kinds.get("const")]):
            found[(api, kind)] = schema
    for path in sorted((CONFIG / "crd" / "bases").glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = _strict(version["schema"]["openAPIV3Schema"])
                schema["properties"]["metadata"] = {"type": "object"}
                found[(f"{group}/{version['name']}", kind)] = schema
    return found


@functools.cache
def _kubernetes_definitions() -> Any:
    return referencing.Resource.from_contents(
        schema_contents(f"kubernetes-json-schema/{_schema_dir()}/_definitions.json", "")
    )


def _schema_dir() -> str:
    version = [v for v in all_versions() if major_minor(v) <= major_minor(KUBERNETES_VERSION)][-1]
    return f"v{version}-local-strict"


@functools.cache
def _validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator | None:
    """The validator of a kind: a custom resource's schema, else `kubernetes-validate`'s
    strict schema of the Kubernetes version (built once: loading it is the slow part);
    None when there is neither."""
    if (api_version, kind) in _crd_schemas():
        return jsonschema.Draft202012Validator(_crd_schemas()[(api_version, kind)])
    # kubernetes-validate's file naming: rbac.authorization.k8s.io/v1 -> rbac-v1
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    name = f"kubernetes-json-schema/{_schema_dir()}/{kind.lower()}-{group_version}.json"
    try:
        schema = schema_contents(name, KUBERNETES_VERSION)
    except FileNotFoundError:
        return None
    resource = referencing.Resource.from_contents(schema)
    registry: referencing.Registry[Any] = resource @ referencing.Registry()
    registry = _kubernetes_definitions() @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def crd_kinds() -> set[tuple[str, str]]:
    """(apiVersion, kind) of the custom resources the schemas cover."""
    return set(_crd_schemas())


def schema_problems(objects: list[Obj]) -> list[str]:
    problems = []
    for obj in objects:
        validator = _validator(obj.get("apiVersion", ""), obj.get("kind", ""))
        if validator is None:
            problems.append(f"{name_of(obj)}: no schema for {obj.get('apiVersion')}")
            continue
        error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
        if error is not None:
            path = ".".join(str(p) for p in error.absolute_path)
            problems.append(f"{name_of(obj)}: {path}: {error.message}")
    return problems


# ---------------------------------------------------------------- pods


def pod_spec(obj: Obj) -> Obj | None:
    if obj.get("kind") in WORKLOADS:
        spec: Obj = obj["spec"]["template"]["spec"]
        return spec
    return None


def containers(obj: Obj) -> Iterator[Obj]:
    spec = pod_spec(obj)
    if spec is not None:
        yield from spec.get("initContainers", [])
        yield from spec.get("containers", [])


def image_problems(objects: list[Obj], image: str) -> list[str]:
    return [
        f"{name_of(o)} container {c['name']}: image {c.get('image')!r},"
        f" not the Makefile's {image!r}"
        for o in objects
        for c in containers(o)
        if c.get("image") != image
    ]


def pod_problems(objects: list[Obj]) -> list[str]:
    """The restricted Pod Security Standard's rules, and requests and limits, per container."""
    problems = []
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        pod_sc = spec.get("securityContext") or {}
        if pod_sc.get("runAsNonRoot") is not True:
            problems.append(f"{name_of(obj)}: securityContext.runAsNonRoot is not true")
        if (pod_sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{name_of(obj)}: securityContext.seccompProfile is not RuntimeDefault")
        for c in containers(obj):
            where = f"{name_of(obj)} container {c['name']}"
            sc = c.get("securityContext") or {}
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
                problems.append(f"{where}: capabilities.drop is not [ALL]")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in (c.get("resources") or {}).get(kind, {}):
                        problems.append(f"{where}: no {resource} in resources.{kind}")
    return problems


# ---------------------------------------------------------------- command lines

# What the kubelet puts in a fieldRef; the pod's own namespace is the object's.
FIELD_VALUES = {"metadata.name": "pod-0", "status.podIP": "10.0.0.1", "spec.nodeName": "node-0"}


def _config_maps(objects: list[Obj]) -> dict[tuple[str, str], dict[str, str]]:
    return {
        (o["metadata"].get("namespace", ""), o["metadata"]["name"]): o.get("data") or {}
        for o in objects
        if o.get("kind") == "ConfigMap"
    }


def container_env(obj: Obj, container: Obj, objects: list[Obj]) -> dict[str, str]:
    """The environment the kubelet gives the container (Secrets' values are stand-ins)."""
    namespace = obj["metadata"].get("namespace", "default")
    maps = _config_maps(objects)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref is not None:
            if (namespace, ref["name"]) not in maps and not ref.get("optional"):
                raise ValueError(f"envFrom: no ConfigMap {namespace}/{ref['name']}")
            env.update(maps.get((namespace, ref["name"]), {}))
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = _expand(var["value"], env)
            continue
        source = var.get("valueFrom", {})
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            env[var["name"]] = namespace if path == "metadata.namespace" else FIELD_VALUES[path]
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[var["name"]] = maps[(namespace, ref["name"])][ref["key"]]
        elif "secretKeyRef" in source:
            env[var["name"]] = "secret-value"
    return env


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in args and env values."""
    variable = r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)"
    return re.sub(variable, lambda m: env.get(m.group(1), m.group(0)), text)


def _mounted_files(obj: Obj, container: Obj, objects: list[Obj], tmp: Path) -> dict[str, str]:
    """Mount path -> a directory holding the ConfigMap files the container sees there."""
    spec = pod_spec(obj) or {}
    namespace = obj["metadata"].get("namespace", "default")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    maps = _config_maps(objects)
    mounts = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "configMap" not in volume:
            continue
        data = maps.get((namespace, volume["configMap"]["name"]))
        if data is None:
            raise ValueError(f"volume {mount['name']}: no ConfigMap {volume['configMap']['name']}")
        directory = tmp / mount["name"]
        directory.mkdir()
        for key, text in data.items():
            (directory / key).write_text(text)
        mounts[mount["mountPath"].rstrip("/")] = str(directory)
    return mounts


def _with_files(arg: str, mounts: Mapping[str, str]) -> str:
    for path, directory in mounts.items():
        arg = re.sub(rf"(^|=){re.escape(path)}/", rf"\g<1>{directory}/", arg)
    return arg


def command_problems(objects: list[Obj]) -> list[str]:
    problems = []
    with doccheck.runtime_stubs({}) as (_stubs, base_env):
        for obj in objects:
            for c in containers(obj):
                where = f"{name_of(obj)} container {c['name']}"
                words = [*c.get("command", []), *c.get("args", [])]
                if words[:1] != ["pyllmd"] or len(words) < 2:
                    problems.append(f"{where}: command {words[:2]} is not `pyllmd <command>`")
                    continue
                with tempfile.TemporaryDirectory(prefix="deploy-") as tmp:
                    try:
                        env = container_env(obj, c, objects)
                        mounts = _mounted_files(obj, c, objects, Path(tmp))
                    except (ValueError, KeyError) as err:
                        problems.append(f"{where}: {err}")
                        continue
                    argv = tuple(_with_files(_expand(a, env), mounts) for a in words[2:])
                    command = doccheck.Command(env, words[1], argv, " ".join(words))
                    error = doccheck.parse_error(command, {}, {**base_env, **env})
                    if error:
                        problems.append(f"{where}: {' '.join(words)}: {error}")
    return problems


def mutated(objects: list[Obj], kind: str, name: str, change: Any) -> list[Obj]:
    """A deep copy of `objects` in which `change(obj)` edited the named object."""
    out = copy.deepcopy(objects)
    hits = [o for o in out if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"no single {kind} {name}"
    change(hits[0])
    return out


def dump(objects: list[Obj]) -> str:
    return json.dumps(objects, indent=1)
