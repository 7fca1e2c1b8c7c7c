"""V1 saturation analyzer (spec §5.1, acceptance checks 19-32)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyllmd.autoscaler.decide.analyze import make_analyzer
from pyllmd.autoscaler.decide.analyze.saturation_v1 import (
    SaturationV1Analyzer,
    analyze,
    analyze_saturation,
    is_saturated,
    scale_up_signal,
)
from pyllmd.autoscaler.decide.model import SaturationConfig

from .decisionkit import group, replica, targets, variant

CFG = SaturationConfig()  # T_kv 0.80, T_q 5, S_kv 0.10, S_q 3


def one_variant(current: int, kvs: list[float], queues: list[int] | None = None) -> dict[str, int]:
    queues = queues or [0] * len(kvs)
    g = group(
        [variant("v", current)], [replica("v", k, q) for k, q in zip(kvs, queues, strict=True)]
    )
    return targets(analyze(g, CFG))


def test_wva_acc_19_scale_down_safe() -> None:
    a = analyze_saturation([replica("v", 0.20), replica("v", 0.30)], CFG)
    assert a.avg_spare_kv == pytest.approx(0.55)
    assert a.avg_spare_queue == 5.0
    assert not a.scale_up
    assert a.scale_down_safe
    assert one_variant(2, [0.20, 0.30]) == {"v": 1}


@pytest.mark.parametrize(
    ("kv", "safe"),
    [
        # remKv = 0.80 − 2·kv ≥ 0.10 ⇔ kv ≤ 0.35. At exactly 0.35 float64 rounding gives
        # remKv = 0.10000000000000009, so the boundary counts as safe (as upstream).
        (0.34, True),
        (0.349, True),
        (0.35, True),
        (0.351, False),
        (0.36, False),
    ],
)
def test_wva_acc_19_scale_down_kv_boundary(kv: float, safe: bool) -> None:
    assert one_variant(2, [kv, kv]) == {"v": 1 if safe else 2}


@pytest.mark.parametrize(("queue", "safe"), [(0, True), (1, True), (2, False)])
def test_wva_acc_19_scale_down_queue_boundary(queue: int, safe: bool) -> None:
    # remQ = 5 − 2·q ≥ 3 ⇔ q ≤ 1.
    assert one_variant(2, [0.1, 0.1], [queue, queue]) == {"v": 1 if safe else 2}


def test_wva_acc_20_scale_down_unsafe_keeps_target() -> None:
    a = analyze_saturation([replica("v", 0.50), replica("v", 0.50)], CFG)
    assert a.avg_spare_kv == pytest.approx(0.30)
    assert not a.scale_up and not a.scale_down_safe
    assert one_variant(2, [0.50, 0.50]) == {"v": 2}


def test_wva_acc_21_low_kv_spare_scales_up() -> None:
    a = analyze_saturation([replica("v", k) for k in (0.75, 0.72, 0.74)], CFG)
    assert a.avg_spare_kv == pytest.approx(0.0633, abs=1e-4)
    assert a.scale_up_reason == "KV spare Saturation low (0.063 < 0.100)"
    assert one_variant(3, [0.75, 0.72, 0.74]) == {"v": 4}


@pytest.mark.parametrize(
    ("kv", "up"),
    [
        (0.69, False),
        # spare = 0.80 − 0.70 = 0.10000000000000009 in float64: not below the trigger.
        (0.70, False),
        (0.70001, True),
        (0.71, True),
    ],
)
def test_wva_acc_21_kv_spare_trigger_boundary(kv: float, up: bool) -> None:
    assert one_variant(1, [kv]) == {"v": 2 if up else 1}


@pytest.mark.parametrize(("queue", "saturated"), [(4, False), (5, True), (6, True)])
def test_wva_acc_22_queue_threshold_saturates(queue: int, saturated: bool) -> None:
    assert is_saturated(replica("v", 0.10, queue), CFG) is saturated


def test_wva_acc_22_saturated_replica_excluded_from_averages() -> None:
    a = analyze_saturation([replica("v", 0.10, 6), replica("v", 0.20, 0)], CFG)
    assert a.non_saturated == 1
    assert a.avg_spare_kv == pytest.approx(0.60)
    assert a.avg_spare_queue == 5.0


@pytest.mark.parametrize("kv", [0.80, 0.85, 0.99])
def test_wva_acc_23_all_saturated_scales_up_by_one(kv: float) -> None:
    a = analyze_saturation([replica("v", kv), replica("v", kv)], CFG)
    assert a.non_saturated == 0
    assert a.scale_up
    assert a.scale_up_reason.startswith("both KV spare (0.000 < 0.100) and queue spare")
    assert one_variant(2, [kv, kv]) == {"v": 3}


def test_wva_acc_23_just_below_threshold_is_not_saturated() -> None:
    assert not is_saturated(replica("v", 0.7999), CFG)
    assert is_saturated(replica("v", 0.80), CFG)


@pytest.mark.parametrize(("queue", "target"), [(1, 1), (2, 2), (3, 3), (4, 3)])
def test_wva_acc_24_queue_spare_trigger(queue: int, target: int) -> None:
    # avg spare queue = 5 − q: the trigger fires below 3 (q ≥ 3); q = 1 leaves room to remove one
    # replica (remQ = 5 − 2 = 3 ≥ 3), q = 2 does not (remQ = 1).
    assert one_variant(2, [0.2, 0.2], [queue, queue]) == {"v": target}


def test_wva_acc_24_queue_reason_text() -> None:
    assert scale_up_signal(0.6, 2.0, CFG) == (True, "queue spare Saturation low (2.0 < 3.0)")


def test_wva_acc_25_single_non_saturated_replica_never_scales_down() -> None:
    # One idle and one saturated replica: N = 1 → no scale-down even with huge headroom.
    g = group([variant("v", 2)], [replica("v", 0.0), replica("v", 0.95)])
    a = analyze_saturation(g.replicas, CFG)
    assert a.non_saturated == 1 and not a.scale_down_safe
    assert targets(analyze(g, CFG)) == {"v": 2}


def test_wva_acc_26_one_replica_variant_never_scaled_down() -> None:
    g = group(
        [variant("a", 1, cost=20), variant("b", 1, cost=5)],
        [replica("a", 0.0, cost=20), replica("b", 0.0, cost=5)],
    )
    assert analyze_saturation(g.replicas, CFG).scale_down_safe
    assert targets(analyze(g, CFG)) == {"a": 1, "b": 1}


@pytest.mark.parametrize(
    ("costs", "winner"),
    [
        ({"a": 5.0, "b": 15.0}, "a"),
        ({"a": 15.0, "b": 5.0}, "b"),
        ({"a": 10.0, "b": 10.0}, "a"),
        ({"b": 10.0, "a": 10.0}, "a"),
    ],
)
def test_wva_acc_27_scale_up_picks_cheapest(costs: dict[str, float], winner: str) -> None:
    g = group(
        [variant(n, 1, cost=c) for n, c in costs.items()],
        [replica(n, 0.79, cost=c) for n, c in costs.items()],
    )
    got = targets(analyze(g, CFG))
    assert got == {n: 2 if n == winner else 1 for n in costs}


@pytest.mark.parametrize(
    ("costs", "loser"),
    [
        ({"a": 5.0, "b": 15.0}, "b"),
        ({"a": 15.0, "b": 5.0}, "a"),
        ({"a": 10.0, "b": 10.0}, "b"),
    ],
)
def test_wva_acc_28_scale_down_picks_most_expensive(costs: dict[str, float], loser: str) -> None:
    g = group(
        [variant(n, 2, cost=c) for n, c in costs.items()],
        [replica(n, 0.05, cost=c) for n, c in costs.items() for _ in range(2)],
    )
    got = targets(analyze(g, CFG))
    assert got == {n: 1 if n == loser else 2 for n in costs}


def test_wva_acc_28_most_expensive_at_one_replica_is_skipped() -> None:
    g = group(
        [variant("cheap", 3, cost=5), variant("pricey", 1, cost=50)],
        [replica("cheap", 0.05, cost=5) for _ in range(3)] + [replica("pricey", 0.05, cost=50)],
    )
    assert targets(analyze(g, CFG)) == {"cheap": 2, "pricey": 1}


def test_wva_acc_29_pending_variant_skipped_for_scale_up() -> None:
    # "cheap" has 2 pods, one not ready yet (pending); both report metrics, so the model is
    # not in transition, but "cheap" is skipped and the next cheapest, "mid", grows.
    g = group(
        [
            variant("cheap", 2, ready=1, cost=5),
            variant("mid", 1, cost=8),
            variant("dear", 1, cost=9),
        ],
        [replica("cheap", 0.79, cost=5), replica("cheap", 0.79, cost=5)]
        + [replica("mid", 0.79, cost=8), replica("dear", 0.79, cost=9)],
    )
    assert targets(analyze(g, CFG)) == {"cheap": 2, "mid": 2, "dear": 1}


def test_wva_acc_29_all_pending_no_change() -> None:
    g = group(
        [variant("a", 2, ready=1, cost=5), variant("b", 2, ready=1, cost=8)],
        [replica("a", 0.79, cost=5) for _ in range(2)]
        + [replica("b", 0.79, cost=8) for _ in range(2)],
    )
    assert targets(analyze(g, CFG)) == {"a": 2, "b": 2}


def test_wva_acc_30_previous_target_not_reached_holds() -> None:
    # Previous desired 3, Deployment at 2 with saturated pods: no new step, keep publishing 3.
    g = group([variant("v", 2, desired=3)], [replica("v", 0.95), replica("v", 0.95)])
    (d,) = analyze(g, CFG)
    assert d.target_replicas == 3
    assert d.reason == "saturation-only mode: scale-up"


def test_wva_acc_30_transition_in_one_variant_blocks_whole_model() -> None:
    g = group(
        [variant("a", 2, desired=3, cost=5), variant("b", 2, cost=9)],
        [replica("a", 0.95, cost=5) for _ in range(2)]
        + [replica("b", 0.95, cost=9) for _ in range(2)],
    )
    assert targets(analyze(g, CFG)) == {"a": 3, "b": 2}


@pytest.mark.parametrize("desired", [0, 3])
def test_wva_acc_31_missing_pod_metrics_is_transition(desired: int) -> None:
    g = group([variant("v", 3, desired=desired)], [replica("v", 0.95), replica("v", 0.95)])
    (d,) = analyze(g, CFG)
    assert d.target_replicas == 3
    assert d.action == "no-change"


def test_variant_without_metrics_gets_no_decision() -> None:
    g = group([variant("a", 1), variant("b", 1)], [replica("a", 0.1)])
    ds = analyze(g, CFG)
    assert [d.variant for d in ds] == ["a"]


def test_no_metrics_no_decisions() -> None:
    assert analyze(group([variant("a", 2)]), CFG) == []


def test_decision_fields() -> None:
    g = group([variant("v", 2, gpus=4)], [replica("v", 0.2, accelerator="A100", cost=7.5)] * 2)
    (d,) = SaturationV1Analyzer().analyze(g, CFG, 0.0)
    assert d.reason == "saturation-only mode: scale-down"
    assert (d.accelerator, d.cost, d.gpus_per_replica) == ("A100", 7.5, 4)
    assert d.spare_capacity == pytest.approx(0.6)
    assert d.current_replicas == 2 and d.target_replicas == 1


@pytest.mark.parametrize("name", ["", "anything-else"])
def test_registry_selects_v1(name: str) -> None:
    assert isinstance(make_analyzer(name), SaturationV1Analyzer)


# --- properties -------------------------------------------------------------------------------

_replica_load = st.tuples(st.floats(0.0, 1.0), st.integers(0, 10))


@st.composite
def v1_groups(draw: st.DrawFn) -> tuple[object, ...]:
    n_variants = draw(st.integers(1, 3))
    variants = []
    replicas = []
    for i in range(n_variants):
        name = f"v{i}"
        cost = draw(st.sampled_from([5.0, 10.0, 15.0]))
        current = draw(st.integers(1, 5))
        ready = draw(st.integers(0, current))
        desired = draw(st.sampled_from([0, current, draw(st.integers(0, 8))]))
        with_metrics = draw(st.integers(0, current))
        variants.append(variant(name, current, ready=ready, desired=desired, cost=cost))
        for kv, q in draw(st.lists(_replica_load, min_size=with_metrics, max_size=with_metrics)):
            replicas.append(replica(name, kv, q, cost=cost))
    return tuple(variants), tuple(replicas)


@settings(max_examples=300, deadline=None)
@given(v1_groups())
def test_wva_acc_32_at_most_one_step(data: tuple[object, ...]) -> None:
    variants, replicas = data
    g = group(variants, replicas)  # type: ignore[arg-type]
    ds = analyze(g, CFG)
    states = {v.name: v for v in g.variants}
    # The reference each target is compared with: the previous target while it is still being
    # rolled out, else the current replicas.
    base = 0
    for d in ds:
        s = states[d.variant]
        held = s.desired_replicas != 0 and s.desired_replicas != s.current_replicas
        base += s.desired_replicas if held else s.current_replicas
    total = sum(d.target_replicas for d in ds)
    assert abs(total - base) <= 1
    assert all(d.target_replicas >= 0 for d in ds)
    assert all(d.target_replicas >= 1 for d in ds if states[d.variant].current_replicas >= 1)
