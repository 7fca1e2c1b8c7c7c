"""Pure parts of the benchmark harness: percentiles, wrk output, the report."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from bench import loadgen, report, wrk
from bench.loadgen import StreamRun, Throughput


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 0.99) == 99.0
    assert loadgen.percentile(values, 0.5) == 50.0
    assert loadgen.percentile([3.0], 0.99) == 3.0
    assert math.isnan(loadgen.percentile([], 0.5))


WRK_OUT = """Running 8s test @ http://127.0.0.1:1/v1/completions
  1 threads and 32 connections
  100000 requests in 8.00s, 30.00MB read
  Non-2xx or 3xx responses: 10
  Socket errors: connect 0, read 2, write 0, timeout 3
Requests/sec:  12500.00
"""


def test_wrk_parse_counts_errors_and_uses_reported_duration() -> None:
    result = wrk.parse(WRK_OUT, 10)
    assert result.errors == 15
    assert result.ok == 100000 - 15
    assert result.seconds == 8.0


def _stream(n: int, gap_ms: float, errors: int = 0, open_: int | None = None) -> StreamRun:
    run = StreamRun(n, gaps=[gap_ms / 1000] * 100, streams=n, errors=errors)
    run.min_open = n if open_ is None else open_
    return run


def test_level_holds_only_with_close_p99_all_open_and_no_errors() -> None:
    assert report.holds(_stream(100, 55), 50, 10)
    assert not report.holds(_stream(100, 61), 50, 10)
    assert not report.holds(_stream(100, 50, errors=1), 50, 10)
    assert not report.holds(_stream(100, 50, open_=90), 50, 10)
    assert not report.holds(StreamRun(100, min_open=100), 50, 10)  # no gaps measured


def _results() -> report.Results:
    return report.Results(
        client="wrk (1 thread)",
        concurrency=32,
        sim_rps=Throughput(8000, 0, 2.0),
        base_rps=Throughput(10000, 0, 2.0),
        levels=[_stream(250, 52), _stream(500, 80)],
        held=250,
        itl_ms=50,
        tolerance_ms=10,
        max_level=4000,
        baseline_at_break=_stream(500, 55),
    )


def test_report_shows_both_ratios() -> None:
    text = report.render(_results(), datetime(2025, 1, 2, 3, 4, tzinfo=UTC))
    assert "2025-01-02 03:04 UTC" in text
    assert "| 4,000 | 5,000 (aiohttp + uvloop, fixed body) | 0.80 |" in text
    assert "| 250 | 1,000 (aim) | 0.25 |" in text
    assert "| 500 (baseline server) | 500 | 500 | 0 | 55.0 | 55.0 | yes |" in text


def test_splice_replaces_only_the_marked_block() -> None:
    doc = f"# B\n\nmethod\n\n{report.START}\nold\n{report.END}\n\ntail\n"
    out = report.splice(doc, f"{report.START}\nnew\n{report.END}\n")
    assert out == f"# B\n\nmethod\n\n{report.START}\nnew\n{report.END}\n\ntail\n"
    assert report.splice("# B\n", "X\n") == "# B\n\n## Results\n\nX\n"
