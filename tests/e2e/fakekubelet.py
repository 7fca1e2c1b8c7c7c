"""A fake cluster for the e2e tests: rendered manifests in the fake API server, and a
small fake kubelet running the simulator Deployments' pods as local processes.

`render` runs `kubectl kustomize` on an overlay of config/; `apply` creates every
rendered object in the fake API server (`tests/unit/autoscaler/kubefake.py`), with a
resource definition added for each kind the fake does not know yet (RBAC,
PodDisruptionBudget, Gateway API, monitors: stored and served, not acted on).

`FakeKubelet` does what the Deployment and ReplicaSet controllers and the kubelet do
for a Deployment whose container runs `pyllmd sim`: a ReplicaSet owned by the
Deployment (labels and `pod-template-hash` as the controller sets them), one Pod per
replica owned by the ReplicaSet (the template's labels and spec), a `pyllmd sim`
process started with the container's own args and environment (`fieldRef`s resolved
from the Pod), and, once it answers its readiness probe, the Pod's status: `Running`,
the `Ready`/`ContainersReady`/`Initialized`/`PodScheduled` conditions, a container
status and `podIP`. Every pod gets its own loopback address (127.0.0.0/8 all routes
to `lo`), so every pod keeps the container's port, as pods in a cluster do, and the
InferencePool's `targetPorts` reach each of them; an address whose port is taken is
skipped. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.harness import ManagedProcess, http_get
from tests.unit.autoscaler import kubefake_api as api
from tests.unit.autoscaler.kubefake import KubeFake

Obj = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
SIM_COMMAND = ["pyllmd", "sim"]


def render(overlay: str) -> list[Obj]:
    """`kubectl kustomize config/<overlay>` as a list of objects (kubectl must be installed)."""
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl is not installed: run `make deploy-deps`"
    done = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "config" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _key(obj: Obj) -> tuple[str, str, str]:
    group, _, version = obj["apiVersion"].rpartition("/")
    return group, version, obj["kind"]


def resource_defs(objs: Iterable[Obj], known: Sequence[api.ResourceDef]) -> list[api.ResourceDef]:
    """The fake's resource definitions plus one for every other kind among `objs`."""
    defs = list(known)
    have = {(d.group, d.version, d.kind) for d in defs}
    for obj in objs:
        group, version, kind = _key(obj)
        if (group, version, kind) in have:
            continue
        have.add((group, version, kind))
        plural = kind.lower() + ("es" if kind.endswith(("s", "ch")) else "s")
        namespaced = "namespace" in obj["metadata"]
        defs.append(api.ResourceDef(group, version, plural, kind, namespaced=namespaced))
    return defs


def apply(kube: KubeFake, objs: Iterable[Obj]) -> None:
    """Create every object (status kept, as a server-side apply by a controller would)."""
    for obj in objs:
        group, version, kind = _key(obj)
        rdef = next(
            d for d in kube.defs.values() if (d.group, d.version, d.kind) == (group, version, kind)
        )
        created = kube.create(rdef, obj)
        if "status" in obj and rdef.has_status:
            kube.update(
                rdef,
                created["metadata"].get("namespace"),
                obj["metadata"]["name"],
                {"status": obj["status"]},
            )


def _template_hash(template: Obj) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return "".join(c for c in digest if c in "bcdfghjklmnpqrstvwxz2456789")[:10]


def _suffix(rng: random.Random) -> str:
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


def _free_loopback_ip(port: int, taken: set[str], rng: random.Random) -> str:
    """A 127.x.y.z address (not 127.0.0.1) whose `port` is free right now."""
    for _ in range(200):
        ip = f"127.{rng.randrange(1, 255)}.{rng.randrange(0, 255)}.{rng.randrange(1, 255)}"
        if ip in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((ip, port))
            except OSError:
                continue
        taken.add(ip)
        return ip
    raise AssertionError(f"no loopback address with port {port} free")


@dataclass
class FakePod:
    """One pod of a simulator Deployment and the process behind it."""

    name: str
    namespace: str
    ip: str
    port: int
    process: ManagedProcess
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"


