"""`pyllmd up`'s terminal dashboard: the panel rows from Prometheus answers, the
tables a user sees, when it is on, and that `--no-ui` turns it off."""

from __future__ import annotations

import asyncio
import io
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from pyllmd.autoscaler.collect.queries import PrometheusError, VectorSample
from pyllmd.sim.metric_table import TPOT_BUCKETS
from pyllmd.stack.ui import (
    EPP_QUERIES,
    QUERIES,
    PodRow,
    VariantRow,
    panels,
    queries_for,
    read_panels,
    render,
    run_dashboard,
    ui_enabled,
)
from pyllmd.stack.up_config import up_options


def s(value: float, **labels: str) -> VectorSample:
    return VectorSample(labels=labels, value=value)


RESULTS = {
    "running": [s(2, pod="a"), s(0, pod="b")],
    "waiting": [s(3, pod="a")],
    "kv": [s(0.25, pod="a"), s(0.0, pod="b")],
    "done": [s(7, pod="a"), s(1, pod="b")],
    "ttft_p50": [s(0.2, pod="a"), s(math.nan, pod="b")],  # no requests lately on b
    "ttft_p99": [s(0.4, pod="a")],
    "itl_p50": [s(0.02, pod="a")],
    "itl_p99": [s(0.03, pod="a")],
    "desired": [s(3, variant_name="v1"), s(1, variant_name="v2")],
    "current": [s(1, variant_name="v1"), s(1, variant_name="v2")],
    "ratio": [s(3, variant_name="v1")],
    "routed": [s(1.5, pod="a")],
    "instances": [
        s(2, pod="a", instance="127.0.0.1:8001"),
        s(0, pod="b", instance="127.0.0.1:8002"),
    ],
    # the picker names pods it knows by address after the address (and a rank)
    "epp_queue": [
        s(3, model_server_pod="127-0-0-1-8001"),
        s(0, model_server_pod="127-0-0-1-8002-rank-0"),
    ],
    "pool_kv": [s(0.125, name="pool")],
    "pool_queue": [s(1.5, name="pool")],
    "pool_ready": [s(2, name="pool")],
    "flow_queue": [s(4, priority="0"), s(1, priority="-1")],
}


def test_rows_per_pod_and_per_variant_and_nan_is_no_data() -> None:
    p = panels(RESULTS, epp=False)
    assert p.pods == (
        PodRow("a", 2, 3, 0.25, 7, 0.2, 0.4, 0.02, 0.03),
        PodRow("b", 0, None, 0.0, 1, None, None, None, None),
    )
    assert p.variants == (VariantRow("v1", 3, 1, 3), VariantRow("v2", 1, 1, None))
    assert p.pool == () and p.flow_queues == ()  # the picker's panels only with envoy-epp


def test_the_pickers_panels_with_envoy_epp() -> None:
    p = panels(RESULTS, epp=True)
    assert (p.pods[0].routed, p.pods[0].epp_queue) == (1.5, 3)
    assert (p.pods[1].routed, p.pods[1].epp_queue) == (None, 0)
    assert p.pool == (("pool", 0.125, 1.5, 2),)
    assert p.flow_queues == (("-1", 1), ("0", 4))
    assert set(queries_for(True)) == set(QUERIES) | set(EPP_QUERIES)
    assert set(queries_for(False)) == set(QUERIES)


def test_no_answer_yet_is_an_empty_dashboard() -> None:
    p = panels({}, epp=True)
    assert (p.pods, p.variants, p.pool, p.flow_queues) == ((), (), (), ())


def text_of(renderable: object, width: int = 160) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(renderable)
    return out.getvalue()


def test_the_tables_show_the_numbers() -> None:
    screen = text_of(render(panels(RESULTS, epp=True), ["pyllmd local stack is up:"]))
    assert "pyllmd local stack is up:" in screen
    row_a = next(line for line in screen.splitlines() if "│ a " in line)
    for cell in ("25.0%", "200 ms", "400 ms", "20 ms", "30 ms", "1.50"):
        assert cell in row_a
    row_v1 = next(line for line in screen.splitlines() if "│ v1 " in line)
    assert [c.strip() for c in row_v1.split("│")][1:5] == ["v1", "3", "1", "3.00"]
    assert "priority -1: 1, priority 0: 4" in screen
    assert "12.5%" in screen  # the pool's average KV usage


