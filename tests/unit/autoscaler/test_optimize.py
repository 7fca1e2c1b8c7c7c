"""The cost-aware optimizer (spec §5.2, §6.1; acceptance checks 35-37)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyllmd.autoscaler.decide.analyze import SaturationV2Analyzer, V2State
from pyllmd.autoscaler.decide.analyze.saturation_v2 import CapacityAnalysis, VariantCapacity
from pyllmd.autoscaler.decide.model import SaturationConfig
from pyllmd.autoscaler.decide.optimize import cost_aware

from .decisionkit import MODEL, NS, group, replica, targets, variant


def vc(name: str, current: int, per_replica: float, cost: float = 10.0) -> VariantCapacity:
    return VariantCapacity(
        variant=name,
        accelerator="H100",
        cost=cost,
        current_replicas=current,
        ready_replicas=current,
        pending_replicas=0,
        per_replica_capacity=per_replica,
        total_capacity=current * per_replica,
        total_demand=0.0,
    )


def result(
    *variants: VariantCapacity, required: float = 0.0, spare: float = 0.0
) -> CapacityAnalysis:
    return CapacityAnalysis(
        model_id=MODEL,
        namespace=NS,
        variants=variants,
        replicas=(),
        total_supply=sum(v.total_capacity for v in variants),
        anticipated_supply=sum(v.total_capacity for v in variants),
        total_demand=0.0,
        scheduler_demand=0.0,
        required_capacity=required,
        spare_capacity=spare,
    )


@pytest.mark.parametrize(
    ("required", "added"),
    [(1.0, 1), (12799.9, 1), (12800.0, 1), (12800.1, 2), (9694.1, 1), (38400.0, 3)],
)
def test_wva_acc_35_ceil_of_required(required: float, added: int) -> None:
    (d,) = cost_aware(result(vc("v", 2, 12800), required=required))
    assert d.target_replicas == 2 + added
    assert d.action == "scale-up"


@pytest.mark.parametrize(
    ("cost_a", "cost_b", "winner", "added"),
    [
        # cost per token: a = 10/12800 = 7.8e-4; b = 30/51200 = 5.9e-4 → b, ceil(14964.7/51200) = 1.
        (10.0, 30.0, "b", 1),
        # b = 80/51200 = 1.6e-3 → a, ceil(14964.7/12800) = 2.
        (10.0, 80.0, "a", 2),
    ],
)
def test_wva_acc_35_most_cost_efficient_variant_absorbs_it(
    cost_a: float, cost_b: float, winner: str, added: int
) -> None:
    g = group(
        [variant("a", 2, cost=cost_a), variant("b", 1, cost=cost_b)],
        [replica("a", 0.9375, blocks=1000, block_size=16, cost=cost_a) for _ in range(2)]
        + [replica("b", 0.75, blocks=4000, block_size=16, cost=cost_b)],
    )
    ds = SaturationV2Analyzer(V2State()).analyze(g, SaturationConfig(), 0.0)
    current = {"a": 2, "b": 1}
    assert targets(ds) == {n: current[n] + (added if n == winner else 0) for n in current}


def test_scale_up_skips_variants_without_capacity() -> None:
    ds = cost_aware(result(vc("none", 1, 0.0, cost=1), vc("some", 1, 1000.0), required=1500))
    assert targets(ds) == {"none": 1, "some": 3}


def test_scale_up_spills_over_only_when_needed() -> None:
    # The first variant's ceil always covers the remainder, so the second is untouched.
    ds = cost_aware(result(vc("a", 1, 100.0, cost=1), vc("b", 1, 100.0, cost=2), required=250))
    assert targets(ds) == {"a": 4, "b": 1}


@pytest.mark.parametrize(
    ("spare", "expect"),
    [
        (12799.0, {"cheap": 1, "pricey": 2}),
        (12800.0, {"cheap": 1, "pricey": 1}),
        (24114.3, {"cheap": 1, "pricey": 1}),
        (25600.0, {"cheap": 1, "pricey": 0}),
        (38400.0, {"cheap": 1, "pricey": 0}),
    ],
)
def test_wva_acc_36_floor_of_spare(spare: float, expect: dict[str, int]) -> None:
    ds = cost_aware(
        result(vc("cheap", 1, 12800, cost=5), vc("pricey", 2, 12800, cost=20), spare=spare)
    )
    assert targets(ds) == expect


def test_wva_acc_37_cheapest_keeps_one_when_alone() -> None:
    (d,) = cost_aware(result(vc("v", 4, 100), spare=1e9))
    assert d.target_replicas == 1


def test_wva_acc_37_equal_costs_never_empty_the_model() -> None:
    ds = cost_aware(result(vc("a", 1, 100), vc("b", 1, 100), spare=1e9))
    assert sorted(targets(ds).values()) == [0, 1]
    assert targets(ds)["a"] == 1  # the cheapest (first on ties) is the protected one


def test_reasons() -> None:
    up = cost_aware(result(vc("v", 1, 100), required=150.5))
    down = cost_aware(result(vc("v", 3, 100), spare=250.5))
    steady = cost_aware(result(vc("v", 3, 100)))
    assert up[0].reason == "V2 scale-up (optimizer: cost-aware, required: 150)"
    assert down[0].reason == "V2 scale-down (optimizer: cost-aware, spare: 250)"
    assert steady[0].reason == "V2 steady state"


def test_required_wins_over_spare() -> None:
    (d,) = cost_aware(result(vc("v", 2, 100), required=50, spare=500))
    assert d.target_replicas == 3


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        # Active variants always have ≥ 1 current replica (0 replicas = scale-from-zero's business).
        st.tuples(
            st.integers(1, 6),
            st.sampled_from([0.0, 50.0, 100.0, 1000.0]),
            st.sampled_from([1.0, 5.0, 9.0]),
        ),
        min_size=1,
        max_size=4,
    ),
    st.floats(0, 1e5),
    st.booleans(),
)
def test_targets_bounded(specs: list[tuple[int, float, float]], amount: float, up: bool) -> None:
    variants = [vc(f"v{i}", cur, cap, cost) for i, (cur, cap, cost) in enumerate(specs)]
    r = result(*variants, required=amount if up else 0.0, spare=0.0 if up else amount)
    ds = cost_aware(r)
    assert all(d.target_replicas >= 0 for d in ds)
    if up:
        assert all(d.target_replicas >= d.current_replicas for d in ds)
        added = sum(d.target_replicas - d.current_replicas for d in ds)
        best = max((v.per_replica_capacity for v in variants), default=0.0)
        if amount > 0 and best > 0:
            assert added >= 1
    else:
        assert all(d.target_replicas <= d.current_replicas for d in ds)
        removed = sum(
            (d.current_replicas - d.target_replicas) * v.per_replica_capacity
            for d, v in zip(ds, variants, strict=True)
        )
        assert removed <= amount + 1e-6
        assert sum(d.target_replicas for d in ds) >= 1