class FakeKubelet:
    """Runs the Pods of every `pyllmd sim` Deployment in the fake API server."""

    def __init__(self, kube: KubeFake, workdir: Path, seed: int | None = None) -> None:
        self.kube = kube
        self.workdir = workdir
        self.pods: list[FakePod] = []
        self._rng = random.Random(seed)
        self._ips: set[str] = set()

    async def start(self, timeout: float = 30.0) -> list[FakePod]:
        """Create the ReplicaSets and Pods of every simulator Deployment, start their
        processes and mark each Pod Ready once its readiness probe answers 200 (bounded)."""
        started: list[tuple[FakePod, Obj]] = []
        for dep in list_objects(self.kube, api.DEPLOYMENTS):
            containers = dep["spec"]["template"]["spec"]["containers"]
            if containers[0].get("command") != SIM_COMMAND:
                continue
            rs = self._replicaset(dep)
            for _ in range(int(dep["spec"].get("replicas", 1))):
                started.append(self._pod(rs))
        deadline = time.monotonic() + timeout
        for pod, obj in started:
            url = pod.url + self._probe_path(obj)
            while not await asyncio.to_thread(_answers_200, url):
                if pod.process.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"pod {pod.name} never ready:\n{pod.process.describe()}")
                await asyncio.sleep(0.1)
            self._mark_ready(pod, obj)
        for dep in list_objects(self.kube, api.DEPLOYMENTS):
            self._deployment_status(dep)
        return [p for p, _ in started]

    def close(self) -> None:
        for pod in self.pods:
            pod.process.stop()

    def describe(self) -> str:
        return "\n".join(p.process.describe(tail=30) for p in self.pods)

    # -- controllers --------------------------------------------------------------------------

    def _replicaset(self, dep: Obj) -> Obj:
        meta = dep["metadata"]
        template = dep["spec"]["template"]
        pth = _template_hash(template)
        labels = {**template["metadata"].get("labels", {}), "pod-template-hash": pth}
        return self.kube.create(
            api.REPLICASETS,
            {
                "metadata": {
                    "name": f"{meta['name']}-{pth}",
                    "namespace": meta["namespace"],
                    "labels": labels,
                    "annotations": {"deployment.kubernetes.io/revision": "1"},
                    "ownerReferences": [_owner(dep, "apps/v1", "Deployment")],
                },
                "spec": {
                    "replicas": dep["spec"].get("replicas", 1),
                    "selector": {
                        "matchLabels": {
                            **dep["spec"]["selector"]["matchLabels"],
                            "pod-template-hash": pth,
                        }
                    },
                    "template": {
                        "metadata": {**template["metadata"], "labels": labels},
                        "spec": template["spec"],
                    },
                },
            },
        )

    def _pod(self, rs: Obj) -> tuple[FakePod, Obj]:
        rs_meta = rs["metadata"]
        template = rs["spec"]["template"]
        container = template["spec"]["containers"][0]
        port = next(
            (p["containerPort"] for p in container.get("ports", []) if p.get("name") == "http"),
            8000,
        )
        ip = _free_loopback_ip(port, self._ips, self._rng)
        name = f"{rs_meta['name']}-{_suffix(self._rng)}"
        obj = self.kube.create(
            api.PODS,
            {
                "metadata": {
                    "name": name,
                    "namespace": rs_meta["namespace"],
                    "labels": dict(template["metadata"]["labels"]),
                    "ownerReferences": [_owner(rs, "apps/v1", "ReplicaSet")],
                },
                "spec": {**template["spec"], "nodeName": "fake-node"},
            },
        )
        obj = self.kube.update(
            api.PODS,
            rs_meta["namespace"],
            name,
            {
                "status": {
                    "phase": "Pending",
                    "podIP": ip,
                    "podIPs": [{"ip": ip}],
                    "hostIP": ip,
                    "conditions": [_condition("PodScheduled", "True")],
                }
            },
        )
        workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        env = container_env(container, obj, self.kube, workdir)
        argv = [sys.executable, "-m", "pyllmd", "sim", *container.get("args", []), "--host", ip]
        process = ManagedProcess(f"pod {name}", argv, env)
        pod = FakePod(name, rs_meta["namespace"], ip, port, process, obj["metadata"]["labels"])
        self.pods.append(pod)
        return pod, obj

    @staticmethod
    def _probe_path(pod: Obj) -> str:
        probe = pod["spec"]["containers"][0].get("readinessProbe", {})
        return str(probe.get("httpGet", {}).get("path", "/ready"))

    def _mark_ready(self, pod: FakePod, obj: Obj) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        container = obj["spec"]["containers"][0]
        self.kube.update(
            api.PODS,
            pod.namespace,
            pod.name,
            {
                "status": {
                    "phase": "Running",
                    "podIP": pod.ip,
                    "podIPs": [{"ip": pod.ip}],
                    "hostIP": pod.ip,
                    "startTime": now,
                    "conditions": [
                        _condition(kind, "True", now)
                        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
                    ],
                    "containerStatuses": [
                        {
                            "name": container["name"],
                            "image": container["image"],
                            "ready": True,
                            "started": True,
                            "restartCount": 0,
                            "state": {"running": {"startedAt": now}},
                        }
                    ],
                }
            },
        )

    def _deployment_status(self, dep: Obj) -> None:
        """The Deployment's and its ReplicaSets' status from the pods this kubelet runs."""
        meta = dep["metadata"]
        selector = dep["spec"]["selector"]["matchLabels"].items()
        owned = [
            p
            for p in self.pods
            if p.namespace == meta["namespace"] and selector <= p.labels.items()
        ]
        if not owned:
            return  # not a simulator Deployment: the test runs its process itself
        ready = sum(1 for p in owned if p.process.proc.poll() is None)
        replicas = int(dep["spec"].get("replicas", 1))
        for rs in list_objects(self.kube, api.REPLICASETS):
            if (rs["metadata"].get("ownerReferences") or [{}])[0].get("uid") == meta["uid"]:
                rs_status = {
                    "replicas": replicas,
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                }
                self.kube.update(
                    api.REPLICASETS,
                    meta["namespace"],
                    rs["metadata"]["name"],
                    {"status": rs_status},
                )
        status = {
            "observedGeneration": dep["metadata"].get("generation", 1),
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [
                _condition("Available", "True" if ready else "False"),
                _condition("Progressing", "True"),
            ],
        }
        self.kube.update(api.DEPLOYMENTS, meta["namespace"], meta["name"], {"status": status})