def test_a_failing_prometheus_is_a_line_on_screen_not_an_exit() -> None:
    async def query(promql: str) -> list[VectorSample]:
        raise PrometheusError("connection", "connection refused")

    p = asyncio.run(read_panels(query, epp=False))
    assert p.pods == () and "connection refused" in p.error
    assert "Prometheus: connection refused" in text_of(render(p))


def test_run_dashboard_draws_live_numbers_until_stopped() -> None:
    out = io.StringIO()
    console = Console(file=out, width=160, color_system=None, force_terminal=True)

    async def main() -> None:
        stop = asyncio.Event()
        asked: list[str] = []

        async def query(promql: str) -> list[VectorSample]:
            asked.append(promql)
            if promql == QUERIES["done"]:
                stop.set()  # one refresh, then stop
                return [s(42, pod="sim-0")]
            return []

        await asyncio.wait_for(run_dashboard(query, False, ["hello"], stop, console, 0.01), 10)
        assert sorted(asked) == sorted(QUERIES.values())

    asyncio.run(main())
    assert "sim-0" in out.getvalue() and "42" in out.getvalue()


@pytest.mark.parametrize(
    ("no_ui", "terminal", "on"),
    [(False, True, True), (True, True, False), (False, False, False), (True, False, False)],
)
def test_on_only_on_a_terminal_and_without_no_ui(no_ui: bool, terminal: bool, on: bool) -> None:
    assert ui_enabled(no_ui, terminal) is on


def test_no_ui_flag_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert up_options([])[0].ui is True
    assert up_options(["--no-ui"])[0].ui is False
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert up_options([])[0].ui is False


def promtool() -> str:
    """Path of Prometheus' promtool (Debian's prometheus package); fails when missing."""
    prometheus = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus") or ""
    found = shutil.which("promtool") or shutil.which(str(Path(prometheus).with_name("promtool")))
    if not found:
        pytest.fail("promtool not found: run `make e2e-deps` (Prometheus) or set PROMETHEUS_BIN")
    return found


def histogram(metric: str, pod: str, values: str) -> list[dict[str, str]]:
    """promtool input series: every bucket of the simulator's ITL buckets with the same
    `values` (all observations in the first bucket, as a 10 ms ITL)."""
    les = [*(f"{b:g}" for b in TPOT_BUCKETS), "+Inf"]
    return [
        {"series": f'{metric}_bucket{{pod="{pod}",model_name="m",le="{le}"}}', "values": values}
        for le in les
    ]


def test_percentiles_count_a_histogram_born_in_the_window_and_idle_is_no_data(
    tmp_path: Path,
) -> None:
    """Prometheus' own PromQL engine (`promtool test rules`) on the dashboard's queries.

    The simulator creates a histogram's series at its first observation, so under load
    a burst of requests can all finish between two scrapes: the ITL series is first
    scraped already at its final count and `rate` over it is 0, histogram_quantile NaN,
    which the dashboard showed as "0 ms" (TTFT, whose series was born a scrape earlier,
    was right). Scrapes every second; at 50 s: pod `born` got 16 ITL observations of
    10 ms between the scrapes at 39 s and 40 s, its series first scraped at 40 s; pod
    `busy` has had one a second since start-up; pod `idle` none for 60 s (no sample:
    the cell shows no data, not 0 ms)."""
    itl = "vllm:inter_token_latency_seconds"
    series = histogram(itl, "born", "_x40 16x20")
    series += histogram(itl, "busy", "0+1x60")
    series += histogram(itl, "idle", "5x60")
    expect = {
        "itl_p50": {"born": 0.005, "busy": 0.005},
        "itl_p99": {"born": 0.0099, "busy": 0.0099},
        "ttft_p50": {},  # no TTFT series at all: no sample
    }
    tests = [
        {
            "expr": QUERIES[name],
            "eval_time": "50s",
            "exp_samples": [{"labels": f'{{pod="{p}"}}', "value": v} for p, v in want.items()],
        }
        for name, want in expect.items()
    ]
    spec = tmp_path / "ui-queries.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "evaluation_interval": "1s",
                "tests": [{"interval": "1s", "input_series": series, "promql_expr_test": tests}],
            }
        )
    )
    done = subprocess.run(
        [promtool(), "test", "rules", str(spec)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
