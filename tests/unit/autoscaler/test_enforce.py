"""Scale-to-zero / minimum replicas and no-decision fallbacks (spec §8.1, §6.2, §3.5, §3.6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyllmd.autoscaler.decide.enforce import Activity, carry_over, enforce, safety_net, zero_hold
from pyllmd.autoscaler.decide.model import ScaleToZeroPolicy

from .decisionkit import decision, targets, variant

ON = ScaleToZeroPolicy(enabled=True, retention_seconds=600)
OFF = ScaleToZeroPolicy(enabled=False)
NOW = 1_700_000_000.0


def idle(count: float | None) -> Activity:
    """Only upstream's request count is known; no recent success, no young pod."""
    return Activity(count, recent_success=False, newest_ready=NOW - 3600)


@pytest.mark.parametrize(
    ("costs", "winner"),
    [
        ({"a": 5.0, "b": 15.0}, "a"),
        ({"a": 15.0, "b": 5.0}, "b"),
        ({"b": 10.0, "a": 10.0}, "a"),
    ],
)
def test_wva_acc_39_min_one_replica(costs: dict[str, float], winner: str) -> None:
    ds = [decision(n, 1, 0, cost=c) for n, c in costs.items()]
    out = enforce(ds, OFF, idle(0.0), now=NOW)
    assert targets(out) == {n: 1 if n == winner else 0 for n in costs}
    (kept,) = [d for d in out if d.variant == winner]
    assert kept.reason == "saturation-only mode: no-change"


def test_wva_acc_39_v2_reason_and_zero_cost_default() -> None:
    # V2 treats cost 0 as the default 10.0: "b" (cost 7) is cheaper than "a" (cost 0 → 10).
    ds = [decision("a", 2, 0, cost=0.0), decision("b", 2, 0, cost=7.0)]
    out = enforce(ds, OFF, idle(None), now=NOW, analyzer="v2")
    assert targets(out) == {"a": 0, "b": 1}
    assert out[1].reason == "V2 scale-down (optimizer: cost-aware, enforced)"
    assert out[0].reason == ""  # unchanged decisions keep their reason


def test_wva_acc_39_nonzero_total_untouched() -> None:
    ds = [decision("a", 1, 0), decision("b", 1, 1)]
    assert enforce(ds, OFF, idle(0.0), now=NOW) == ds


@pytest.mark.parametrize("analyzer", ["v1", "v2"])
def test_wva_acc_40_scale_to_zero(analyzer: str) -> None:
    ds = [decision("a", 3, 4, reason="x"), decision("b", 2, 2, reason="y")]
    out = enforce(ds, ON, idle(0.0), now=NOW, analyzer=analyzer)  # type: ignore[arg-type]
    assert targets(out) == {"a": 0, "b": 0}
    expected = (
        "V2 scale-down (optimizer: cost-aware, enforced)"
        if analyzer == "v2"
        else "saturation-only mode: scale-down"
    )
    assert [d.reason for d in out] == [expected, expected]


@pytest.mark.parametrize("count", [3.0, 1.0, 0.5, 1e-9])
def test_wva_acc_41_requests_keep_targets(count: float) -> None:
    ds = [decision("a", 3, 4), decision("b", 2, 1)]
    assert enforce(ds, ON, idle(count), now=NOW) == ds


def test_wva_acc_42_no_series_keeps_targets() -> None:
    ds = [decision("a", 3, 4)]
    assert enforce(ds, ON, idle(None), now=NOW) == ds


def test_scale_to_zero_enabled_does_not_add_minimum() -> None:
    ds = [decision("a", 1, 0)]
    assert enforce(ds, ON, idle(5.0), now=NOW) == ds


def test_empty_decisions() -> None:
    assert enforce([], OFF, idle(0.0), now=NOW) == []


@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 5), st.sampled_from([0.0, 5.0, 10.0])),
        max_size=4,
    ),
    st.booleans(),
    st.one_of(st.none(), st.sampled_from([0.0, 2.0])),
    st.sampled_from(["v1", "v2"]),
)
def test_enforce_properties(
    specs: list[tuple[int, int, float]], enabled: bool, count: float | None, analyzer: str
) -> None:
    ds = [decision(f"v{i}", cur, tgt, cost=c) for i, (cur, tgt, c) in enumerate(specs)]
    out = enforce(ds, ScaleToZeroPolicy(enabled=enabled), idle(count), NOW, analyzer)  # type: ignore[arg-type]
    assert len(out) == len(ds)
    assert all(d.target_replicas >= 0 for d in out)
    if ds and not enabled:
        assert sum(d.target_replicas for d in out) >= 1
    if enabled and count == 0.0:
        assert all(d.target_replicas == 0 for d in out)


