"""Helpers that put realistic objects into the fake API server's store.

A Deployment comes with its ReplicaSet and Pods, owned through controller
ownerReferences and named the way the Deployment controller names them.
"""

from __future__ import annotations

import copy
import uuid

from tests.unit.autoscaler import kubefake_api as api
from tests.unit.autoscaler.kubefake_api import Obj, ResourceDef


class ObjectBuilders:
    """Mixed into `KubeFake`; relies on its `create`, `update`, `get` and `store`."""

    store: dict[tuple[str, str, str], Obj]

    def create(self, rdef: ResourceDef, body: Obj) -> Obj:
        raise NotImplementedError

    def update(self, rdef: ResourceDef, namespace: str | None, name: str, patch: Obj) -> Obj:
        raise NotImplementedError

    def get(self, rdef: ResourceDef, namespace: str | None, name: str) -> Obj | None:
        raise NotImplementedError

    def add_namespace(
        self,
        name: str,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> Obj:
        meta = {"name": name, "labels": labels or {}, "annotations": annotations or {}}
        return self.create(api.NAMESPACES, {"metadata": meta, "status": {"phase": "Active"}})

    def add_config_map(self, namespace: str, name: str, data: dict[str, str]) -> Obj:
        return self.create(
            api.CONFIGMAPS, {"metadata": {"name": name, "namespace": namespace}, "data": data}
        )

    def add_node(
        self,
        name: str,
        labels: dict[str, str] | None = None,
        allocatable: dict[str, str] | None = None,
    ) -> Obj:
        return self.create(
            api.NODES,
            {
                "metadata": {"name": name, "labels": labels or {}},
                "status": {"allocatable": allocatable or {}},
            },
        )

    def add_gpu_node(
        self, name: str, product: str, count: int, vendor: str = "nvidia.com", **labels: str
    ) -> Obj:
        all_labels = {f"{vendor}/gpu.product": product, **labels}
        return self.add_node(name, all_labels, {f"{vendor}/gpu": str(count), "cpu": "32"})

    def add_va(
        self,
        namespace: str,
        name: str,
        *,
        target: str | None = None,
        model_id: str = "meta-llama/Llama-3.1-8B",
        accelerator: str | None = "A100",
        cost: str | None = None,
        labels: dict[str, str] | None = None,
        kind: str = "Deployment",
        api_version: str = "apps/v1",
    ) -> Obj:
        """A VariantAutoscaling targeting `target` (default: same name)."""
        all_labels = dict(labels or {})
        if accelerator:
            all_labels["inference.optimization/acceleratorName"] = accelerator
        spec: Obj = {
            "scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": target or name},
            "modelID": model_id,
        }
        spec["variantCost"] = cost if cost is not None else "10.0"
        meta = {"name": name, "namespace": namespace, "labels": all_labels}
        return self.create(api.VARIANT_AUTOSCALINGS, {"metadata": meta, "spec": spec})

    def add_deployment(
        self,
        namespace: str,
        name: str,
        replicas: int = 1,
        *,
        ready: int | None = None,
        labels: dict[str, str] | None = None,
        containers: list[Obj] | None = None,
        pods: int | None = None,
    ) -> Obj:
        """A Deployment, its ReplicaSet and `pods` (default `replicas`) Pods, owned as for real."""
        tmpl_labels = {"app": name, **(labels or {})}
        template = {
            "metadata": {"labels": tmpl_labels},
            "spec": {"containers": containers or [{"name": "vllm", "image": "vllm/vllm-openai"}]},
        }
        dep = self.create(
            api.DEPLOYMENTS,
            {
                "metadata": {"name": name, "namespace": namespace, "labels": dict(tmpl_labels)},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": dict(tmpl_labels)},
                    "template": template,
                },
            },
        )
        n = replicas if pods is None else pods
        self.set_deployment_status(
            namespace, name, replicas=n, ready_replicas=n if ready is None else ready
        )
        pod_hash = uuid.uuid5(uuid.NAMESPACE_DNS, f"{namespace}/{name}").hex[:10]
        rs_name = f"{name}-{pod_hash}"
        rs = self.create(
            api.REPLICASETS,
            {
                "metadata": {
                    "name": rs_name,
                    "namespace": namespace,
                    "labels": {**tmpl_labels, "pod-template-hash": pod_hash},
                    "ownerReferences": [_owner(dep)],
                },
                "spec": {"replicas": replicas, "template": template},
                "status": {"replicas": n},
            },
        )
        for i in range(n):
            self.add_pod(
                namespace,
                f"{rs_name}-{uuid.uuid5(uuid.NAMESPACE_DNS, f'{rs_name}{i}').hex[:5]}",
                owner=rs,
                labels={**tmpl_labels, "pod-template-hash": pod_hash},
                spec=template["spec"],
            )
        return self.get(api.DEPLOYMENTS, namespace, name) or dep

    def add_pod(
        self,
        namespace: str,
        name: str,
        *,
        owner: Obj | None = None,
        labels: dict[str, str] | None = None,
        spec: Obj | None = None,
    ) -> Obj:
        meta: Obj = {"name": name, "namespace": namespace, "labels": labels or {}}
        if owner is not None:
            meta["ownerReferences"] = [_owner(owner)]
        spec = copy.deepcopy(spec or {"containers": [{"name": "main", "image": "busybox"}]})
        return self.create(
            api.PODS, {"metadata": meta, "spec": spec, "status": {"phase": "Running"}}
        )

    def pods_of(self, namespace: str, deployment: str) -> list[str]:
        """Names of the pods created for `deployment` by `add_deployment`."""
        prefix = f"{deployment}-"
        return sorted(
            name
            for (key, ns, name) in self.store
            if key == api.PODS.key and ns == namespace and name.startswith(prefix)
        )

    def set_deployment_status(
        self,
        namespace: str,
        name: str,
        *,
        replicas: int | None = None,
        ready_replicas: int | None = None,
    ) -> Obj:
        status: Obj = {}
        if replicas is not None:
            status["replicas"] = replicas
        if ready_replicas is not None:
            status["readyReplicas"] = ready_replicas
        return self.update(api.DEPLOYMENTS, namespace, name, {"status": status})


def _owner(obj: Obj) -> Obj:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
