"""The controller's `wva_*` metrics as a scraper (HPA adapter, KEDA) sees them."""

from __future__ import annotations

import pytest

from pyllmd.autoscaler.loops.metrics import (
    CONTENT_TYPE,
    ControllerMetrics,
    desired_ratio,
    short_reason,
)
from pyllmd.core.promtext import Sample, parse_samples


def series(metrics: ControllerMetrics, name: str) -> list[Sample]:
    return [s for s in parse_samples(metrics.render().decode()) if s.name == name]


def value(metrics: ControllerMetrics, name: str, **labels: str) -> float | None:
    found = [s.value for s in series(metrics, name) if dict(s.labels) == labels]
    return found[0] if found else None


def test_wva_acc_51_gauge_labels() -> None:
    metrics = ControllerMetrics()
    metrics.publish("llama-h100", "llm-d", "H100", current=2, desired=3)
    for name in ("wva_desired_replicas", "wva_current_replicas", "wva_desired_ratio"):
        (sample,) = series(metrics, name)
        assert dict(sample.labels) == {
            "variant_name": "llama-h100",
            "namespace": "llm-d",
            "accelerator_type": "H100",
        }


def test_exposition_is_the_go_clients_text() -> None:
    metrics = ControllerMetrics()
    metrics.publish("v", "ns", "A100", current=4, desired=2)
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")
    assert metrics.render().decode() == (
        "# HELP wva_current_replicas Current number of replicas for each variant\n"
        "# TYPE wva_current_replicas gauge\n"
        'wva_current_replicas{accelerator_type="A100",namespace="ns",variant_name="v"} 4\n'
        "# HELP wva_desired_ratio Ratio of the desired number of replicas and the current "
        "number of replicas for each variant\n"
        "# TYPE wva_desired_ratio gauge\n"
        'wva_desired_ratio{accelerator_type="A100",namespace="ns",variant_name="v"} 0.5\n'
        "# HELP wva_desired_replicas Desired number of replicas for each variant\n"
        "# TYPE wva_desired_replicas gauge\n"
        'wva_desired_replicas{accelerator_type="A100",namespace="ns",variant_name="v"} 2\n'
    )


def test_controller_instance_label_is_added_when_configured() -> None:
    metrics = ControllerMetrics(controller_instance="a")
    metrics.publish("v", "ns", "H100", current=1, desired=1)
    metrics.publish("v", "ns", "H100", current=1, desired=2, reason="saturation")
    (gauge,) = series(metrics, "wva_desired_replicas")
    assert gauge.labels["controller_instance"] == "a"
    (counter,) = series(metrics, "wva_replica_scaling_total")
    assert counter.labels["controller_instance"] == "a"


@pytest.mark.parametrize(
    "current,desired,ratio",
    [(2, 3, 1.5), (0, 1, 1.0), (0, 0, 0.0), (4, 0, 0.0), (3, 3, 1.0), (3, 1, 1 / 3)],
)
def test_wva_acc_52_ratio(current: int, desired: int, ratio: float) -> None:
    assert desired_ratio(current, desired) == pytest.approx(ratio)
    metrics = ControllerMetrics()
    metrics.publish("v", "ns", "H100", current=current, desired=desired)
    labels = {"variant_name": "v", "namespace": "ns", "accelerator_type": "H100"}
    assert value(metrics, "wva_desired_ratio", **labels) == pytest.approx(ratio)
    assert value(metrics, "wva_current_replicas", **labels) == current
    assert value(metrics, "wva_desired_replicas", **labels) == desired


def test_scaling_counter_counts_changes_of_desired_with_direction_and_short_reason() -> None:
    metrics = ControllerMetrics()
    metrics.publish("v", "ns", "H100", 1, 1, reason="saturation: spare kv 0.05 < 0.10")
    assert series(metrics, "wva_replica_scaling_total") == []  # first value: nothing to compare
    metrics.publish("v", "ns", "H100", 1, 2, reason="saturation: spare kv 0.05 < 0.10")
    metrics.publish("v", "ns", "H100", 2, 2, reason="saturation: steady")
    metrics.publish("v", "ns", "H100", 2, 3, reason="Saturation (V1) spare queue 1.5 < 3")
    metrics.publish("v", "ns", "H100", 3, 0, reason="scale-to-zero: no requests in 10m")
    up = {"variant_name": "v", "namespace": "ns", "direction": "up", "reason": "saturation"}
    down = {**up, "direction": "down", "reason": "scale_to_zero"}
    assert value(metrics, "wva_replica_scaling_total", **up) == 2
    assert value(metrics, "wva_replica_scaling_total", **down) == 1
    assert metrics.published_desired("ns", "v") == 0


@pytest.mark.parametrize(
    "reason,short",
    [
        ("", "unspecified"),
        ("saturation", "saturation"),
        ("Scale From Zero: pending requests", "scale_from_zero"),
        ("gpu-limiter(limited 3 → 2)", "gpu_limiter"),
        ("x" * 60, "x" * 40),
        ("::", "unspecified"),
    ],
)
def test_short_reason_is_a_bounded_label_value(reason: str, short: str) -> None:
    assert short_reason(reason) == short


def test_new_accelerator_replaces_the_variants_old_series() -> None:
    metrics = ControllerMetrics()
    metrics.publish("v", "ns", "A100", 1, 1)
    metrics.publish("v", "ns", "H100", 1, 1)
    desired = series(metrics, "wva_desired_replicas")
    assert [s.labels["accelerator_type"] for s in desired] == ["H100"]


def test_forget_removes_only_that_variants_series() -> None:
    metrics = ControllerMetrics()
    metrics.publish("v", "ns", "H100", 1, 1)
    metrics.publish("v", "ns", "H100", 1, 2, reason="saturation")
    metrics.publish("w", "ns", "H100", 1, 1)
    metrics.publish("v", "other", "H100", 1, 1)
    metrics.forget("ns", "v")
    remaining = {
        (s.name, s.labels["namespace"], s.labels["variant_name"])
        for s in parse_samples(metrics.render().decode())
    }
    assert ("wva_desired_replicas", "ns", "v") not in remaining
    assert not any(name == "wva_replica_scaling_total" for name, _, _ in remaining)
    assert ("wva_desired_replicas", "ns", "w") in remaining
    assert ("wva_desired_replicas", "other", "v") in remaining
    assert metrics.published_desired("ns", "v") is None
    metrics.publish("v", "ns", "H100", 1, 5)  # back after forget: a first value again
    assert series(metrics, "wva_replica_scaling_total") == []


def test_a_variant_published_again_after_forget_or_a_switch_back_is_exported() -> None:
    metrics = ControllerMetrics()
    metrics.publish("v", "ns", "H100", 1, 1)
    metrics.forget("ns", "v")
    metrics.publish("v", "ns", "H100", 2, 3)
    assert value(metrics, "wva_desired_replicas", accelerator_type="H100", namespace="ns",
                 variant_name="v") == 3  # fmt: skip
    metrics.publish("v", "ns", "A100", 2, 4)
    metrics.publish("v", "ns", "H100", 2, 5)  # back to the first accelerator
    desired = series(metrics, "wva_desired_replicas")
    assert [(s.labels["accelerator_type"], s.value) for s in desired] == [("H100", 5.0)]
    assert value(metrics, "wva_current_replicas", accelerator_type="H100", namespace="ns",
                 variant_name="v") == 2  # fmt: skip
