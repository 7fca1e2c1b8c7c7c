"""V2 token-capacity analyzer (spec §5.2, acceptance checks 33-38)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyllmd.autoscaler.decide.analyze import SaturationV2Analyzer, V2State, make_analyzer
from pyllmd.autoscaler.decide.analyze.capacity_store import (
    DEPLOYMENT,
    LIVE,
    CapacityRecord,
    RollingAverage,
)
from pyllmd.autoscaler.decide.analyze.saturation_v2 import (
    analyze_capacity,
    estimate_from_params,
    median,
    output_bucket,
    scheduler_queue_demand,
    stored_capacity,
)
from pyllmd.autoscaler.decide.model import SaturationConfig, VllmParams

from .decisionkit import MODEL, NS, group, replica, targets, variant

CFG = SaturationConfig(analyzer_name="saturation")
NOW = 1_700_000_000.0


def cap_replica(name: str, kv: float, queue: int = 0, *, blocks: int = 1000, **kw: object):  # type: ignore[no-untyped-def]
    """A replica with `vllm:cache_config_info` (block size 16)."""
    return replica(name, kv, queue, blocks=blocks, block_size=16, **kw)  # type: ignore[arg-type]


def test_wva_acc_33_v2_default_thresholds() -> None:
    # Omitted thresholds default to 0.85 / 0.70 (rejection of up ≤ down is config validation).
    assert (CFG.scale_up_threshold, CFG.scale_down_boundary) == (0.85, 0.70)
    a = analyze_capacity(
        group([variant("v", 2)], [cap_replica("v", 0.9375), cap_replica("v", 0.9375)]),
        CFG,
        V2State(),
        NOW,
    )
    assert a.required_capacity == pytest.approx(30000 / 0.85 - 25600)


def test_wva_acc_34_capacity_tokens() -> None:
    g = group([variant("v", 1)], [cap_replica("v", 0.5)])
    a = analyze_capacity(g, CFG, V2State(), NOW)
    (rc,) = a.replicas
    assert rc.total_kv_capacity_tokens == 16000
    assert rc.tokens_in_use == 8000
    assert rc.k1 == 12800
    assert rc.k2 == 12800  # no queue, no history, no vLLM args: k2 falls back to k1
    assert rc.effective_capacity == 12800
    assert rc.demand == 8000 and not rc.saturated


def test_wva_acc_34_effective_capacity_bounded_by_derived_k2() -> None:
    params = VllmParams(max_num_seqs=4)
    g = group([variant("v", 1, params=params)], [cap_replica("v", 0.5, avg_in=1000, avg_out=200)])
    (rc,) = analyze_capacity(g, CFG, V2State(), NOW).replicas
    # n = min(4, 8192·200/1200) = 4; k2 = 4 · (1000 + 100) = 4400 ≤ k1.
    assert (rc.k1, rc.k2, rc.effective_capacity) == (12800, 4400, 4400)


@pytest.mark.parametrize(
    ("kv", "queue", "avg_in", "demand"),
    [
        (0.5, 0, 0.0, 8000),
        (0.5, 3, 0.0, 8000),  # no input-length estimate → queue adds nothing
        (0.5, 3, 100.9, 8000 + 3 * 100),  # avg input truncated
        (0.0, 2, 50.0, 100),
    ],
)
def test_replica_demand(kv: float, queue: int, avg_in: float, demand: int) -> None:
    g = group([variant("v", 1)], [cap_replica("v", kv, queue, avg_in=avg_in)])
    (rc,) = analyze_capacity(g, CFG, V2State(), NOW).replicas
    assert rc.demand == demand


def test_wva_acc_35_required_capacity_scales_cheapest_per_token() -> None:
    g = group([variant("v", 2)], [cap_replica("v", 0.9375), cap_replica("v", 0.9375)])
    a = analyze_capacity(g, CFG, V2State(), NOW)
    assert (a.total_demand, a.total_supply, a.anticipated_supply) == (30000, 25600, 25600)
    assert a.required_capacity == pytest.approx(9694.1, abs=0.1)
    (d,) = SaturationV2Analyzer().analyze(g, CFG, NOW)
    assert d.target_replicas == 3
    assert d.reason == "V2 scale-up (optimizer: cost-aware, required: 9694)"


def test_wva_acc_36_spare_capacity_removes_most_expensive() -> None:
    g = group(
        [variant("cheap", 1, cost=5), variant("pricey", 2, cost=20)],
        [cap_replica("cheap", 0.625, cost=5), cap_replica("pricey", 0.0, cost=20)]
        + [cap_replica("pricey", 0.0, cost=20)],
    )
    a = analyze_capacity(g, CFG, V2State(), NOW)
    assert (a.total_supply, a.total_demand) == (38400, 10000)
    assert a.spare_capacity == pytest.approx(38400 - 10000 / 0.7)
    ds = SaturationV2Analyzer().analyze(g, CFG, NOW)
    assert targets(ds) == {"cheap": 1, "pricey": 1}
    assert ds[1].reason == "V2 scale-down (optimizer: cost-aware, spare: 24114)"
    assert ds[0].reason == "V2 steady state"


@pytest.mark.parametrize(("current", "target"), [(1, 1), (2, 1), (5, 1)])
def test_wva_acc_37_last_replica_of_cheapest_kept(current: int, target: int) -> None:
    g = group([variant("v", current)], [cap_replica("v", 0.0) for _ in range(current)])
    (d,) = SaturationV2Analyzer().analyze(g, CFG, NOW)
    assert d.target_replicas == target


def test_wva_acc_37_cheapest_may_go_when_another_variant_serves() -> None:
    # pricey's replica (51200 tokens) exceeds the spare (44000) so it stays; cheap can go to 0.
    g = group(
        [variant("cheap", 1, cost=5), variant("pricey", 1, cost=20)],
        [cap_replica("cheap", 0.0, cost=5), cap_replica("pricey", 0.21875, blocks=4000, cost=20)],
    )
    a = analyze_capacity(g, CFG, V2State(), NOW)
    assert a.spare_capacity == pytest.approx(44000)
    assert targets(SaturationV2Analyzer().analyze(g, CFG, NOW)) == {"cheap": 0, "pricey": 1}


def test_wva_acc_38_replicas_without_cache_config_add_no_capacity() -> None:
    g = group(
        [variant("v", 2)],
        [cap_replica("v", 0.5), replica("v", 0.9, 10)],  # second pod lacks cache_config_info
    )
    a = analyze_capacity(g, CFG, V2State(), NOW)
    assert len(a.replicas) == 1
    assert a.total_demand == 8000
    assert a.variants[0].per_replica_capacity == 12800
    assert a.total_supply == 2 * 12800  # ready replicas × median of the pods that have data


def test_wva_acc_38_variant_without_any_capacity_data() -> None:
    g = group([variant("v", 2)], [replica("v", 0.9, 10), replica("v", 0.9, 10)])
    a = analyze_capacity(g, CFG, V2State(), NOW)
    assert a.replicas == ()
    assert (a.total_supply, a.total_demand, a.required_capacity) == (0, 0, 0)
    (d,) = SaturationV2Analyzer().analyze(g, CFG, NOW)
    assert d.target_replicas == 2 and d.reason == "V2 steady state"


def test_observed_k2_feeds_history() -> None:
    state = V2State()
    busy = group([variant("v", 1)], [cap_replica("v", 0.5, 5, avg_out=50)])
    (rc,) = analyze_capacity(busy, CFG, state, now=10.0).replicas
    assert rc.k2 == 8000
    assert list(state.history[f"{MODEL}|H100|short"].values) == [8000.0]
    calm = group([variant("v", 1)], [cap_replica("v", 0.25, 0, avg_out=50)])
    (rc,) = analyze_capacity(calm, CFG, state, NOW).replicas
    assert rc.k2 == 8000 and rc.effective_capacity == 8000
    # Another output bucket has no history.
    other = group([variant("v", 1)], [cap_replica("v", 0.25, 0, avg_out=100)])
    (rc,) = analyze_capacity(other, CFG, state, NOW).replicas
    assert rc.k2 == rc.k1


@pytest.mark.parametrize(("queue", "observed"), [(4, False), (5, True)])
def test_observed_k2_queue_threshold(queue: int, observed: bool) -> None:
    g = group([variant("v", 1)], [cap_replica("v", 0.5, queue)])
    (rc,) = analyze_capacity(g, CFG, V2State(), NOW).replicas
    assert rc.k2 == (8000 if observed else 12800)


def test_observed_k2_needs_tokens_in_use() -> None:
    state = V2State()
    (rc,) = analyze_capacity(
        group([variant("v", 1)], [cap_replica("v", 0.0, 9)]), CFG, state, NOW
    ).replicas
    assert rc.k2 == 12800 and state.history == {}


def test_rolling_average_window() -> None:
    ra = RollingAverage()
    for v in range(1, 13):
        ra.add(float(v), NOW)
    assert list(ra.values) == [float(v) for v in range(3, 13)]
    assert ra.average() == 7.5
    assert RollingAverage().average() == 0.0


@pytest.mark.parametrize(
    ("avg_out", "bucket"),
    [(0.0, "short"), (99.9, "short"), (100.0, "medium"), (499.9, "medium"), (500.0, "long")],
)
def test_output_bucket(avg_out: float, bucket: str) -> None:
    assert output_bucket(avg_out) == bucket


@pytest.mark.parametrize(
    ("params", "avg_in", "avg_out", "k2"),
    [
        (VllmParams(), 1000.0, 200.0, int(256 * 1100)),
        (VllmParams(max_num_seqs=1000), 1000.0, 200.0, 1000 * 1100),
        (VllmParams(max_num_seqs=2000), 1000.0, 200.0, int(8192 * 200 / 1200 * 1100)),
        (VllmParams(), 1000.0, 0.0, 0),
        (None, 1000.0, 200.0, 0),
        (VllmParams(max_num_batched_tokens=-1, max_num_seqs=2000, v1_engine=False), 10, 10, 15360),
    ],
)
def test_estimate_from_params(
    params: VllmParams | None, avg_in: float, avg_out: float, k2: int
) -> None:
    assert estimate_from_params(params, avg_in, avg_out) == k2


@pytest.mark.parametrize(("values", "m"), [([], 0), ([5], 5), ([1, 9, 3], 3), ([4, 1, 2, 8], 3)])
def test_median(values: list[int], m: int) -> None:
    assert median(values) == m


def test_pending_replicas_count_as_anticipated_supply() -> None:
    g = group([variant("v", 3, ready=2)], [cap_replica("v", 0.9375), cap_replica("v", 0.9375)])
    a = analyze_capacity(g, CFG, V2State(), NOW)
    assert a.total_supply == 25600
    assert a.anticipated_supply == 38400
    assert a.required_capacity == 0  # 30000/0.85 = 35294 < 38400
    (d,) = SaturationV2Analyzer().analyze(g, CFG, NOW)
    assert d.target_replicas == 3


def test_scheduler_queue_demand_is_fed() -> None:
    reps = [cap_replica("v", 0.0, avg_in=1000, avg_out=200, hit=0.5)]
    assert scheduler_queue_demand(10, 0, reps) == pytest.approx(10000 * 0.5 + 2000)
    assert scheduler_queue_demand(10, 80000, reps) == pytest.approx(20000 * 0.5 + 2000)
    assert scheduler_queue_demand(0, 0, reps) == 0
    g = group([variant("v", 1)], reps, queue_size=10)
    a = analyze_capacity(g, CFG, V2State(), NOW)
    assert a.scheduler_demand == pytest.approx(7000)
    assert a.total_demand == pytest.approx(7000)


def test_deployment_record_then_live_record() -> None:
    state = V2State()
    params = VllmParams(num_gpu_blocks_override=500, block_size=32)
    idle = group([variant("v", 1, params=params)])
    analyze_capacity(idle, CFG, state, now=1.0)
    rec = state.record(NS, MODEL, "v")
    assert rec is not None and rec.learned_from == DEPLOYMENT
    assert (rec.effective_capacity, rec.total_kv_capacity_tokens) == (8192, 16000)
    busy = group([variant("v", 1, params=params)], [cap_replica("v", 0.5)])
    analyze_capacity(busy, CFG, state, now=2.0)
    rec = state.record(NS, MODEL, "v")
    assert rec is not None and rec.learned_from == LIVE and rec.params == params
    analyze_capacity(idle, CFG, state, now=3.0)  # a deployment record never replaces a live one
    rec = state.record(NS, MODEL, "v")
    assert rec is not None and rec.learned_from == LIVE and rec.effective_capacity == 12800


def test_variant_without_metrics_uses_stored_capacity_and_va_cost() -> None:
    state = V2State()
    analyze_capacity(
        group([variant("b", 1, cost=3)], [cap_replica("b", 0.1, cost=3)]), CFG, state, NOW
    )
    # Later b's pods report nothing (e.g. scraping gap) while a is overloaded.
    g = group(
        [variant("a", 1, cost=10), variant("b", 1, cost=3, accelerator="L40S")],
        [cap_replica("a", 0.9375)],
    )
    a = analyze_capacity(g, CFG, state, NOW)
    b = a.variants[1]
    assert (b.per_replica_capacity, b.cost, b.accelerator) == (12800, 3, "L40S")
    ds = SaturationV2Analyzer(state).analyze(g, CFG, NOW)
    assert ds[1].accelerator == "L40S" and ds[1].cost == 3


def test_stored_capacity_of_deployment_record() -> None:
    state = V2State()
    params = VllmParams(max_num_seqs=64)
    rec = CapacityRecord("H100", 1, 8192, DEPLOYMENT, params=params)
    assert stored_capacity(state, rec, MODEL, 0.8, 0.0, 0.0) == 8192  # no workload data
    # 64 · (1000 + 100) = 70400 derived from the model's workload.
    assert stored_capacity(state, rec, MODEL, 0.8, 1000.0, 200.0) == 70400
    pinned = CapacityRecord(
        "H100", 1, 8192, DEPLOYMENT, params=params, total_kv_capacity_tokens=16000
    )
    assert stored_capacity(state, pinned, MODEL, 0.8, 1000.0, 200.0) == 12800
    state.store("other-ns", MODEL, "x", CapacityRecord("H100", 1, 9000, LIVE, params=params))
    assert stored_capacity(state, rec, MODEL, 0.8, 1000.0, 200.0) == 9000


def test_find_compatible_prefers_live() -> None:
    state = V2State()
    p = VllmParams()
    state.store("n1", MODEL, "dep", CapacityRecord("H100", 1, 8192, DEPLOYMENT, params=p))
    state.store("n2", MODEL, "live", CapacityRecord("H100", 1, 5000, LIVE, params=p))
    state.store(
        "n3",
        MODEL,
        "tp2",
        CapacityRecord("H100", 1, 7000, LIVE, params=VllmParams(tensor_parallel_size=2)),
    )
    state.store("n4", MODEL, "a100", CapacityRecord("A100", 1, 6000, LIVE, params=p))
    found = state.find_compatible(MODEL, "H100", 1, VllmParams(max_num_seqs=8, enforce_eager=True))
    assert found is not None and found.effective_capacity == 5000
    assert state.find_compatible(MODEL, "H100", 2, p) is None
    assert state.find_compatible("other-model", "H100", 1, p) is None


def test_evict_drops_old_state() -> None:
    state = V2State()
    analyze_capacity(group([variant("v", 1)], [cap_replica("v", 0.5, 5)]), CFG, state, now=0.0)
    assert state.evict(now=3600.0) == 0
    assert state.evict(now=25 * 3600.0) == 1  # the k2 history
    assert state.records
    assert state.evict(now=8 * 24 * 3600.0) == 1
    assert not state.records and not state.history


def test_registry_selects_v2_with_shared_state() -> None:
    state = V2State()
    analyzer = make_analyzer("saturation", state)
    assert isinstance(analyzer, SaturationV2Analyzer) and analyzer.state is state


def test_v2_decides_for_every_variant() -> None:
    g = group([variant("a", 1), variant("b", 2, cost=20)], [cap_replica("a", 0.3)])
    ds = SaturationV2Analyzer().analyze(g, CFG, NOW)
    assert [d.variant for d in ds] == ["a", "b"]


# --- properties -------------------------------------------------------------------------------


@st.composite
def v2_groups(draw: st.DrawFn) -> tuple[object, ...]:
    variants = []
    replicas = []
    for i in range(draw(st.integers(1, 3))):
        name = f"v{i}"
        cost = draw(st.sampled_from([0.0, 5.0, 10.0, 20.0]))
        current = draw(st.integers(1, 6))
        ready = draw(st.integers(0, current))
        variants.append(variant(name, current, ready=ready, cost=cost))
        for _ in range(draw(st.integers(0, ready))):
            replicas.append(
                replica(
                    name,
                    draw(st.floats(0, 1)),
                    draw(st.integers(0, 20)),
                    cost=cost,
                    blocks=draw(st.sampled_from([0, 500, 1000, 4000])),
                    block_size=16,
                    avg_in=draw(st.sampled_from([0.0, 100.0, 2000.0])),
                    avg_out=draw(st.sampled_from([0.0, 50.0, 600.0])),
                )
            )
    return tuple(variants), tuple(replicas), draw(st.sampled_from([0.0, 5.0]))


@settings(max_examples=300, deadline=None)
@given(v2_groups())
def test_v2_scale_up_never_below_current(data: tuple[object, ...]) -> None:
    variants, replicas, queue = data
    g = group(variants, replicas, queue_size=queue)  # type: ignore[arg-type]
    a = analyze_capacity(g, CFG, V2State(), NOW)
    ds = SaturationV2Analyzer().analyze(g, CFG, NOW)
    assert all(d.target_replicas >= 0 for d in ds)
    assert a.required_capacity >= 0 and a.spare_capacity >= 0
    if a.required_capacity > 0:
        assert all(d.target_replicas >= d.current_replicas for d in ds)
    else:
        assert all(d.target_replicas <= d.current_replicas for d in ds)
    # The model keeps at least one replica: V2 alone never empties a model.
    assert sum(d.target_replicas for d in ds) >= 1
