"""The dashboards' panels over a virtual-time run (the same JSON the cluster's Grafana loads)."""

from __future__ import annotations

import csv
from pathlib import Path

from pyllmd.sim.batch.scheduler import Engine, Request, SchedulerConfig
from pyllmd.simulate.promql import Evaluator, SeriesStore
from pyllmd.simulate.scrape import PodMetrics, scrape
from pyllmd.simulate.timeline import dashboard_panels, evaluate, plot, write_csv

ROOT = Path(__file__).resolve().parents[3]
VARIABLES = {"namespace": "llm", "model": ".*", "__rate_interval": "1m"}


def test_the_packaged_dashboards_are_the_ones_shipped_to_clusters() -> None:
    shipped = ROOT / "config" / "dashboards"
    packaged = ROOT / "src" / "pyllmd" / "dashboards"
    names = sorted(p.name for p in shipped.glob("*.json"))
    assert names == sorted(p.name for p in packaged.glob("*.json"))
    for name in names:  # copy src/pyllmd/dashboards/NAME to config/dashboards/NAME on a change
        assert (shipped / name).read_bytes() == (packaged / name).read_bytes(), name


def _run() -> SeriesStore:
    """Two pods scraped every 15 s for five minutes; pod 0 busy, each finishing requests."""
    store, seen = SeriesStore(), {}
    busy = Engine(SchedulerConfig(num_blocks=100, max_num_seqs=2), lambda *a: 0.01)
    for i in range(3):
        busy.add(Request(i, 0.0, 64, 50))
    busy.step()
    idle = Engine(SchedulerConfig(num_blocks=100), lambda *a: 0.01)
    pods = {"v-0": (PodMetrics("m", 4096), busy), "v-1": (PodMetrics("m", 4096), idle)}
    for k in range(21):
        t = 15.0 * k
        for metrics, _ in pods.values():
            if k:
                req = Request(k, t - 2, 100, 10)
                req.first_token, req.admitted, req.token_times = t - 1.9, t - 2, [t - 1.9, t - 1.8]
                metrics.finished(req, t - 2, t - 1)
        scrape(store, t, "llm", pods, seen)
    return store


def test_the_model_server_panels_have_a_series_per_pod(tmp_path: Path) -> None:
    panels = dashboard_panels(["model-servers"])
    points = evaluate(Evaluator(_run()), panels, [60.0, 120.0, 180.0, 240.0, 300.0], VARIABLES)
    running = {(p.t, p.series): p.value for p in points if p.panel == "Running requests per pod"}
    assert running[(300.0, "v-0")] == 2.0 and running[(300.0, "v-1")] == 0.0
    ttft = [p for p in points if p.panel.startswith("Time to first token") and p.t == 300.0]
    assert {p.series for p in ttft} == {f"p{q} v-{i}" for q in (50, 90, 99) for i in (0, 1)}
    assert all(0 < p.value <= 0.25 for p in ttft)  # every TTFT was 0.1 s: its bucket
    done = [p for p in points if p.panel == "Requests completed per pod" and p.t == 300.0]
    assert [round(p.value, 6) for p in done] == [round(1 / 15, 6)] * 2
    path = write_csv(tmp_path / "timeline.csv", points)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(points) and rows[0].keys() == {
        "time_s",
        "dashboard",
        "panel",
        "series",
        "value",
    }
    pngs = plot(tmp_path, points)
    assert pngs and all(p.stat().st_size > 1000 for p in pngs)


def test_every_panel_of_every_dashboard_evaluates() -> None:
    panels = dashboard_panels()
    assert {p.dashboard for p in panels} == {"model-servers", "endpoint-picker", "autoscaler"}
    evaluate(Evaluator(_run()), panels, [300.0], VARIABLES)  # no construct left unsupported