# -- pyllmd's guards before a zeroing (differences-from-upstream.md) ---------------------------


@pytest.mark.parametrize("age", [0.0, 1.0, 300.0, 599.0])
def test_a_pod_younger_than_the_retention_period_keeps_the_model(age: float) -> None:
    # A woken variant serves its first request, but Prometheus has not counted it yet.
    ds = [decision("a", 1, 1), decision("b", 0, 0)]
    activity = Activity(0.0, recent_success=False, newest_ready=NOW - age)
    assert enforce(ds, ON, activity, NOW) == ds
    assert zero_hold(ON, activity, NOW) == (
        f"its newest pod has been ready for {age:.0f}s, less than the 600s retention period"
    )


@pytest.mark.parametrize("age", [600.0, 601.0, 86400.0])
def test_pods_at_least_the_retention_period_old_allow_the_zeroing(age: float) -> None:
    ds = [decision("a", 1, 1)]
    out = enforce(ds, ON, Activity(0.0, recent_success=False, newest_ready=NOW - age), NOW)
    assert targets(out) == {"a": 0}


def test_a_success_first_seen_within_the_window_keeps_the_model() -> None:
    ds = [decision("a", 1, 1)]
    activity = Activity(0.0, recent_success=True, newest_ready=NOW - 3600)
    assert enforce(ds, ON, activity, NOW) == ds
    assert zero_hold(ON, activity, NOW) == (
        "a successful request was first seen less than 600s ago (retention period)"
    )


def test_an_unknown_guard_keeps_the_model() -> None:
    ds = [decision("a", 1, 1)]
    assert enforce(ds, ON, Activity(0.0, recent_success=None), NOW) == ds


def test_no_ready_pod_does_not_hold_the_zeroing() -> None:
    out = enforce([decision("a", 1, 1)], ON, Activity(0.0, False, None), NOW)
    assert targets(out) == {"a": 0}


def test_a_held_zeroing_is_logged_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="pyllmd.autoscaler.decide.enforce"):
        enforce([decision("a", 1, 1)], ON, Activity(0.0, False, NOW - 10), NOW)
    assert "not scaling model" in caplog.text and "ready for 10s" in caplog.text
    assert "no requests in retention window" not in caplog.text


@given(
    st.one_of(st.none(), st.sampled_from([0.0, 1.0])),
    st.one_of(st.none(), st.booleans()),
    st.one_of(st.none(), st.floats(0, 2000)),
)
def test_zeroing_needs_every_guard(
    count: float | None, recent: bool | None, age: float | None
) -> None:
    ds = [decision("a", 2, 2), decision("b", 1, 0)]
    newest = None if age is None else NOW - age
    out = enforce(ds, ON, Activity(count, recent, newest), NOW)
    zeroed = all(d.target_replicas == 0 for d in out)
    expected = count == 0 and recent is False and (age is None or age >= 600)
    assert zeroed == expected
    if not zeroed:
        assert out == ds


def test_carry_over_previous_target() -> None:
    d = carry_over(variant("v", 2, desired=3, previous_accelerator="H100"))
    assert d is not None
    assert (d.target_replicas, d.accelerator, d.current_replicas) == (3, "H100", 2)


def test_carry_over_without_previous_desired_uses_current() -> None:
    d = carry_over(variant("v", 2, desired=0, previous_accelerator="H100"))
    assert d is not None and d.target_replicas == 2


def test_carry_over_without_previous_accelerator_publishes_nothing() -> None:
    # The VA label alone is not enough: no decision, no previous status → MetricsMissing.
    assert carry_over(variant("v", 2, desired=3, accelerator="H100")) is None


def test_wva_acc_55_safety_net() -> None:
    out = safety_net(
        [
            variant("prev", 2, desired=3, previous_accelerator="A100", accelerator="H100"),
            variant("label-only", 2, accelerator="L40S"),
            variant("nothing", 4, accelerator=""),
        ]
    )
    assert [(d.variant, d.current_replicas, d.target_replicas, d.accelerator) for d in out] == [
        ("prev", 2, 3, "A100"),
        ("label-only", 2, 2, "L40S"),
    ]
