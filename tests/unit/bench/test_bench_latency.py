"""Pure parts of figure (c), latency accuracy at low load: summary, check, report."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from bench import loadgen, report
from bench.loadgen import StreamRun, Throughput


def _run(ttft_ms: list[float], gap_ms: list[float], errors: int = 0) -> StreamRun:
    return StreamRun(
        4,
        gaps=[g / 1000 for g in gap_ms],
        ttfts=[t / 1000 for t in ttft_ms],
        streams=len(ttft_ms),
        errors=errors,
    )


def test_summarize_gives_percentiles_and_p50_errors() -> None:
    run = _run([float(v) for v in range(101, 201)], [20.5] * 98 + [30.0, 40.0])
    lat = report.summarize(run, ttft_ms=100, itl_ms=20)
    assert math.isclose(lat.ttft_p50, 150.0)
    assert math.isclose(lat.ttft_p99, 199.0)
    assert math.isclose(lat.itl_p50, 20.5)
    assert math.isclose(lat.itl_p99, 30.0)
    assert math.isclose(lat.ttft_error, 50.0)
    assert math.isclose(lat.itl_error, 0.5)


def test_within_needs_both_p50_errors_small_and_measured() -> None:
    assert report.summarize(_run([104.0], [19.0]), 100, 20).within(5)
    assert report.summarize(_run([96.0], [24.9]), 100, 20).within(5)
    assert not report.summarize(_run([106.0], [20.0]), 100, 20).within(5)
    assert not report.summarize(_run([100.0], [14.0]), 100, 20).within(5)
    assert not report.summarize(_run([], [20.0]), 100, 20).within(5)  # no TTFT measured
    assert math.isnan(StreamRun(4).ttft_ms(0.5))


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True


CHUNK = b'data: {"choices":[{"text":"a"}]}\n\n'


async def test_stream_protocol_records_ttft_once_then_gaps() -> None:
    run = StreamRun(1)
    window = loadgen._Window(0.0, math.inf)
    proto = loadgen._StreamProtocol(b"POST / HTTP/1.1\r\n\r\n", window, run, [0])
    transport = _Transport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    assert transport.written == [b"POST / HTTP/1.1\r\n\r\n"]
    proto.data_received(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
    assert run.ttfts == []  # headers alone are no token
    proto.data_received(CHUNK)
    proto.data_received(CHUNK + CHUNK)
    proto.data_received(b"data: [DONE]\n\n")
    assert len(run.ttfts) == 1 and run.ttfts[0] >= 0
    assert len(run.gaps) == 2
    assert proto.finished and transport.closed


def _results_with_low_load() -> report.Results:
    sim = _run([102.0] * 20, [20.0] * 900)
    base = _run([101.0] * 20, [19.7] * 900)
    low = report.LowLoad(
        ttft_ms=100, itl_ms=20, concurrency=4, max_tokens=50, seconds=5, sim=sim, base=base
    )
    return report.Results(
        client="wrk (1 thread)",
        concurrency=32,
        sim_rps=Throughput(8000, 0, 2.0),
        base_rps=Throughput(10000, 0, 2.0),
        levels=[],
        held=0,
        itl_ms=50,
        tolerance_ms=10,
        max_level=4000,
        baseline_at_break=None,
        low_load=low,
    )


def test_report_shows_low_load_figure_and_rows() -> None:
    text = report.render(_results_with_low_load(), datetime(2025, 1, 2, 3, 4, tzinfo=UTC))
    assert (
        "| TTFT 102.0 / ITL 20.0 ms (error +2.0 / +0.0) "
        "| TTFT 101.0 / ITL 19.7 ms (error +1.0 / -0.3) (same pacing) "
        "| 1.00 (ITL p50 ÷ 20 ms) | errors within ±5 ms |"
    ) in text
    assert "| simulator | 20 | 0 | 102.0 | 102.0 | +2.0 | 20.0 | 20.0 | +0.0 | yes |" in text
    assert "| baseline server | 20 | 0 | 101.0 | 101.0 | +1.0 | 19.7 | 19.7 | -0.3 | yes |" in text
    assert text.rstrip().endswith(report.END)


def test_report_without_low_load_has_no_figure_c() -> None:
    r = _results_with_low_load()
    r.low_load = None
    assert "(c)" not in report.render(r)


def test_figure_a_reports_the_median_of_alternating_runs_with_the_spread() -> None:
    pairs = [
        (Throughput(5000, 0, 1.0), Throughput(10000, 0, 1.0)),  # 0.50
        (Throughput(6000, 0, 1.0), Throughput(10000, 0, 1.0)),  # 0.60
        (Throughput(4500, 0, 1.0), Throughput(10000, 0, 1.0)),  # 0.45
        (Throughput(5500, 0, 1.0), Throughput(10000, 0, 1.0)),  # 0.55
        (Throughput(7000, 0, 1.0), Throughput(10000, 0, 1.0)),  # 0.70
    ]
    sim, base = report.median_pair(pairs)
    assert report.rps_ratio(sim, base) == 0.55
    assert report.median_pair(pairs[:2])[0].rps == 5000  # the lower of two
    r = _results_with_low_load()
    r.sim_rps, r.base_rps, r.rps_runs = sim, base, pairs
    text = report.render(r)
    assert "| 0.55 (median of 5 alternating runs; ratios 0.45–0.70) | ≥ 0.5 |" in text
    r.rps_runs = pairs[:1]
    assert "median of" not in report.render(r)
