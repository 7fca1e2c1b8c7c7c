"""The VariantAutoscaling API (`llmd.ai/v1alpha1`): typed models of the CRD's objects.

Field names are the Go JSON names (camelCase aliases), so objects read from
and written to the Kubernetes API (or YAML files in local mode) round-trip
unchanged. Validation mirrors the CRD's OpenAPI schema, because the fake API
server used in tests (and a cluster without the CRD installed) does not
validate for us.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pyllmd.core.gosyntax import quote_go

GROUP = "llmd.ai"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "VariantAutoscaling"
PLURAL = "variantautoscalings"
SINGULAR = "variantautoscaling"
SHORT_NAME = "va"

ACCELERATOR_LABEL = "inference.optimization/acceleratorName"
CONTROLLER_INSTANCE_LABEL = "wva.llmd.ai/controller-instance"
CONFIG_ENABLED_LABEL = "wva.llmd.ai/config-enabled"
EXCLUDE_ANNOTATION = "wva.llmd.ai/exclude"

DEFAULT_VARIANT_COST_TEXT = "10.0"
VARIANT_COST_PATTERN = r"^\d+(\.\d+)?$"

# Condition types (spec §1.3).
TYPE_TARGET_RESOLVED = "TargetResolved"
TYPE_METRICS_AVAILABLE = "MetricsAvailable"
TYPE_OPTIMIZATION_READY = "OptimizationReady"

# Condition statuses.
STATUS_TRUE = "True"
STATUS_FALSE = "False"
STATUS_UNKNOWN = "Unknown"

# Reasons of TargetResolved.
REASON_TARGET_FOUND = "TargetFound"
REASON_TARGET_NOT_FOUND = "TargetNotFound"
# Reasons of MetricsAvailable.
REASON_METRICS_FOUND = "MetricsFound"
REASON_METRICS_MISSING = "MetricsMissing"
REASON_METRICS_STALE = "MetricsStale"
REASON_PROMETHEUS_ERROR = "PrometheusError"
REASON_SCALE_FROM_ZERO = "ScaleFromZero"
# Reasons of OptimizationReady.
REASON_OPTIMIZATION_SUCCEEDED = "OptimizationSucceeded"
REASON_OPTIMIZATION_FAILED = "OptimizationFailed"
REASON_METRICS_UNAVAILABLE = "MetricsUnavailable"
REASON_INVALID_CONFIGURATION = "InvalidConfiguration"
REASON_SKIPPED_PROCESSING = "SkippedProcessing"
REASON_SCALE_FROM_ZERO_MODE = "ScaleFromZeroMode"
REASON_SATURATION_ONLY_MODE = "SaturationOnlyMode"
REASON_SATURATION_SAFETY_OVERRIDE = "SaturationSafetyOverride"

# Condition messages (the texts users grep for).
MESSAGE_METRICS_FOUND = "Saturation metrics data is available for scaling decisions"
MESSAGE_METRICS_MISSING = (
    "No saturation metrics available - pods may not be ready or metrics not yet scraped"
)
MESSAGE_SCALED_FROM_ZERO = "Scaled from zero due to pending requests"
MESSAGE_SCALE_FROM_ZERO_MODE = (
    "scalefromzero decision: scalefromzero mode: pending request - scale-up"
)
MESSAGE_NO_SCALING_CHANGE = "Optimization loop ran (no scaling change needed)"


def message_target_found(name: str) -> str:
    """`TargetResolved=True` message."""
    return f"Scale target Deployment {name} found"


def message_target_not_found(name: str) -> str:
    """`TargetResolved=False` message."""
    return f"Scale target Deployment {name} not found"


def message_saturation_only(reason: str, target: int) -> str:
    """`OptimizationReady=True/SaturationOnlyMode` message."""
    return f"saturation-only decision: {reason} (target: {target} replicas)"


class ApiModel(BaseModel):
    """Base of the API models: camelCase aliases, unknown fields kept (forward compatible)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")


