"""Pure parts of figures (e)-(g): the cycle set-up, the direct bootstrap, the report."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from bench import autoscaler_cycle, epp_cycle, epp_gateway, epp_report, procs, report
from bench.epp_cycle import CycleResults, CycleTiming
from bench.epp_gateway import LatencyResults, ThroughputResults
from bench.loadgen import Throughput
from bench.run import parse_args

from pyllmd.epp import saturation
from pyllmd.epp.metrics import EppMetrics
from pyllmd.stack.envoy import envoy_bootstrap


def test_prompts_share_a_family_head_and_differ_after_it() -> None:
    source = epp_cycle.prompts(random.Random(7))
    batch = [next(source) for _ in range(3 * epp_cycle.FAMILIES)]
    assert all(len(p) == epp_cycle.PROMPT_CHARS for p in batch)
    heads = {p[: epp_cycle.SHARED_CHARS] for p in batch}
    assert 1 < len(heads) <= epp_cycle.FAMILIES  # some prompts share a head
    tails = {p[epp_cycle.SHARED_CHARS :] for p in batch}
    assert len(tails) == len(batch)  # every request is new after its head


def test_synthetic_endpoints_are_distinct_and_fresh() -> None:
    now = 1_000.0
    eps = epp_cycle.synthetic_endpoints(100, now, random.Random(1))
    assert len({e.namespaced_name for e in eps}) == 100
    assert len({e.hostport for e in eps}) == 100
    assert not any(saturation.is_stale(e, epp_cycle.STALENESS, now) for e in eps)
    assert len({e.metrics.waiting_queue_size for e in eps}) > 1


def test_plugin_means_read_the_epp_histogram() -> None:
    metrics = EppMetrics("bench")
    metrics.record_plugin("Scorer", "queue-scorer", "a", 0.001)
    metrics.record_plugin("Scorer", "queue-scorer", "a", 0.003)
    metrics.record_plugin("Picker", "random-picker", "p", 0.0005)
    means = dict(epp_cycle.plugin_means(metrics))
    assert means["Scorer/queue-scorer"] == pytest.approx(2000.0)
    assert means["Picker/random-picker"] == pytest.approx(500.0)


def test_measure_runs_the_default_config_and_the_baseline() -> None:
    default = epp_cycle.measure("default", None, cycles=12, warmup=3)
    assert len(default.samples_ms) == 12
    assert default.index_size > 0  # PreRequest recorded the prompts' blocks
    kinds = dict(default.plugin_mean_us)
    assert "Scorer/prefix-cache-scorer" in kinds and "PreRequest/prefix-cache-scorer" in kinds
    base = epp_cycle.measure("random", epp_cycle.RANDOM_ONLY_CONFIG, cycles=12, warmup=3)
    assert base.index_size == 0
    assert {k.split("/")[0] for k, _ in base.plugin_mean_us} == {
        "ProfilePicker",
        "Picker",
        "ProcessProfilesResults",
    }


def test_direct_bootstrap_is_the_gateway_without_ext_proc() -> None:
    boot = epp_gateway.direct_bootstrap(8080, 9901, [7001, 7002, 7003])
    gateway = envoy_bootstrap(8080, 1, 9901, ext_proc_tls=False)
    listener = boot["static_resources"]["listeners"][0]
    assert listener["address"] == gateway["static_resources"]["listeners"][0]["address"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert [f["name"] for f in hcm["http_filters"]] == ["envoy.filters.http.router"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert {r["route"]["cluster"] for r in routes} == {epp_gateway.DIRECT_CLUSTER}
    (cluster,) = boot["static_resources"]["clusters"]
    lb = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ports = [e["endpoint"]["address"]["socket_address"]["port_value"] for e in lb]
    assert ports == [7001, 7002, 7003]
    assert boot["admin"] == gateway["admin"]
    assert boot != gateway  # derived from a copy


def test_stat_cpu_ticks_adds_user_and_system_time() -> None:
    fields = ["S", *[str(i) for i in range(4, 14)], "250", "50", *["0"] * 30]
    stat = "4242 (python (epp)) " + " ".join(fields)
    assert procs.stat_cpu_ticks(stat) == 300


def test_pinned_uses_taskset_only_with_two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(procs.shutil, "which", lambda _: "/usr/bin/taskset")
    monkeypatch.setattr(procs.os, "cpu_count", lambda: 2)
    assert procs.pinned(["envoy", "-c", "x"], 3) == ["taskset", "-c", "1", "envoy", "-c", "x"]
    monkeypatch.setattr(procs.os, "cpu_count", lambda: 1)
    assert procs.pinned(["envoy"], 1) == ["envoy"]


def test_latency_added_is_the_difference_of_quantiles() -> None:
    lat = LatencyResults(tuple(float(v) for v in range(1, 101)), (0.5,) * 100, 0, 10)
    assert lat.added(0.5) == pytest.approx(49.5)
    assert lat.added(0.99) == pytest.approx(98.5)


def _results(p50: float, added: float, rps: float, errors: int = 0) -> epp_report.EppResults:
    cycle = CycleResults(
        100,
        32_768,
        4,
        1,
        CycleTiming("default config", (p50,) * 4, (("Scorer/queue-scorer", 40.0),), 1_234, 7),
        CycleTiming("random-picker only", (0.05,) * 4, (("Picker/random-picker", 20.0),), 0, 4),
    )
    lat = LatencyResults((0.5 + added,) * 10, (0.5,) * 10, errors, 5)
    rps_run = ThroughputResults(
        "wrk (1 thread)", 32, 5, Throughput(int(rps * 5), errors, 5.0), Throughput(10_000, 0, 5.0),
        0.93, (10, 11, 12),
    )  # fmt: skip
    return epp_report.EppResults(cycle, lat, rps_run)


def test_render_marks_aims_met_and_missed() -> None:
    when = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    good = epp_report.render(_results(0.6, 1.0, 1_200.0), when)
    assert good.startswith(epp_report.START) and good.rstrip().endswith(epp_report.END)
    rows = [line for line in good.splitlines() if line.startswith("| (")]
    assert len(rows) == 3 and all(row.endswith("| yes |") for row in rows)
    assert "1,234 entries" in good and "93 % of its core" in good and "10 / 11 / 12" in good
    bad = epp_report.render(_results(1.2, 2.0, 500.0), when)
    rows = [line for line in bad.splitlines() if line.startswith("| (")]
    assert all(row.endswith("| no |") for row in rows)
    errs = epp_report.render(_results(0.6, 1.0, 1_200.0, errors=1), when)
    assert [r.endswith("| yes |") for r in errs.splitlines() if r.startswith("| (")] == [
        True,
        False,
        False,
    ]


def test_render_leaves_out_parts_not_run() -> None:
    full = _results(0.6, 1.0, 1_200.0)
    only_cycle = epp_report.EppResults(full.cycle, None, None)
    text = epp_report.render(only_cycle)
    assert "| (e)" in text and "| (f)" not in text and "| (g)" not in text


def test_epp_block_goes_after_the_last_results_block() -> None:
    doc = (
        f"# B\n\n{report.START}\nsim\n{report.END}\n\n"
        f"{autoscaler_cycle.START}\nauto\n{autoscaler_cycle.END}\n\ntail\n"
    )
    block = f"{epp_report.START}\nepp\n{epp_report.END}\n"
    once = report.splice(doc, block, epp_report.START, epp_report.END)
    assert once.index("auto") < once.index("epp") < once.index("tail")
    again = report.splice(once, block.replace("epp\n", "epp2\n"), epp_report.START, epp_report.END)
    assert again == once.replace("\nepp\n", "\nepp2\n")


def test_only_epp_selects_figures_e_to_g() -> None:
    s = parse_args(["--only", "epp", "--epp-cycles", "50", "--epp-seconds", "2"])
    assert s.runs("epp") and not s.runs("simulator") and not s.runs("autoscaler")
    assert (s.epp_cycles, s.epp_seconds) == (50, 2)
    assert parse_args([]).runs("epp")
