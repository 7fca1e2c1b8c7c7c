"""The Kubernetes API semantics the fake server needs, as pure functions.

Resource definitions, URL routing, label/field selectors, the three patch
flavours, Scale objects, Status errors and server-side Table printing. These
are hand-written because kmock's emulator stores objects as plain merged
dicts (no selectors, no resourceVersion, PUT is not a replace, subresources
are not special) and the fake must speak the real API shapes.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

import jsonpatch

Obj = dict[str, Any]


@dataclass(frozen=True)
class PrinterColumn:
    """An `additionalPrinterColumns` entry of a CRD."""

    name: str
    type: str
    json_path: str


@dataclass(frozen=True)
class ResourceDef:
    """One served resource: identity, discovery data, subresources."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    printer_columns: tuple[PrinterColumn, ...] = ()
    # scale subresource: where replicas live and where the selector comes from
    label_selector_path: str = "spec.selector"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        return f"{self.api_version}/{self.plural}"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def qualified(self) -> str:
        """`deployments.apps`, `pods` — the form used in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


VA_COLUMNS = (
    PrinterColumn("Target", "string", ".spec.scaleTargetRef.name"),
    PrinterColumn("Model", "string", ".spec.modelID"),
    PrinterColumn("Optimized", "string", ".status.desiredOptimizedAlloc.numReplicas"),
    PrinterColumn(
        "MetricsReady", "string", ".status.conditions[?(@.type=='MetricsAvailable')].status"
    ),
    PrinterColumn("Age", "date", ".metadata.creationTimestamp"),
)

VARIANT_AUTOSCALINGS = ResourceDef(
    "llmd.ai",
    "v1alpha1",
    "variantautoscalings",
    "VariantAutoscaling",
    short_names=("va",),
    subresources=("status",),
    printer_columns=VA_COLUMNS,
)
DEPLOYMENTS = ResourceDef(
    "apps",
    "v1",
    "deployments",
    "Deployment",
    short_names=("deploy",),
    subresources=("status", "scale"),
)
REPLICASETS = ResourceDef(
    "apps", "v1", "replicasets", "ReplicaSet", short_names=("rs",), subresources=("status", "scale")
)
LEADERWORKERSETS = ResourceDef(
    "leaderworkerset.x-k8s.io",
    "v1",
    "leaderworkersets",
    "LeaderWorkerSet",
    short_names=("lws",),
    subresources=("status", "scale"),
    label_selector_path="status.hpaPodSelector",
)
PODS = ResourceDef("", "v1", "pods", "Pod", short_names=("po",), subresources=("status",))
NODES = ResourceDef("", "v1", "nodes", "Node", namespaced=False, short_names=("no",))
CONFIGMAPS = ResourceDef("", "v1", "configmaps", "ConfigMap", short_names=("cm",))
NAMESPACES = ResourceDef(
    "",
    "v1",
    "namespaces",
    "Namespace",
    namespaced=False,
    short_names=("ns",),
    subresources=("status",),
)
SERVICES = ResourceDef("", "v1", "services", "Service", short_names=("svc",))
INFERENCEPOOLS_V1 = ResourceDef(
    "inference.networking.k8s.io", "v1", "inferencepools", "InferencePool", subresources=("status",)
)
INFERENCEPOOLS_V1ALPHA2 = ResourceDef(
    "inference.networking.x-k8s.io",
    "v1alpha2",
    "inferencepools",
    "InferencePool",
    subresources=("status",),
)
LEASES = ResourceDef("coordination.k8s.io", "v1", "leases", "Lease")
TOKENREVIEWS = ResourceDef(
    "authentication.k8s.io", "v1", "tokenreviews", "TokenReview", namespaced=False
)
SUBJECTACCESSREVIEWS = ResourceDef(
    "authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", namespaced=False
)
CRDS = ResourceDef(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    namespaced=False,
    short_names=("crd",),
)

ALL_RESOURCES = (
    VARIANT_AUTOSCALINGS,
    DEPLOYMENTS,
    REPLICASETS,
    LEADERWORKERSETS,
    PODS,
    NODES,
    CONFIGMAPS,
    NAMESPACES,
    SERVICES,
    INFERENCEPOOLS_V1,
    INFERENCEPOOLS_V1ALPHA2,
    LEASES,
    CRDS,
    TOKENREVIEWS,
    SUBJECTACCESSREVIEWS,
)


class ApiStatusError(Exception):
    """An error the server answers with a `v1 Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> Obj:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def not_found(rdef: ResourceDef, name: str) -> ApiStatusError:
    details = {"name": name, "group": rdef.group, "kind": rdef.plural}
    return ApiStatusError(404, "NotFound", f'{rdef.qualified} "{name}" not found', details)


def already_exists(rdef: ResourceDef, name: str) -> ApiStatusError:
    details = {"name": name, "group": rdef.group, "kind": rdef.plural}
    msg = f'{rdef.qualified} "{name}" already exists'
    return ApiStatusError(409, "AlreadyExists", msg, details)


def conflict(rdef: ResourceDef, name: str) -> ApiStatusError:
    details = {"name": name, "group": rdef.group, "kind": rdef.plural}
    msg = (
        f'Operation cannot be fulfilled on {rdef.qualified} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )
    return ApiStatusError(409, "Conflict", msg, details)


@dataclass(frozen=True)
class Route:
    """A parsed resource URL."""

    rdef: ResourceDef
    namespace: str | None
    name: str | None
    subresource: str | None


def route(path: str, resources: dict[tuple[str, str, str], ResourceDef]) -> Route | None:
    """Map an API path to a served resource; None for discovery and non-API paths."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces" and (group, version, rest[2]) in resources:
        namespace, rest = rest[1], rest[2:]
    rdef = resources.get((group, version, rest[0]))
    if rdef is None or len(rest) > 3:
        raise ApiStatusError(404, "NotFound", "the server could not find the requested resource")
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and sub not in rdef.subresources:
        raise ApiStatusError(404, "NotFound", "the server could not find the requested resource")
    return Route(rdef, namespace, name, sub)


# -- selectors --------------------------------------------------------------------------------

_SET_RE = re.compile(r"^\s*(!?)([\w./-]+)\s*(?:(in|notin)\s*\((.*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)\s*$")


def _split_terms(selector: str) -> list[str]:
    terms, depth, cur = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    terms.append(cur)
    return [t for t in terms if t.strip()]


def label_match(selector: str, labels: dict[str, str]) -> bool:
    """Evaluate a label selector string (equality and set-based terms)."""
    for term in _split_terms(selector):
        eq = _EQ_RE.match(term)
        if eq is not None:
            key, op, value = eq.groups()
            if (labels.get(key) == value) != (op != "!="):
                return False
            continue
        m = _SET_RE.match(term)
        if m is None:
            raise ApiStatusError(400, "BadRequest", f"unable to parse requirement: {term!r}")
        neg, key, op, values = m.groups()
        if op is None:
            if (key in labels) == bool(neg):
                return False
            continue
        wanted = {v.strip() for v in values.split(",")}
        if (labels.get(key) in wanted) != (op == "in"):
            return False
    return True


def field_match(selector: str, obj: Obj) -> bool:
    """Evaluate a field selector (`metadata.name=x,metadata.namespace!=y`)."""
    for term in _split_terms(selector):
        eq = _EQ_RE.match(term)
        if eq is None:
            raise ApiStatusError(400, "BadRequest", f"invalid field selector: {term!r}")
        path, op, value = eq.groups()
        actual = get_path(obj, path)
        if (str(actual) if actual is not None else "") == value and op == "!=":
            return False
        if (str(actual) if actual is not None else "") != value and op != "!=":
            return False
    return True


def get_path(obj: Any, dotted: str) -> Any:
    """`a.b.c` lookup in nested dicts; None when absent."""
    for part in dotted.strip(".").split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


# -- patches ----------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: null deletes, objects merge, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_MERGE_KEYS = ("name", "type", "uid", "containerPort")


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """An approximation of strategic merge: lists of keyed objects merge by their key."""
    if isinstance(patch, list) and isinstance(target, list):
        key = next(
            (
                k
                for k in _MERGE_KEYS
                if patch and all(isinstance(i, dict) and k in i for i in patch)
            ),
            None,
        )
        if key is None or not all(isinstance(i, dict) and key in i for i in target):
            return copy.deepcopy(patch)
        merged = [copy.deepcopy(i) for i in target]
        for item in patch:
            idx = next((n for n, t in enumerate(merged) if t[key] == item[key]), None)
            if idx is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[idx] = strategic_merge_patch(merged[idx], item)
        return merged
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # directives ($patch, $retainKeys) are not emulated
        if value is None:
            result.pop(key, None)
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def apply_patch(obj: Obj, content_type: str, body: Any) -> Obj:
    """Apply a PATCH body by its content type, as the API server does."""
    ctype = content_type.split(";")[0].strip()
    if ctype == "application/merge-patch+json":
        patched = merge_patch(obj, body)
    elif ctype == "application/strategic-merge-patch+json":
        patched = strategic_merge_patch(obj, body)
    elif ctype == "application/json-patch+json":
        try:
            patched = jsonpatch.apply_patch(obj, body)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise ApiStatusError(422, "Invalid", f"json patch failed: {exc}") from exc
    else:
        msg = f"the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {ctype})"  # noqa: E501
        raise ApiStatusError(415, "UnsupportedMediaType", msg)
    if not isinstance(patched, dict):
        raise ApiStatusError(422, "Invalid", "patch did not produce an object")
    return patched


# -- scale ------------------------------------------------------------------------------------


def selector_string(selector: Any) -> str:
    """A LabelSelector (or a string already) as the `status.selector` string of a Scale."""
    if isinstance(selector, str):
        return selector
    if not isinstance(selector, dict):
        return ""
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        values = ",".join(expr.get("values") or [])
        op = {"In": "in", "NotIn": "notin"}.get(expr.get("operator", ""))
        if op:
            terms.append(f"{expr['key']} {op} ({values})")
        elif expr.get("operator") == "Exists":
            terms.append(expr["key"])
        else:
            terms.append(f"!{expr['key']}")
    return ",".join(terms)


def scale_of(rdef: ResourceDef, obj: Obj) -> Obj:
    """The `autoscaling/v1 Scale` view of a scalable object."""
    meta = obj["metadata"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": int(get_path(obj, "spec.replicas") or 0)},
        "status": {
            "replicas": int(get_path(obj, "status.replicas") or 0),
            "selector": selector_string(get_path(obj, rdef.label_selector_path)),
        },
    }


# -- server-side printing -----------------------------------------------------------------


_FILTER_RE = re.compile(r"^(.*?)\[\?\(@\.(\w+)==['\"](.*)['\"]\)\](.*)$")


def json_path(obj: Obj, path: str) -> Any:
    """The JSONPath subset CRD printer columns use: dotted paths and one equality filter."""
    m = _FILTER_RE.match(path)
    if m is None:
        return get_path(obj, path)
    head, key, value, tail = m.groups()
    items = get_path(obj, head) or []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and str(item.get(key)) == value:
            return get_path(item, tail) if tail else item
    return None


def human_duration(seconds: float) -> str:
    """kubectl's age format (`45s`, `3m20s`, `5h`, `2d`)."""
    s = int(seconds)
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 48:
        return f"{h}h"
    return f"{h // 24}d"


def table(rdef: ResourceDef, objs: list[Obj], rv: str, now: float, parse_ts: Any) -> Obj:
    """A `meta.k8s.io/v1 Table` (what `kubectl get` asks for) of `objs`."""
    columns = rdef.printer_columns or (PrinterColumn("Age", "date", ".metadata.creationTimestamp"),)
    defs = [{"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}]
    defs += [
        {"name": c.name, "type": c.type, "format": "", "description": "", "priority": 0}
        for c in columns
    ]
    rows = []
    for obj in objs:
        cells: list[Any] = [obj["metadata"]["name"]]
        for col in columns:
            value = json_path(obj, col.json_path)
            if col.type == "date" and isinstance(value, str):
                value = human_duration(now - parse_ts(value))
            cells.append(value)
        meta = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1"}
        rows.append({"cells": cells, "object": {**meta, "metadata": obj["metadata"]}})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": defs,
        "rows": rows,
    }


@dataclass
class ApiCall:
    """One request that reached a resource path (for assertions)."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    content_type: str = ""
    body: Any = None