class ObjectMeta(ApiModel):
    """The subset of Kubernetes `metadata` the controller uses."""

    name: str = ""
    namespace: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int = 0
    resource_version: str = Field("", alias="resourceVersion")
    uid: str = ""
    creation_timestamp: str | None = Field(None, alias="creationTimestamp")
    deletion_timestamp: str | None = Field(None, alias="deletionTimestamp")


class CrossVersionObjectReference(ApiModel):
    """`spec.scaleTargetRef`: the workload to scale (same shape as an HPA's)."""

    api_version: str = Field("", alias="apiVersion")
    kind: str
    name: str


class VariantAutoscalingSpec(ApiModel):
    """`spec` of a VariantAutoscaling."""

    scale_target_ref: CrossVersionObjectReference = Field(alias="scaleTargetRef")
    model_id: str = Field(alias="modelID")
    variant_cost: str = Field("10.0", alias="variantCost")


class OptimizedAlloc(ApiModel):
    """`status.desiredOptimizedAlloc`: the latest decision."""

    last_run_time: str | None = Field(None, alias="lastRunTime")
    accelerator: str = ""
    num_replicas: int = Field(0, alias="numReplicas")


class ActuationStatus(ApiModel):
    """`status.actuation`."""

    applied: bool = False


class Condition(ApiModel):
    """A standard `metav1.Condition`."""

    type: str
    status: str
    observed_generation: int = Field(0, alias="observedGeneration")
    last_transition_time: str = Field("", alias="lastTransitionTime")
    reason: str = ""
    message: str = ""


class VariantAutoscalingStatus(ApiModel):
    """`status` of a VariantAutoscaling."""

    desired_optimized_alloc: OptimizedAlloc | None = Field(None, alias="desiredOptimizedAlloc")
    actuation: ActuationStatus | None = None
    conditions: list[Condition] = Field(default_factory=list)


class VariantAutoscaling(ApiModel):
    """A VariantAutoscaling object."""

    api_version: str = Field(API_VERSION, alias="apiVersion")
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: VariantAutoscalingSpec
    status: VariantAutoscalingStatus = Field(default_factory=VariantAutoscalingStatus)

    def to_json(self) -> dict[str, Any]:
        """The object as the API server stores it (camelCase, no unset optionals)."""
        return self.model_dump(by_alias=True, exclude_none=True)


# ---------------------------------------------------------------- conditions and time


