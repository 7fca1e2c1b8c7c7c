"""Queueing-model sizing (spec §5.3): rate limits by bisection, replicas, penalty."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyllmd.autoscaler.decide.analyze.queueing import (
    ACCEL_PENALTY_FACTOR,
    SLO_MARGIN,
    SLO_PERCENTILE,
    InfeasibleTarget,
    Placement,
    QueueModel,
    RequestSize,
    ServiceParams,
    Targets,
    max_rate,
    replicas_needed,
    size,
    transition_penalty,
)
from pyllmd.autoscaler.decide.analyze.queueing.sizing import max_under, ttft_at

MODEL = QueueModel(ServiceParams(6.0, 0.04, 0.0002), RequestSize(1000, 200), max_batch_size=16)
EDGE = 1e-4  # well above the search tolerance (1e-6 relative)


def test_slo_constants() -> None:
    assert SLO_PERCENTILE == 0.95
    assert SLO_MARGIN == pytest.approx(-math.log(0.05))
    assert SLO_MARGIN == pytest.approx(2.995732, rel=1e-6)
    assert ACCEL_PENALTY_FACTOR == 0.1


def boundary_targets() -> list[Targets]:
    low, high = MODEL.analyze(MODEL.max_rate * 0.05), MODEL.analyze(MODEL.max_rate * 0.9)
    mid_itl = (low.itl + high.itl) / 2
    mid_ttft = (low.ttft + high.ttft) / 2
    return [Targets(itl_ms=mid_itl), Targets(ttft_ms=mid_ttft)]


@pytest.mark.parametrize("targets", boundary_targets(), ids=["itl", "ttft"])
def test_bisection_finds_the_boundary_rate(targets: Targets) -> None:
    limits = max_rate(MODEL, targets)
    rate = limits.rate
    assert MODEL.min_rate < rate < MODEL.max_rate

    def metric(r: float) -> float:
        m = MODEL.analyze(r)
        return m.itl if targets.itl_ms else m.ttft

    target = targets.itl_ms or targets.ttft_ms
    assert metric(rate * (1 - EDGE)) <= target  # SLO holds just below
    assert metric(rate) <= target
    assert metric(rate * (1 + EDGE)) > target  # and fails just above
    assert limits.metrics.offered_rate == rate


def test_binding_limit_is_the_smallest() -> None:
    itl, ttft = boundary_targets()
    both = max_rate(MODEL, Targets(ttft_ms=ttft.ttft_ms, itl_ms=itl.itl_ms))
    assert both.rate == min(both.ttft, both.itl)
    assert both.tps == MODEL.max_rate


def test_percentile_target_scales_the_wait() -> None:
    target = Targets(ttft_ms=boundary_targets()[1].ttft_ms)
    mean = max_rate(MODEL, target)
    p95 = max_rate(MODEL, target, percentile=0.95)
    assert p95.rate < mean.rate
    m = MODEL.analyze(p95.rate * (1 + EDGE))
    assert ttft_at(m, SLO_MARGIN) > target.ttft_ms
    m = MODEL.analyze(p95.rate * (1 - EDGE))
    assert ttft_at(m, SLO_MARGIN) <= target.ttft_ms
    assert SLO_MARGIN * m.avg_wait_time + m.avg_prefill_time + m.itl == ttft_at(m, SLO_MARGIN)


def test_loose_targets_allow_the_maximum_rate() -> None:
    limits = max_rate(MODEL, Targets(ttft_ms=1e9, itl_ms=1e9))
    assert limits.rate == MODEL.max_rate
    assert max_rate(MODEL, Targets()).rate == MODEL.max_rate


def test_unreachable_target_is_infeasible() -> None:
    lowest = MODEL.analyze(MODEL.min_rate)
    with pytest.raises(InfeasibleTarget):
        max_rate(MODEL, Targets(itl_ms=lowest.itl * 0.99))
    # exactly the lowest-rate value is still met
    assert max_rate(MODEL, Targets(itl_ms=lowest.itl)).rate >= MODEL.min_rate


def test_tps_target_keeps_a_stability_margin() -> None:
    limits = max_rate(MODEL, Targets(tps=100))
    assert limits.tps == pytest.approx(MODEL.max_rate * 0.9)
    assert limits.rate == limits.tps
    sized = size(MODEL, Targets(tps=1000), arrival_rate=0.0)
    assert sized.total_rate == pytest.approx(1000 / 200)  # TPS / output tokens
    assert sized.replicas == math.ceil(5 / limits.tps)


def test_negative_target_is_rejected() -> None:
    with pytest.raises(ValueError):
        max_rate(MODEL, Targets(itl_ms=-1))


@given(target=st.floats(0.01, 0.99))
@settings(max_examples=30)
def test_max_under_brackets_the_crossing(target: float) -> None:
    x = max_under(lambda v: v**2, 0.0, 1.0, target)
    assert x**2 <= target
    assert (x + 2e-6) ** 2 > target


@pytest.mark.parametrize(
    ("total", "per", "minimum", "want"),
    [
        (0.0, 2.0, 0, 0),
        (0.0, 2.0, 2, 2),
        (6.0, 2.0, 0, 3),  # exactly three replicas' worth
        (6.000001, 2.0, 0, 4),
        (5.999999, 2.0, 0, 3),
        (0.3, 0.1, 0, 3),  # 0.3 / 0.1 = 2.9999999999999996 in floats
        (1.0, 2.0, 3, 3),
    ],
)
def test_replicas_needed(total: float, per: float, minimum: int, want: int) -> None:
    assert replicas_needed(total, per, minimum) == want


def test_replicas_needed_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        replicas_needed(1.0, 0.0)
    with pytest.raises(ValueError):
        replicas_needed(-1.0, 1.0)


def test_size_meets_targets_with_fewest_replicas() -> None:
    targets = boundary_targets()[0]
    limits = max_rate(MODEL, targets)
    arrival = limits.rate * 3.5
    sized = size(MODEL, targets, arrival)
    assert sized.replicas == 4
    assert sized.metrics is not None
    assert sized.metrics.offered_rate == pytest.approx(arrival / 4)
    assert sized.metrics.itl <= targets.itl_ms
    # one replica fewer would carry more than the limit and miss the ITL target
    assert MODEL.analyze(arrival / 3).itl > targets.itl_ms


def test_size_without_load() -> None:
    sized = size(MODEL, Targets(itl_ms=1e9), 0.0, min_replicas=1)
    assert sized.replicas == 1
    assert sized.metrics is None
    assert size(MODEL, Targets(), 0.0).replicas == 0


def test_more_replicas_lower_per_replica_load() -> None:
    total = MODEL.max_rate * 2.5
    per_replica = [MODEL.analyze(total / r) for r in range(1, 8)]
    for more, fewer in zip(per_replica[1:], per_replica, strict=False):
        assert more.offered_rate < fewer.offered_rate
        # non-increasing, up to rounding while every replica is still saturated
        assert more.rho <= fewer.rho + 1e-12
        assert more.ttft <= fewer.ttft * (1 + 1e-12)
        assert more.itl <= fewer.itl * (1 + 1e-12)
    assert per_replica[-1].ttft < per_replica[0].ttft / 10


def test_transition_penalty() -> None:
    a = Placement("A100", 2, 100.0)
    assert transition_penalty(a, Placement("A100", 2, 100.0)) == 0.0
    assert transition_penalty(a, Placement("A100", 3, 150.0)) == 50.0
    assert transition_penalty(a, Placement("A100", 1, 50.0)) == -50.0
    assert transition_penalty(a, Placement("H100", 2, 120.0)) == pytest.approx(
        0.1 * (100 + 120) + 20
    )
