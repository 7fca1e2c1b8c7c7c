"""The HPA and KEDA of a cluster, on the virtual clock: what replicas they give a Deployment
from `wva_desired_replicas` (Kubernetes' autoscaling/v2 defaults and KEDA's loops)."""

from __future__ import annotations

import pytest

from pyllmd.simulate import hpa, keda


def run(
    spec: hpa.HPASpec, start: int, metric: list[tuple[float, float]]
) -> list[tuple[float, int]]:
    """Sync every 15 s with the metric given from each time on; the replicas after each."""
    state = hpa.HPAState()
    replicas = start
    out = []
    t = 0.0
    changes = dict(metric)
    value = changes.get(0.0, 0.0)
    while t <= max(changes) + 400:
        value = changes.get(t, value)
        res = hpa.sync(spec, state, t, replicas, value)
        replicas, state = res.replicas, res.state
        out.append((t, replicas))
        t += hpa.SYNC_PERIOD_S
    return out


def test_scale_up_follows_the_default_policies_100_percent_or_4_pods_per_15_s() -> None:
    trace = run(hpa.HPASpec(max_replicas=20), 2, [(0.0, 15.0)])
    assert [r for _, r in trace[:4]] == [6, 12, 15, 15]


def test_within_the_10_percent_tolerance_nothing_changes() -> None:
    res = hpa.sync(hpa.HPASpec(max_replicas=20), hpa.HPAState(), 0.0, 10, 10.5)
    assert res.replicas == 10
    assert hpa.sync(hpa.HPASpec(max_replicas=20), hpa.HPAState(), 0.0, 10, 11.5).replicas == 12


def test_scale_down_waits_for_the_300_s_stabilization_window() -> None:
    trace = run(hpa.HPASpec(max_replicas=20), 10, [(0.0, 10.0), (15.0, 2.0)])
    # the recommendation of 10 made at 0 s leaves the window at 300 s (Go's After(cutoff))
    assert all(r == 10 for t, r in trace if t < 300)
    assert dict(trace)[300.0] == 2


def test_a_target_at_zero_is_left_alone_unless_min_replicas_is_zero() -> None:
    assert hpa.sync(hpa.HPASpec(min_replicas=1), hpa.HPAState(), 0.0, 0, 3.0).replicas == 0
    assert hpa.sync(hpa.HPASpec(min_replicas=0), hpa.HPAState(), 0.0, 0, 3.0).replicas == 3
    trace = run(hpa.HPASpec(min_replicas=0), 3, [(0.0, 0.0)])
    assert trace[-1][1] == 0


def test_the_charts_behaviour_is_read_from_the_manifest() -> None:
    manifest = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "spec": {
            "minReplicas": 1,
            "maxReplicas": 30,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {"name": "wva_desired_replicas"},
                        "target": {"type": "AverageValue", "averageValue": "1"},
                    },
                }
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 240,
                    "policies": [{"type": "Pods", "value": 10, "periodSeconds": 150}],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 240,
                    "policies": [{"type": "Pods", "value": 10, "periodSeconds": 150}],
                },
            },
        },
    }
    spec = hpa.spec_from_manifest(manifest)
    assert spec.scale_up.policies == (hpa.ScalingPolicy("Pods", 10, 150),)
    assert spec.scale_up.stabilization_window_seconds == 240
    # the scale-up window holds the minimum of the last 240 s: a new high waits for it
    trace = run(spec, 1, [(0.0, 1.0), (15.0, 30.0)])
    first_up = next(t for t, r in trace if r > 1)
    assert first_up == 240.0
    assert dict(trace)[first_up] == 11  # 10 pods per 150 s
    assert dict(trace)[first_up + 150] == 21


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ({"metrics": []}, "spec.metrics: an External metric"),
        (
            {"metrics": [{"type": "External", "external": {"target": {"type": "Value"}}}]},
            "only AverageValue",
        ),
        (
            {"behavior": {"scaleUp": {"selectPolicy": "Most"}}},
            "spec.behavior.scaleUp.selectPolicy: Max, Min or Disabled",
        ),
    ],
)
def test_a_manifest_that_is_not_modelled_is_named(edit: dict, words: str) -> None:
    spec = {
        "maxReplicas": 5,
        "metrics": [
            {
                "type": "External",
                "external": {"target": {"type": "AverageValue", "averageValue": "1"}},
            }
        ],
    }
    with pytest.raises(ValueError, match=words):
        hpa.spec_from_manifest({"spec": {**spec, **edit}})


SCALED_OBJECT = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "ScaledObject",
    "spec": {
        "pollingInterval": 5,
        "cooldownPeriod": 30,
        "minReplicaCount": 0,
        "maxReplicaCount": 10,
        "triggers": [
            {
                "type": "prometheus",
                "metadata": {
                    "query": 'wva_desired_replicas{variant_name="v",exported_namespace="ns"}',
                    "threshold": "1",
                    "activationThreshold": "0",
                    "metricType": "AverageValue",
                },
            }
        ],
    },
}


def test_keda_reads_the_samples_scaled_object_and_builds_its_hpa() -> None:
    spec = keda.spec_from_manifest(SCALED_OBJECT)
    assert (spec.polling_interval_s, spec.cooldown_period_s) == (5.0, 30.0)
    assert (spec.min_replicas, spec.max_replicas, spec.threshold) == (0, 10, 1.0)
    assert spec.hpa is not None
    assert (spec.hpa.min_replicas, spec.hpa.max_replicas) == (1, 10)
    assert spec.hpa.target_average_value == 1.0


def test_keda_activates_from_zero_and_goes_back_after_the_cooldown() -> None:
    spec = keda.spec_from_manifest(SCALED_OBJECT)
    state = keda.KedaState(created=0.0)
    replicas, state = keda.poll(spec, state, 0.0, 0, 2.0)
    assert replicas == 1  # KEDA activates; its HPA takes it further
    replicas = 3
    for t in (5.0, 10.0, 15.0, 20.0, 25.0, 30.0):
        replicas, state = keda.poll(spec, state, t, replicas, 0.0)
        assert replicas == 3  # last active at 0: 0 + 30 s is not before now yet
    replicas, state = keda.poll(spec, state, 35.0, replicas, 0.0)
    assert replicas == 0
    replicas, state = keda.poll(spec, state, 40.0, replicas, 0.5)
    assert replicas == 1


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", 1.0), ("500m", 0.5), ("2k", 2000.0), ("1Gi", 2.0**30), ("1.5", 1.5), ("1e3", 1000.0),
     ("one", None), ("1x", None)],
)  # fmt: skip
def test_quantities_are_read_as_kubernetes_writes_them(text: str, value: float | None) -> None:
    assert hpa.parse_quantity(text) == value