def rfc3339(dt: datetime) -> str:
    """`metav1.Time` text: UTC, whole seconds, `Z` suffix (a naive datetime is taken as UTC)."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    """The condition of that type, if present."""
    return next((c for c in conditions if c.type == type_), None)


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
    now_rfc3339: str,
) -> list[Condition]:
    """A new list with the condition set, as Kubernetes' `meta.SetStatusCondition` does:
    the entry of the same type is replaced in place, `lastTransitionTime` moves to now
    only when the condition is new or its status changed. The input is not modified
    (conditions are treated as immutable, so untouched ones are shared, not copied)."""
    result: list[Condition] = []
    found = False
    for cond in conditions:
        if cond.type != type_:
            result.append(cond)
            continue
        found = True
        if (cond.status, cond.reason, cond.message, cond.observed_generation) == (
            status,
            reason,
            message,
            generation,
        ):
            result.append(cond)  # unchanged: the steady state of most cycles
            continue
        since = now_rfc3339 if cond.status != status else cond.last_transition_time
        result.append(_condition(type_, status, generation, since, reason, message))
    if not found:
        result.append(_condition(type_, status, generation, now_rfc3339, reason, message))
    return result


def _condition(
    type_: str, status: str, generation: int, since: str, reason: str, message: str
) -> Condition:
    # model_construct: the values are ours and already valid; validation costs ~10 µs each
    return Condition.model_construct(
        type=type_,
        status=status,
        observed_generation=generation,
        last_transition_time=since,
        reason=reason,
        message=message,
    )


# ---------------------------------------------------------------- schema validation


class InvalidObject(ValueError):
    """The object breaks the CRD's OpenAPI schema; `message` is the API server's 422 text."""

    def __init__(self, message: str, causes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.causes = causes


_CONDITION_TYPE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
_CONDITION_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


class _Checker:
    """Collects field errors in the API server's wording (`field.ErrorList` strings)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def typed(self, obj: Mapping[str, Any], key: str, path: str, want: str) -> Any:
        """The value if present and of JSON type `want`, else None (recording a type error)."""
        if key not in obj:
            return None
        value = obj[key]
        got = _json_type(value)
        if got != want:
            self.errors.append(
                f"{path}: Invalid value: {quote_go(got)}: "
                f"{path} in body must be of type {want}: {quote_go(got)}"
            )
            return None
        return value

    def min_length(self, value: str | None, path: str, n: int) -> None:
        if value is not None and len(value) < n:
            self.errors.append(
                f"{path}: Invalid value: {quote_go(value)}: "
                f"{path} in body should be at least {n} chars long"
            )

    def pattern(self, value: str | None, path: str, regex: str) -> None:
        if value is not None and re.search(regex, value) is None:
            self.errors.append(
                f"{path}: Invalid value: {quote_go(value)}: {path} in body should match '{regex}'"
            )

    def minimum(self, value: int | None, path: str, n: int) -> None:
        if value is not None and value < n:
            self.errors.append(
                f"{path}: Invalid value: {value}: "
                f"{path} in body should be greater than or equal to {n}"
            )


def _check_spec(c: _Checker, spec: Mapping[str, Any]) -> None:
    for key in ("scaleTargetRef", "modelID"):
        if key not in spec:
            c.errors.append(f"spec.{key}: Required value")
    model_id = c.typed(spec, "modelID", "spec.modelID", "string")
    c.min_length(model_id, "spec.modelID", 1)
    cost = c.typed(spec, "variantCost", "spec.variantCost", "string")
    c.pattern(cost, "spec.variantCost", VARIANT_COST_PATTERN)
    ref = c.typed(spec, "scaleTargetRef", "spec.scaleTargetRef", "object")
    if ref is not None:
        for key in ("kind", "name"):
            if key not in ref:
                c.errors.append(f"spec.scaleTargetRef.{key}: Required value")
        for key in ("apiVersion", "kind", "name"):
            c.typed(ref, key, f"spec.scaleTargetRef.{key}", "string")


def _check_conditions(c: _Checker, items: list[Any]) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        path = f"status.conditions[{i}]"
        if _json_type(item) != "object":
            c.errors.append(
                f"{path}: Invalid value: {quote_go(_json_type(item))}: "
                f"{path} in body must be of type object: {quote_go(_json_type(item))}"
            )
            continue
        for key in ("lastTransitionTime", "message", "reason", "status", "type"):
            if key not in item:
                c.errors.append(f"{path}.{key}: Required value")
        type_ = c.typed(item, "type", f"{path}.type", "string")
        c.pattern(type_, f"{path}.type", _CONDITION_TYPE.pattern)
        status = c.typed(item, "status", f"{path}.status", "string")
        if status is not None and status not in (STATUS_TRUE, STATUS_FALSE, STATUS_UNKNOWN):
            c.errors.append(
                f"{path}.status: Unsupported value: {quote_go(status)}: supported values: "
                f'"{STATUS_TRUE}", "{STATUS_FALSE}", "{STATUS_UNKNOWN}"'
            )
        reason = c.typed(item, "reason", f"{path}.reason", "string")
        c.min_length(reason, f"{path}.reason", 1)
        if reason:
            c.pattern(reason, f"{path}.reason", _CONDITION_REASON.pattern)
        c.typed(item, "message", f"{path}.message", "string")
        ltt = c.typed(item, "lastTransitionTime", f"{path}.lastTransitionTime", "string")
        if ltt is not None and not _DATE_TIME.match(ltt):
            c.errors.append(
                f"{path}.lastTransitionTime: Invalid value: {quote_go(ltt)}: "
                f"{path}.lastTransitionTime in body must be of type date-time: {quote_go(ltt)}"
            )
        gen = c.typed(item, "observedGeneration", f"{path}.observedGeneration", "integer")
        c.minimum(gen, f"{path}.observedGeneration", 0)
        if type_ is not None:
            if type_ in seen:
                c.errors.append(
                    f'{path}: Duplicate value: map[string]interface {{}}{{"type":'
                    f"{quote_go(type_)}}}"
                )
            seen.add(type_)


