"""Kubernetes objects (as JSON dicts) turned into the autoscaler's own types; pure.

Kept apart from `cluster.py` so the parsing rules (spec §3.2, §3.3, §6.3) are
testable without an API server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from pyllmd.autoscaler.decide.api import VariantAutoscaling
from pyllmd.autoscaler.decide.cycle import target_key
from pyllmd.autoscaler.decide.model import Container, GpuNode, PodInfo, Workload

log = logging.getLogger(__name__)

GPU_VENDORS = ("nvidia.com", "amd.com", "intel.com")
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"


def targets_index(vas: Iterable[VariantAutoscaling]) -> dict[str, str]:
    """Target key → VA name; targets claimed by more than one VA are left out (ambiguous)."""
    owners: dict[str, list[str]] = {}
    for va in vas:
        key = target_key(va.metadata.namespace, va.spec.scale_target_ref)
        owners.setdefault(key, []).append(va.metadata.name)
    return {key: names[0] for key, names in owners.items() if len(names) == 1}


def _quantity(value: Any) -> int:
    """A whole-unit quantity such as `1`, `"2"`, `"1000m"`; unparsable counts as 0."""
    text = str(value).strip()
    try:
        if text.endswith("m"):
            return int(float(text[:-1]) / 1000)
        return int(float(text))
    except ValueError:
        return 0


def _gpus(resources: Mapping[str, Any]) -> int:
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    total = 0
    for vendor in GPU_VENDORS:
        key = f"{vendor}/gpu"
        total += _quantity(requests[key] if key in requests else limits.get(key, 0))
    return total


def _container(c: Mapping[str, Any]) -> Container:
    env = {e["name"]: str(e["value"]) for e in c.get("env") or [] if "value" in e}
    return Container(
        command=tuple(c.get("command") or ()),
        args=tuple(c.get("args") or ()),
        env=env,
        gpu_requests=_gpus(c.get("resources") or {}),
    )


def _template_containers(template: Mapping[str, Any]) -> tuple[Container, ...]:
    return tuple(_container(c) for c in (template.get("spec") or {}).get("containers") or [])


def workload_from_object(obj: Mapping[str, Any]) -> Workload:
    """A Deployment (or LeaderWorkerSet) JSON object as a `Workload`."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    if obj.get("kind") == "LeaderWorkerSet":
        lwt = spec.get("leaderWorkerTemplate") or {}
        worker = lwt.get("workerTemplate") or {}
        leader = lwt.get("leaderTemplate") or worker
        size = int(lwt.get("size") or 1)
        containers = _template_containers(leader) + _template_containers(worker) * (size - 1)
        labels = (worker.get("metadata") or {}).get("labels") or {}
    else:
        template = spec.get("template") or {}
        containers = _template_containers(template)
        labels = (template.get("metadata") or {}).get("labels") or {}
    replicas = spec.get("replicas")
    return Workload(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        spec_replicas=int(replicas) if replicas is not None else None,
        status_replicas=int(status.get("replicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        template_labels=dict(labels),
        containers=containers,
        deleting=bool(meta.get("deletionTimestamp")),
    )


def gpu_nodes_from(nodes: Iterable[Mapping[str, Any]]) -> list[GpuNode]:
    """GPU inventory entries: one per node and vendor with a product label and GPUs."""
    found: list[GpuNode] = []
    for node in nodes:
        labels = (node.get("metadata") or {}).get("labels") or {}
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        for vendor in GPU_VENDORS:
            product = labels.get(f"{vendor}/gpu.product")
            count = _quantity(allocatable.get(f"{vendor}/gpu", 0))
            if product and count > 0:
                name = node["metadata"]["name"]
                found.append(GpuNode(name=name, vendor=vendor, product=product, count=count))
    return found


def _timestamp(value: Any) -> float | None:
    """A `metav1.Time` (RFC 3339) as Unix seconds; None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def ready_since(pod: Mapping[str, Any]) -> float | None:
    """When a Ready pod last became Ready; None when it is not Ready.

    The `Ready` condition's `lastTransitionTime`, else `status.startTime`, else
    `metadata.creationTimestamp` (all the API server has for a pod).
    """
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") != "Ready":
            continue
        if cond.get("status") != "True":
            return None
        meta = pod.get("metadata") or {}
        for value in (
            cond.get("lastTransitionTime"),
            status.get("startTime"),
            meta.get("creationTimestamp"),
        ):
            if (when := _timestamp(value)) is not None:
                return when
        return None
    return None


def pod_infos(
    pods: Iterable[Mapping[str, Any]], replicasets: Iterable[Mapping[str, Any]]
) -> list[PodInfo]:
    """Pods owned by a workload (Pod → ReplicaSet → Deployment, or a LeaderWorkerSet label)."""

    def controller(obj: Mapping[str, Any], kind: str) -> str | None:
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == kind:
                return str(ref["name"])
        return None

    rs_owner = {rs["metadata"]["name"]: controller(rs, "Deployment") for rs in replicasets}
    result: list[PodInfo] = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        rs = controller(pod, "ReplicaSet")
        owner = rs_owner.get(rs) if rs else (meta.get("labels") or {}).get(LWS_NAME_LABEL)
        if owner:
            result.append(PodInfo(meta["name"], owner, ready_since(pod)))
    return result


def parse_va(obj: Mapping[str, Any]) -> VariantAutoscaling | None:
    """A VA object, or None (logged) when it fails the CRD schema."""
    try:
        return VariantAutoscaling.model_validate(obj)
    except ValidationError as err:
        meta = obj.get("metadata") or {}
        log.warning(
            "skipping invalid VariantAutoscaling %s/%s: %s",
            meta.get("namespace"),
            meta.get("name"),
            err,
        )
        return None
