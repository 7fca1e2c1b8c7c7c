"""The Kubernetes side of pool-mode EPP e2e tests: the fake API server's objects and a kubeconfig.

One "pod" on 127.0.0.1 carries the simulators as the InferencePool's target
ports (ranks), so `pyllmd epp --pool-name` discovers them without a cluster.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from tests.unit.autoscaler import kubefake_api as api
from tests.unit.autoscaler.kubefake import KubeFake, running_kube

NS = "llm"
GROUP = "inference.networking.x-k8s.io"
OBJECTIVES = api.ResourceDef(GROUP, "v1alpha2", "inferenceobjectives", "InferenceObjective")
REWRITES = api.ResourceDef(GROUP, "v1alpha2", "inferencemodelrewrites", "InferenceModelRewrite")


@asynccontextmanager
async def pool_api() -> AsyncIterator[KubeFake]:
    """The fake API server, with the InferenceObjective and InferenceModelRewrite kinds."""
    async with running_kube(resources=(*api.ALL_RESOURCES, OBJECTIVES, REWRITES)) as fake:
        yield fake


def add_pool(kube: KubeFake, ports: Sequence[int]) -> None:
    """InferencePool `pool` selecting `app=sim`, and one ready pod on 127.0.0.1."""
    kube.create(
        api.INFERENCEPOOLS_V1,
        {
            "metadata": {"name": "pool", "namespace": NS},
            "spec": {
                "selector": {"matchLabels": {"app": "sim"}},
                "targetPorts": [{"number": p} for p in ports],
                "endpointPickerRef": {"name": "epp", "port": {"number": 9002}},
            },
        },
    )
    kube.create(
        api.PODS,
        {
            "metadata": {"name": "sim-0", "namespace": NS, "labels": {"app": "sim"}},
            "spec": {"containers": [{"name": "vllm"}]},
            "status": {
                "phase": "Running",
                "podIP": "127.0.0.1",
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        },
    )


def add_objective(kube: KubeFake, name: str, priority: int) -> None:
    kube.create(
        OBJECTIVES,
        {
            "metadata": {"name": name, "namespace": NS},
            "spec": {"poolRef": {"name": "pool"}, "priority": priority},
        },
    )


def pool_args(kube: KubeFake, directory: Path, *extra: str) -> list[str]:
    """Flags of an EPP reading InferencePool `pool` in NS from the fake API server."""
    kubeconfig = write_kubeconfig(directory, kube.url)
    return ["--pool-name=pool", f"--pool-namespace={NS}", f"--kubeconfig={kubeconfig}", *extra]


def write_kubeconfig(directory: Path, server: str) -> Path:
    """A kubeconfig for the fake API server (no credentials)."""
    path = directory / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: fake\n  cluster:\n    server: {server}\n"
        "users:\n- name: epp\n  user: {}\n"
        "contexts:\n- name: fake\n  context: {cluster: fake, user: epp}\n"
        "current-context: fake\n"
    )
    return path
