"""Scale-to-zero / minimum replicas and no-decision fallbacks (spec §8.1, §6.2, §3.5, §3.6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyllmd.autoscaler.enforce import carry_over, enforce, safety_net
from pyllmd.autoscaler.model import ScaleToZeroPolicy

from .decisionkit import decision, targets, variant

ON = ScaleToZeroPolicy(enabled=True, retention_seconds=600)
OFF = ScaleToZeroPolicy(enabled=False)


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
    out = enforce(ds, OFF, request_count=0.0)
    assert targets(out) == {n: 1 if n == winner else 0 for n in costs}
    (kept,) = [d for d in out if d.variant == winner]
    assert kept.reason == "saturation-only mode: no-change"


def test_wva_acc_39_v2_reason_and_zero_cost_default() -> None:
    # V2 treats cost 0 as the default 10.0: "b" (cost 7) is cheaper than "a" (cost 0 → 10).
    ds = [decision("a", 2, 0, cost=0.0), decision("b", 2, 0, cost=7.0)]
    out = enforce(ds, OFF, request_count=None, analyzer="v2")
    assert targets(out) == {"a": 0, "b": 1}
    assert out[1].reason == "V2 scale-down (optimizer: cost-aware, enforced)"
    assert out[0].reason == ""  # unchanged decisions keep their reason


def test_wva_acc_39_nonzero_total_untouched() -> None:
    ds = [decision("a", 1, 0), decision("b", 1, 1)]
    assert enforce(ds, OFF, request_count=0.0) == ds


@pytest.mark.parametrize("analyzer", ["v1", "v2"])
def test_wva_acc_40_scale_to_zero(analyzer: str) -> None:
    ds = [decision("a", 3, 4, reason="x"), decision("b", 2, 2, reason="y")]
    out = enforce(ds, ON, request_count=0.0, analyzer=analyzer)  # type: ignore[arg-type]
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
    assert enforce(ds, ON, request_count=count) == ds


def test_wva_acc_42_no_series_keeps_targets() -> None:
    ds = [decision("a", 3, 4)]
    assert enforce(ds, ON, request_count=None) == ds


def test_scale_to_zero_enabled_does_not_add_minimum() -> None:
    ds = [decision("a", 1, 0)]
    assert enforce(ds, ON, request_count=5.0) == ds


def test_empty_decisions() -> None:
    assert enforce([], OFF, request_count=0.0) == []


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
    out = enforce(ds, ScaleToZeroPolicy(enabled=enabled), count, analyzer)  # type: ignore[arg-type]
    assert len(out) == len(ds)
    assert all(d.target_replicas >= 0 for d in out)
    if ds and not enabled:
        assert sum(d.target_replicas for d in out) >= 1
    if enabled and count == 0.0:
        assert all(d.target_replicas == 0 for d in out)


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
