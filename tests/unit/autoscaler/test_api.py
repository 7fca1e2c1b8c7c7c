"""The VariantAutoscaling API: schema validation as the API server does it, conditions, time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from pyllmd.autoscaler.decide import api
from pyllmd.autoscaler.decide.api import (
    Condition,
    InvalidObject,
    rfc3339,
    set_condition,
    validate_variant_autoscaling,
)


def va(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
        "modelID": "m",
    }
    base.update(spec)
    return {
        "apiVersion": "llmd.ai/v1alpha1",
        "kind": "VariantAutoscaling",
        "metadata": {"name": "v", "namespace": "ns"},
        "spec": {k: v for k, v in base.items() if v is not None},
    }


def test_wva_acc_01_model_id_required() -> None:
    obj = va(modelID=None)
    with pytest.raises(InvalidObject) as missing:
        validate_variant_autoscaling(obj)
    assert missing.value.message == (
        'VariantAutoscaling.llmd.ai "v" is invalid: spec.modelID: Required value'
    )
    with pytest.raises(InvalidObject) as empty:
        validate_variant_autoscaling(va(modelID=""))
    assert "spec.modelID in body should be at least 1 chars long" in empty.value.message
    assert validate_variant_autoscaling(va(modelID="x")).spec.model_id == "x"


def test_wva_acc_02_variant_cost_default() -> None:
    obj = validate_variant_autoscaling(va())
    assert obj.spec.variant_cost == "10.0"
    assert obj.to_json()["spec"]["variantCost"] == "10.0"


@pytest.mark.parametrize("cost", ["-1", "abc", "1.", ".5", "1e3", " 5", ""])
def test_wva_acc_03_variant_cost_pattern_rejects(cost: str) -> None:
    with pytest.raises(InvalidObject) as err:
        validate_variant_autoscaling(va(variantCost=cost))
    assert f'spec.variantCost: Invalid value: "{cost}"' in err.value.message
    assert "should match '^\\d+(\\.\\d+)?$'" in err.value.message


@pytest.mark.parametrize("cost", ["5", "12.50", "0", "0.0"])
def test_wva_acc_03_variant_cost_pattern_accepts(cost: str) -> None:
    assert validate_variant_autoscaling(va(variantCost=cost)).spec.variant_cost == cost


def test_variant_cost_must_be_a_string() -> None:
    with pytest.raises(InvalidObject, match='must be of type string: "number"'):
        validate_variant_autoscaling(va(variantCost=5.0))


def test_scale_target_ref_kind_and_name_required() -> None:
    with pytest.raises(InvalidObject) as err:
        validate_variant_autoscaling(va(scaleTargetRef={"apiVersion": "apps/v1"}))
    assert err.value.causes == (
        "spec.scaleTargetRef.kind: Required value",
        "spec.scaleTargetRef.name: Required value",
    )
    assert err.value.message.endswith(
        "is invalid: [spec.scaleTargetRef.kind: Required value, "
        "spec.scaleTargetRef.name: Required value]"
    )


def test_missing_spec_and_name() -> None:
    with pytest.raises(InvalidObject) as err:
        validate_variant_autoscaling({"metadata": {}})
    assert "metadata.name: Required value" in err.value.message
    assert "spec: Required value" in err.value.message


def test_status_rules() -> None:
    obj = va()
    obj["status"] = {
        "desiredOptimizedAlloc": {"accelerator": "A", "numReplicas": -1},
        "actuation": {},
        "conditions": [
            {
                "type": "X",
                "status": "Maybe",
                "reason": "ok",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
            {
                "type": "X",
                "status": "True",
                "reason": "ok",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
        ],
    }
    with pytest.raises(InvalidObject) as err:
        validate_variant_autoscaling(obj)
    causes = err.value.causes
    assert any("accelerator in body should be at least 2 chars long" in c for c in causes)
    assert any("numReplicas in body should be greater than or equal to 0" in c for c in causes)
    assert "status.actuation.applied: Required value" in causes
    assert any(
        c.startswith('status.conditions[0].status: Unsupported value: "Maybe"') for c in causes
    )
    assert any(c.startswith("status.conditions[1]: Duplicate value") for c in causes)


def test_valid_status_round_trips() -> None:
    obj = va()
    obj["status"] = {
        "desiredOptimizedAlloc": {
            "accelerator": "H100",
            "numReplicas": 0,
            "lastRunTime": "2026-01-01T00:00:00Z",
        },
        "actuation": {"applied": True},
        "conditions": [
            {
                "type": "MetricsAvailable",
                "status": "True",
                "reason": "MetricsFound",
                "message": "m",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
        ],
    }
    parsed = validate_variant_autoscaling(obj)
    assert parsed.to_json()["status"] == obj["status"]


def test_rfc3339() -> None:
    assert rfc3339(datetime(2026, 2, 19, 10, 0, 5, 999000, tzinfo=UTC)) == "2026-02-19T10:00:05Z"
    plus2 = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2026, 2, 19, 12, 0, 0, tzinfo=plus2)) == "2026-02-19T10:00:00Z"
    assert rfc3339(datetime(2026, 2, 19, 10, 0, 0)) == "2026-02-19T10:00:00Z"


def test_set_condition_keeps_transition_time_when_status_unchanged() -> None:
    t0, t1, t2 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"
    conds = set_condition(
        [],
        api.TYPE_TARGET_RESOLVED,
        "False",
        api.REASON_TARGET_NOT_FOUND,
        api.message_target_not_found("d"),
        1,
        t0,
    )
    assert conds[0].last_transition_time == t0
    assert conds[0].message == "Scale target Deployment d not found"
    same = set_condition(conds, api.TYPE_TARGET_RESOLVED, "False", "Other", "new", 2, t1)
    assert (same[0].last_transition_time, same[0].reason, same[0].message) == (t0, "Other", "new")
    assert same[0].observed_generation == 2
    flipped = set_condition(
        same,
        api.TYPE_TARGET_RESOLVED,
        "True",
        api.REASON_TARGET_FOUND,
        api.message_target_found("d"),
        2,
        t2,
    )
    assert flipped[0].last_transition_time == t2
    assert conds[0].reason == api.REASON_TARGET_NOT_FOUND  # input untouched


def test_set_condition_appends_and_preserves_order() -> None:
    first = Condition(type="A", status="True", reason="R", message="", lastTransitionTime="x")
    out = set_condition([first], "B", "False", "R2", "m", 3, "2026-01-01T00:00:00Z")
    assert [c.type for c in out] == ["A", "B"]
    assert api.get_condition(out, "B") is not None
    assert api.get_condition(out, "C") is None


def test_condition_constants() -> None:
    assert {
        api.REASON_METRICS_STALE,
        api.REASON_PROMETHEUS_ERROR,
        api.REASON_OPTIMIZATION_FAILED,
        api.REASON_METRICS_UNAVAILABLE,
        api.REASON_INVALID_CONFIGURATION,
        api.REASON_SKIPPED_PROCESSING,
    } == {
        "MetricsStale",
        "PrometheusError",
        "OptimizationFailed",
        "MetricsUnavailable",
        "InvalidConfiguration",
        "SkippedProcessing",
    }
    assert api.MESSAGE_SCALE_FROM_ZERO_MODE == (
        "scalefromzero decision: scalefromzero mode: pending request - scale-up"
    )
    assert (
        api.message_saturation_only("up", 3) == "saturation-only decision: up (target: 3 replicas)"
    )
