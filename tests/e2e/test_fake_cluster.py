"""The llm-d overlay of config/ deployed on a fake cluster: a request routed through
Envoy and the endpoint picker to a simulator pod the InferencePool selects, and a
decision written by the autoscaler.

`kubectl kustomize config/overlays/llm-d` is rendered and every object created in
the fake API server (tests/unit/autoscaler/kubefake.py). The fake kubelet
(tests/e2e/fakekubelet.py) turns the simulator Deployment's replicas into Ready
pods backed by `pyllmd sim` processes started with the container's own args and
environment. The endpoint picker and the autoscaler run with their containers' own
args and environment too; what a test machine must change is all that changes:
listening ports on loopback (`--bind-address`, free ports, `127.0.0.1:<port>` for
the autoscaler's `:8443`/`:8081`), the API server through a kubeconfig, the mounted
ConfigMap's path, the Prometheus URL (a real Prometheus scraping the pods with the
PodMonitor's `namespace` and `pod` labels) and the autoscaler's 60 s period (2 s).
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pyllmd.core.promtext import parse_samples
from tests.e2e.eppgateway import EppGateway
from tests.e2e.fakekubelet import (
    FakeKubelet,
    apply,
    container_env,
    metrics_of,
    render,
    resource_defs,
)
from tests.e2e.harness import LOOPBACK, ManagedProcess, PrometheusServer, free_port
from tests.e2e.kubepool import OBJECTIVES, REWRITES, write_kubeconfig
from tests.unit.autoscaler import kubefake_api as api
from tests.unit.autoscaler.kubefake import KubeFake, running_kube

pytestmark = pytest.mark.e2e

NS = "llm-d"
WVA_NS = "workload-variant-autoscaler-system"
PROM_USER = "system:serviceaccount:monitoring:prometheus"


def _container(kube: KubeFake, namespace: str, name: str) -> dict[str, Any]:
    dep = kube.get(api.DEPLOYMENTS, namespace, name)
    assert dep is not None, f"the overlay has no Deployment {namespace}/{name}"
    container: dict[str, Any] = dep["spec"]["template"]["spec"]["containers"][0]
    return container


def _pod_of(namespace: str, name: str) -> dict[str, Any]:
    """The Pod fields a container's `fieldRef`s read, for a process the test runs itself."""
    return {"metadata": {"namespace": namespace, "name": name}, "status": {"podIP": LOOPBACK}}


def _epp_args(kube: KubeFake, workdir: Path) -> list[str]:
    """The EPP container's args, its ConfigMap volume written to `workdir`."""
    container = _container(kube, NS, "llama-8b-epp")
    assert container["command"] == ["pyllmd", "epp"]
    config_dir = workdir / "epp-config"
    config_dir.mkdir()
    cm = kube.get(api.CONFIGMAPS, NS, "llama-8b-epp")
    assert cm is not None
    for key, text in cm["data"].items():
        (config_dir / key).write_text(text)
    mount = next(
        m["mountPath"] for m in container["volumeMounts"] if m["name"].startswith("plugins")
    )
    return [a.replace(mount, str(config_dir)) for a in container["args"]]


def _autoscaler_args(args: list[str]) -> list[str]:
    """`--*-bind-address=:PORT` on a free loopback port instead."""
    return [
        re.sub(
            r"^(--[\w-]+-bind-address)=:\d+$", lambda m: f"{m.group(1)}={LOOPBACK}:{free_port()}", a
        )
        for a in args
    ]


@pytest.fixture
def processes() -> Iterator[list[ManagedProcess]]:
    started: list[ManagedProcess] = []
    yield started
    for proc in started:
        proc.stop()


async def _wait(
    what: str, check: Callable[[], Any], timeout: float, logs: Callable[[], str]
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}\n{logs()}")


