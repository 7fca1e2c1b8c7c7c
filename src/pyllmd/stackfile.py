"""A stack file as plain data: the VariantAutoscalings, Deployments, ConfigMaps and GPU nodes it
declares (pure: no I/O).

`pyllmd up` turns it into simulator processes (`stack/localcluster.py`); `pyllmd simulate` into
engines on a virtual clock (`simulate/cluster.py`). Both read it here, so a stack file means the
same in both. A variant may also carry the manifest of the HorizontalPodAutoscaler (`hpa`) or
KEDA ScaledObject (`scaledObject`) that scales its Deployment on a cluster; `pyllmd simulate`
runs them, `pyllmd up` enacts the autoscaler's decisions directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic

from pyllmd.autoscaler.decide.api import VariantAutoscaling
from pyllmd.autoscaler.decide.model import GpuNode
from pyllmd.core.errors import ConfigError

STACK_KEYS = ("namespace", "variants", "configMaps", "nodes", "gateway", "eppConfig")
"""The top-level keys of a stack file (`gateway` and `eppConfig` are read by the gateway's code)."""
VARIANT_KEYS = ("variantAutoscaling", "deployment", "hpa", "scaledObject")


@dataclass(frozen=True)
class DeploymentSpec:
    """A Deployment whose pods run the simulator with `args`."""

    namespace: str
    name: str
    args: tuple[str, ...]
    replicas: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)
    gpus_per_replica: int = 1
    hpa: Mapping[str, Any] | None = None  # an autoscaling/v2 HorizontalPodAutoscaler
    scaled_object: Mapping[str, Any] | None = None  # a keda.sh/v1alpha1 ScaledObject


@dataclass(frozen=True)
class LocalSpec:
    """What a stack file declares: VAs, their Deployments, nodes, ConfigMaps."""

    vas: tuple[VariantAutoscaling, ...]
    deployments: tuple[DeploymentSpec, ...]
    config_maps: Mapping[tuple[str, str], Mapping[str, str]]
    nodes: tuple[GpuNode, ...] = ()


def parse_local_spec(
    doc: Mapping[str, Any], where: str = "local stack", *, require_va: bool = True
) -> LocalSpec:
    """Validate the stack document into VAs, Deployments, ConfigMaps and nodes; a bad entry is
    a one-line ConfigError naming it. With `require_va` False a variant may omit its
    `variantAutoscaling` (a Deployment of fixed replicas, named by `deployment.name`)."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: the stack file must be a map")
    unknown = sorted(str(k) for k in doc if k not in STACK_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(STACK_KEYS)})")
    namespace = str(doc.get("namespace", "default"))
    vas: list[VariantAutoscaling] = []
    deployments: list[DeploymentSpec] = []
    for i, item in enumerate(_entries(doc, "variants", where)):
        try:
            deployment, va = _variant(item, namespace, require_va)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"{where}: variants[{i}]: {_one_line(e)}") from None
        deployments.append(deployment)
        if va is not None:
            vas.append(va)
    config_maps: dict[tuple[str, str], Mapping[str, str]] = {}
    for i, cm in enumerate(_entries(doc, "configMaps", where)):
        try:
            meta = cm.get("metadata", {})
            key = (str(meta.get("namespace", namespace)), str(meta["name"]))
            config_maps[key] = {str(k): str(v) for k, v in (cm.get("data") or {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"{where}: configMaps[{i}]: {_one_line(e)}") from None
    nodes: list[GpuNode] = []
    for i, n in enumerate(_entries(doc, "nodes", where)):
        try:
            nodes.append(
                GpuNode(str(n["name"]), str(n["vendor"]), str(n["product"]), int(n["count"]))
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{where}: nodes[{i}]: {_one_line(e)}") from None
    if not deployments:
        raise ConfigError(f"{where}: no variants: declare at least one under variants")
    return LocalSpec(tuple(vas), tuple(deployments), config_maps, tuple(nodes))


def _variant(
    item: Mapping[str, Any], namespace: str, require_va: bool
) -> tuple[DeploymentSpec, VariantAutoscaling | None]:
    unknown = sorted(str(k) for k in item if k not in VARIANT_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(VARIANT_KEYS)})")
    va: VariantAutoscaling | None = None
    if require_va or "variantAutoscaling" in item:
        va = VariantAutoscaling.model_validate(item["variantAutoscaling"])
        va.metadata.namespace = va.metadata.namespace or namespace
        namespace = va.metadata.namespace
    dep = item["deployment"]
    name = dep.get("name") or (va.spec.scale_target_ref.name if va is not None else None)
    if not name:
        raise ValueError("deployment.name is required (or variantAutoscaling)")
    scalers = [k for k in ("hpa", "scaledObject") if item.get(k) is not None]
    if len(scalers) > 1:
        raise ValueError("give an hpa or a scaledObject, not both")
    for key in scalers:
        if not isinstance(item[key], Mapping):
            raise ValueError(f"{key} must be a map (the object's manifest)")
    return (
        DeploymentSpec(
            namespace=namespace,
            name=str(name),
            args=tuple(str(a) for a in dep.get("args", ())),
            replicas=int(dep.get("replicas", 1)),
            labels={str(k): str(v) for k, v in (dep.get("labels") or {}).items()},
            gpus_per_replica=int(dep.get("gpusPerReplica", 1)),
            hpa=item.get("hpa"),
            scaled_object=item.get("scaledObject"),
        ),
        va,
    )


def _entries(doc: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = doc.get(key) or []
    if not isinstance(value, list):
        raise ConfigError(f"{where}: {key} must be a list")
    return value


def _one_line(e: Exception) -> str:
    if isinstance(e, pydantic.ValidationError):
        first = e.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        text = f"variantAutoscaling.{where}: {first['msg']}{more}"
    else:
        text = f"missing key {e}" if isinstance(e, KeyError) else str(e)
    return " ".join(text.split())