def _check_status(c: _Checker, status: Mapping[str, Any]) -> None:
    alloc = c.typed(status, "desiredOptimizedAlloc", "status.desiredOptimizedAlloc", "object")
    if alloc is not None:
        path = "status.desiredOptimizedAlloc"
        for key in ("accelerator", "numReplicas"):
            if key not in alloc:
                c.errors.append(f"{path}.{key}: Required value")
        c.min_length(
            c.typed(alloc, "accelerator", f"{path}.accelerator", "string"), f"{path}.accelerator", 2
        )
        c.minimum(
            c.typed(alloc, "numReplicas", f"{path}.numReplicas", "integer"),
            f"{path}.numReplicas",
            0,
        )
        run = c.typed(alloc, "lastRunTime", f"{path}.lastRunTime", "string")
        if run is not None and not _DATE_TIME.match(run):
            c.errors.append(
                f"{path}.lastRunTime: Invalid value: {quote_go(run)}: "
                f"{path}.lastRunTime in body must be of type date-time: "
                f"{quote_go(run)}"
            )
    actuation = c.typed(status, "actuation", "status.actuation", "object")
    if actuation is not None:
        if "applied" not in actuation:
            c.errors.append("status.actuation.applied: Required value")
        c.typed(actuation, "applied", "status.actuation.applied", "boolean")
    conditions = c.typed(status, "conditions", "status.conditions", "array")
    if conditions is not None:
        _check_conditions(c, list(conditions))


def with_defaults(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with the schema's defaults applied (`spec.variantCost` = "10.0")."""
    out = dict(obj)
    spec = out.get("spec")
    if isinstance(spec, Mapping) and "variantCost" not in spec:
        out["spec"] = {**spec, "variantCost": DEFAULT_VARIANT_COST_TEXT}
    return out


def schema_errors(obj: Mapping[str, Any]) -> list[str]:
    """The field errors the API server would report for this (defaulted) object."""
    c = _Checker()
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    if not meta.get("name") and not meta.get("generateName"):
        c.errors.append("metadata.name: Required value: name or generateName is required")
    spec = c.typed(obj, "spec", "spec", "object")
    if "spec" not in obj:
        c.errors.append("spec: Required value")
    if spec is not None:
        _check_spec(c, spec)
    status = c.typed(obj, "status", "status", "object")
    if status is not None:
        _check_status(c, status)
    return c.errors


def validate_variant_autoscaling(obj: Mapping[str, Any]) -> VariantAutoscaling:
    """Default and validate a VariantAutoscaling as the API server does with the CRD schema.

    Raises InvalidObject with the 422 message, e.g.
    `VariantAutoscaling.llmd.ai "x" is invalid: spec.modelID: Required value`.
    """
    defaulted = with_defaults(obj)
    errors = schema_errors(defaulted)
    if errors:
        meta = defaulted.get("metadata")
        name = meta.get("name", "") if isinstance(meta, Mapping) else ""
        detail = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
        raise InvalidObject(
            f"{KIND}.{GROUP} {quote_go(str(name))} is invalid: {detail}", tuple(errors)
        )
    return VariantAutoscaling.model_validate(defaulted)