async def test_the_llm_d_overlay_routes_through_the_picker_and_the_autoscaler_decides(
    tmp_path: Path,
    prometheus: Callable[..., PrometheusServer],
    epp_gateway: Callable[..., EppGateway],
    processes: list[ManagedProcess],
) -> None:
    objs = render("overlays/llm-d")
    known = (*api.ALL_RESOURCES, OBJECTIVES, REWRITES)
    async with running_kube(resources=resource_defs(objs, known)) as kube:
        apply(kube, objs)
        kubeconfig = write_kubeconfig(tmp_path, kube.url)
        kube.tokens["prom-token"] = {"username": PROM_USER}
        kube.grants.add((PROM_USER, "/metrics", "get"))
        kubelet = FakeKubelet(kube, tmp_path)
        gw: EppGateway | None = None
        try:
            pods = await kubelet.start()
            sim = _container(kube, NS, "sim-llama-8b-a100")
            assert len(pods) == 2  # the Deployment's replicas
            for pod in pods:  # the kubelet's objects have the real shapes
                obj = kube.get(api.PODS, NS, pod.name)
                assert obj is not None
                assert {"type": "Ready", "status": "True"}.items() <= obj["status"]["conditions"][
                    -1
                ].items()
                assert obj["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
                assert obj["spec"]["containers"][0]["args"] == sim["args"]

            # A real Prometheus scrapes the pods with the PodMonitor's target labels.
            targets = {f"{p.ip}:{p.port}": {"namespace": NS, "pod": p.name} for p in pods}
            prom = prometheus(list(targets), tls=True, target_labels=targets)

            # The endpoint picker: its container's args, the fake API server, Envoy in front.
            epp = _container(kube, NS, "llama-8b-epp")
            epp_env = container_env(epp, _pod_of(NS, "llama-8b-epp-0"), kube, tmp_path)
            gw = epp_gateway(*_epp_args(kube, tmp_path), f"--kubeconfig={kubeconfig}", env=epp_env)
            await gw.start(ready_pods=2, token="prom-token")
            model = next(a.split("=", 1)[1] for a in sim["args"] if a.startswith("--model="))
            reply = await gw.client.completions.create(model=model, prompt="hello", max_tokens=3)
            assert reply.choices[0].text
            served = {
                p.name: sum(
                    s.value
                    for s in parse_samples(await asyncio.to_thread(metrics_of, p))
                    if s.name == "vllm:request_success_total"
                )
                for p in pods
            }
            assert sorted(served.values()) == [0, 1], served
            (pod_name,) = [name for name, n in served.items() if n == 1]
            pool = kube.get(api.INFERENCEPOOLS_V1, NS, "llama-8b")
            assert pool is not None
            labels = next(p.labels for p in pods if p.name == pod_name)
            assert pool["spec"]["selector"]["matchLabels"].items() <= labels.items()

            # The autoscaler: its container's args and environment (ConfigMap included).
            wva = _container(kube, WVA_NS, "workload-variant-autoscaler-controller-manager")
            assert wva["command"] == ["pyllmd", "autoscaler"]
            token = tmp_path / "token"
            token.write_text("prom-token")
            wva_env = container_env(
                wva,
                _pod_of(WVA_NS, "wva-0"),
                kube,
                tmp_path,
                {
                    "KUBECONFIG": str(kubeconfig),
                    "PROMETHEUS_BASE_URL": prom.url,
                    "PROMETHEUS_TOKEN_PATH": str(token),
                    "GLOBAL_OPT_INTERVAL": "2s",
                },
            )
            argv = [sys.executable, "-m", "pyllmd", "autoscaler", *_autoscaler_args(wva["args"])]
            autoscaler = ManagedProcess("pyllmd-autoscaler", argv, wva_env)
            processes.append(autoscaler)

            def decided() -> Any:
                va = kube.get(api.VARIANT_AUTOSCALINGS, NS, "sim-llama-8b-a100")
                assert va is not None
                return (va.get("status") or {}).get("desiredOptimizedAlloc")

            alloc = await _wait(
                "the VariantAutoscaling's decision", decided, 90, autoscaler.describe
            )
            assert alloc["numReplicas"] >= 1, alloc
            assert alloc["accelerator"] == "A100"
        except BaseException:
            print(kubelet.describe())
            raise
        finally:
            kubelet.close()
            kube.drop_watches()  # the watches of the stopped clients end now


@pytest.mark.parametrize("overlay", ["overlays/llm-d", "overlays/pd", "overlays/scale-to-zero"])
async def test_every_overlay_is_served_by_the_fake_api_server(overlay: str) -> None:
    """Every rendered object goes in, and a list of its kind over HTTP gives it back."""
    objs = render(overlay)
    known = (*api.ALL_RESOURCES, OBJECTIVES, REWRITES)
    async with running_kube(resources=resource_defs(objs, known)) as kube:
        apply(kube, objs)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            for obj in objs:
                rdef = next(d for d in kube.defs.values() if d.kind == obj["kind"]
                            and d.api_version == obj["apiVersion"])  # fmt: skip
                ns = obj["metadata"].get("namespace")
                prefix = "/api/v1" if not rdef.group else f"/apis/{rdef.api_version}"
                path = (
                    f"{prefix}/namespaces/{ns}/{rdef.plural}" if ns else f"{prefix}/{rdef.plural}"
                )
                async with http.get(kube.url + path) as resp:
                    assert resp.status == 200, (path, await resp.text())
                    names = [o["metadata"]["name"] for o in (await resp.json())["items"]]
                assert obj["metadata"]["name"] in names, path
