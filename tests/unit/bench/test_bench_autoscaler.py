"""Figure (d)'s fleet builders, fakes and report: what the timed engine cycle works on."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime

import pytest
from bench import autoscaler_cycle as cyc
from bench import report
from bench.autoscaler_fleet import (
    SATURATION_CONFIG_MAP,
    SYSTEM_NAMESPACE,
    FakeCluster,
    FakeCollector,
    FleetShape,
    action_counts,
    build_fleet,
    empty_fleet,
    replicas_of,
)
from bench.run import parse_args

from pyllmd.autoscaler.decide.analyze import make_analyzer
from pyllmd.autoscaler.decide.status import StatusBook
from pyllmd.autoscaler.loops.metrics import ControllerMetrics
from pyllmd.autoscaler.loops.saturation import SaturationEngine
from pyllmd.autoscaler.yaml12 import parse_saturation_entry
from pyllmd.core.clock import VirtualClock

SMALL = FleetShape(models=20)


def test_default_fleet_has_1000_variants_in_250_models_and_4_namespaces() -> None:
    fleet = build_fleet(FleetShape())
    names = {(va.metadata.namespace, va.metadata.name) for va in fleet.vas}
    assert len(fleet.vas) == len(names) == 1000
    assert len({va.spec.model_id for va in fleet.vas}) == 250
    assert {va.metadata.namespace for va in fleet.vas} == {f"team-{n}" for n in range(4)}
    assert len(fleet.groups()) == 250
    replicas = [w.spec_replicas for w in fleet.workloads.values()]
    assert {2, 3, 4} == set(replicas)
    assert fleet.pod_count == sum(r or 0 for r in replicas)


def test_every_pod_has_metrics_and_belongs_to_its_variants_workload() -> None:
    fleet = build_fleet(SMALL)
    for group in fleet.groups():
        result = fleet.results[group.key]
        assert result.status == "ok"
        per_variant = Counter(r.variant for r in result.replicas)
        for state in group.variants:
            # as many pods with metrics as replicas: V1 sees no transition
            assert per_variant[state.name] == state.current_replicas == state.desired_replicas
        for r in result.replicas:
            workload = fleet.pods[group.namespace][r.pod]
            assert workload == r.variant
            assert 0.0 <= r.kv_usage <= 1.0


def test_replicas_cycle_between_min_and_max() -> None:
    shape = FleetShape(min_replicas=2, max_replicas=4)
    assert [replicas_of(0, j, shape) for j in range(4)] == [2, 3, 4, 2]
    assert replicas_of(1, 0, shape) == 3


@pytest.mark.parametrize("analyzer_name", ["", "saturation"])
def test_load_kinds_give_up_down_and_hold_under_both_analyzers(analyzer_name: str) -> None:
    fleet = build_fleet(SMALL, analyzer_name)
    cfg = parse_saturation_entry(
        fleet.config_maps[(SYSTEM_NAMESPACE, SATURATION_CONFIG_MAP)]["default"]
    )
    assert cfg.analyzer_name == analyzer_name
    analyzer = make_analyzer(analyzer_name)
    seen = set()
    for group in fleet.groups():
        counts = action_counts(analyzer.analyze(group, cfg, 0.0))
        load = fleet.loads[group.key]
        seen.add(load)
        if load == "up":
            assert counts["scale-up"] >= 1 and counts["scale-down"] == 0, group.key
        elif load == "down":
            assert counts["scale-down"] >= 1 and counts["scale-up"] == 0, group.key
        else:
            assert counts["no-change"] == len(group.variants), group.key
    assert seen == {"up", "down", "hold"}


def _engine(fleet_cluster: FakeCluster, collector: FakeCollector) -> SaturationEngine:
    return SaturationEngine(
        fleet_cluster, collector, ControllerMetrics(), StatusBook(), VirtualClock()
    )


@pytest.mark.parametrize("analyzer_name", ["", "saturation"])
async def test_cycle_over_the_fakes_decides_every_variant_the_same_each_time(
    analyzer_name: str,
) -> None:
    fleet = build_fleet(SMALL, analyzer_name)
    cluster, collector = FakeCluster(fleet), FakeCollector(fleet)
    engine = _engine(cluster, collector)
    first = await engine.cycle()
    second = await engine.cycle()
    assert len(first) == SMALL.variants
    assert first == second  # patches are not applied: every repetition does the same work
    assert collector.calls == 2 * SMALL.models
    assert len(cluster.patches) == SMALL.variants
    patch = next(iter(cluster.patches.values()))
    assert patch["actuation"] == {"applied": True}
    counts = action_counts(first)
    assert counts["scale-up"] > 0 and counts["scale-down"] > 0 and counts["no-change"] > 0


async def test_empty_fleet_cycle_decides_nothing_but_reads_the_config() -> None:
    fleet = empty_fleet("saturation")
    cluster = FakeCluster(fleet)
    assert not fleet.vas
    assert await _engine(cluster, FakeCollector(fleet)).cycle() == []
    assert cluster.patches == {}
    assert (
        "analyzerName: saturation"
        in fleet.config_maps[(SYSTEM_NAMESPACE, SATURATION_CONFIG_MAP)]["default"]
    )


async def test_time_async_warms_up_then_takes_one_sample_per_repetition() -> None:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1

    timing = await cyc.time_async(call, repetitions=5, warmup=2)
    assert calls == 7
    assert len(timing.samples_ms) == 5


def test_analysis_call_analyzes_every_group() -> None:
    fleet = build_fleet(SMALL)
    assert len(cyc.analysis_call(fleet, "")()) == SMALL.variants


def test_timing_median_and_p95_by_nearest_rank() -> None:
    timing = cyc.Timing(tuple(float(v) for v in range(1, 21)))
    assert timing.median == 10.0
    assert timing.p95 == 19.0
    assert math.isnan(cyc.Timing(()).median)


def _results() -> cyc.AutoscalerResults:
    def t(ms: float) -> cyc.Timing:
        return cyc.Timing((ms, ms, ms))

    rows = (
        cyc.AnalyzerRow(
            "V1", "", t(40.5), t(0.5), t(8.0), {"scale-up": 75, "scale-down": 75, "no-change": 850}
        ),
        cyc.AnalyzerRow("V2", "saturation", t(60.5), t(0.5), t(30.25), {"scale-up": 75}),
    )
    return cyc.AutoscalerResults(FleetShape(), 2999, 30, 3, rows)


def test_per_variant_cost_is_the_cycle_minus_the_empty_cycle() -> None:
    row = _results().rows[0]
    assert cyc.per_variant_us(row, 1000) == pytest.approx(40.0)
    assert math.isnan(cyc.per_variant_us(row, 0))


def test_report_rows_show_ratio_share_actions_and_the_aim() -> None:
    text = cyc.render(_results(), datetime(2025, 1, 2, 3, 4, tzinfo=UTC))
    assert text.startswith(cyc.START) and text.rstrip().endswith(cyc.END)
    assert "1,000 variants (250 models × 4 variants in 4 namespaces, 2,999 pods)" in text
    v1 = '| V1 (`analyzerName: ""`) | 40.5 | 40.5 | 0.50 (0.50) | 81 | 40.0 | 8.0 (8.0) | 20% |'
    assert v1 + " 75 / 75 / 850 | yes |" in text
    assert "| V2 (`analyzerName: saturation`) | 60.5 |" in text
    assert "| 50% | 75 / 0 / 0 | no |" in text


def test_autoscaler_block_goes_after_the_simulator_block_and_is_replaced_alone() -> None:
    doc = f"# B\n\n{report.START}\nsim\n{report.END}\n\ntail\n"
    block = f"{cyc.START}\nnew\n{cyc.END}\n"
    once = report.splice(doc, block, cyc.START, cyc.END)
    assert once == f"# B\n\n{report.START}\nsim\n{report.END}\n\n{block.rstrip()}\n\ntail\n"
    again = report.splice(once, f"{cyc.START}\nnewer\n{cyc.END}\n", cyc.START, cyc.END)
    assert again == once.replace("new\n", "newer\n")
    sim = report.splice(again, f"{report.START}\nsim2\n{report.END}\n")
    assert f"{report.START}\nsim2\n{report.END}" in sim and "newer" in sim


def test_only_flag_selects_the_parts() -> None:
    assert parse_args([]).runs("simulator") and parse_args([]).runs("autoscaler")
    only = parse_args(["--only", "autoscaler", "--autoscaler-repetitions", "5"])
    assert only.runs("autoscaler") and not only.runs("simulator")
    assert only.autoscaler_repetitions == 5
    with pytest.raises(SystemExit):
        parse_args(["--only", "nothing"])
