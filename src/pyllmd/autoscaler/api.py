"""The VariantAutoscaling API (`llmd.ai/v1alpha1`): typed models of the CRD's objects.

Field names are the Go JSON names (camelCase aliases), so objects read from
and written to the Kubernetes API (or YAML files in local mode) round-trip
unchanged. Validation mirrors the CRD's OpenAPI schema, because the fake API
server used in tests (and a cluster without the CRD installed) does not
validate for us.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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