def _answers_200(url: str) -> bool:
    try:
        return http_get(url)[0] == 200
    except OSError:  # not listening yet
        return False


def list_objects(kube: KubeFake, rdef: api.ResourceDef) -> list[Obj]:
    """Every stored object of one kind (copies)."""
    return [json.loads(json.dumps(o)) for k, o in kube.store.items() if k[0] == rdef.key]


def _owner(obj: Obj, api_version: str, kind: str) -> Obj:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _condition(kind: str, status: str, now: str | None = None) -> Obj:
    when = now or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"type": kind, "status": status, "lastTransitionTime": when}


def _field(obj: Obj, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part, {}) if isinstance(value, dict) else {}
    return "" if value == {} else str(value)


def container_env(
    container: Obj, pod: Obj, kube: KubeFake, home: Path, overrides: Mapping[str, str] = {}
) -> dict[str, str]:
    """The container's environment as the kubelet builds it: `envFrom` ConfigMaps, then
    `env` values and `fieldRef`s of `pod`; `HOME` and `/tmp` paths point into `home`
    (the pod's emptyDir), then `overrides`."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef", {})
        cm = kube.get(api.CONFIGMAPS, namespace, ref.get("name", ""))
        assert cm is not None or ref.get("optional"), f"no ConfigMap {ref}"
        env.update({str(k): str(v) for k, v in ((cm or {}).get("data") or {}).items()})
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif "fieldRef" in var.get("valueFrom", {}):
            env[var["name"]] = _field(pod, var["valueFrom"]["fieldRef"]["fieldPath"])
    if env.get("HOME") == "/tmp":
        env["HOME"] = str(home)
    env.update(overrides)
    return env


def metrics_of(pod: FakePod) -> str:
    """A pod's `/metrics` text."""
    with urllib.request.urlopen(f"{pod.url}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


__all__ = [
    "FakeKubelet", "FakePod", "apply", "container_env", "list_objects", "metrics_of", "render",
    "resource_defs",
]  # fmt: skip
