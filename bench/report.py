"""Markdown for the benchmark results, spliced into benchmarks.md.

Only the block between the two marker comments is rewritten, so the method
text around it stays hand-written.
"""

from __future__ import annotations

import math
import os
import platform
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.loadgen import StreamRun, Throughput

START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"
END_MARKER = re.compile(r"<!-- bench:[a-z]+:end -->")
STREAM_AIM = 1000
RPS_AIM = 0.5
ACCURACY_AIM_MS = 5.0  # |p50 - configured| for TTFT and ITL in figure (c)


@dataclass(frozen=True)
class Latency:
    """Client-side TTFT and ITL percentiles (ms) and their p50 errors vs configured."""

    ttft_p50: float
    ttft_p99: float
    itl_p50: float
    itl_p99: float
    ttft_error: float  # p50 - configured, ms
    itl_error: float

    def within(self, tolerance_ms: float) -> bool:
        """Both p50 errors measured and within ``tolerance_ms``."""
        errors = (self.ttft_error, self.itl_error)
        return all(not math.isnan(e) and abs(e) <= tolerance_ms for e in errors)


def summarize(run: StreamRun, ttft_ms: float, itl_ms: float) -> Latency:
    """Latency figures of ``run`` against the configured TTFT and ITL (ms)."""
    ttft_p50, itl_p50 = run.ttft_ms(0.5), run.itl_ms(0.5)
    return Latency(
        ttft_p50=ttft_p50,
        ttft_p99=run.ttft_ms(0.99),
        itl_p50=itl_p50,
        itl_p99=run.itl_ms(0.99),
        ttft_error=ttft_p50 - ttft_ms,
        itl_error=itl_p50 - itl_ms,
    )


@dataclass
class LowLoad:
    """Figure (c): the same low streaming load against the simulator and the baseline."""

    ttft_ms: float
    itl_ms: float
    concurrency: int
    max_tokens: int
    seconds: float
    sim: StreamRun
    base: StreamRun

    def latency(self, run: StreamRun) -> Latency:
        return summarize(run, self.ttft_ms, self.itl_ms)


@dataclass
class Results:
    """Everything one ``make bench`` run measured."""

    client: str
    concurrency: int
    sim_rps: Throughput
    base_rps: Throughput
    levels: list[StreamRun]
    held: int
    itl_ms: float
    tolerance_ms: float
    max_level: int
    baseline_at_break: StreamRun | None
    low_load: LowLoad | None = None
    # figure (a) runs as (simulator, baseline) pairs, alternating; sim_rps/base_rps are
    # the pair with the median ratio
    rps_runs: list[tuple[Throughput, Throughput]] = field(default_factory=list)


def _fmt(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _ratio(num: float, den: float) -> str:
    return f"{num / den:.2f}" if den > 0 and not math.isnan(num) else "n/a"


def _signed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.1f}"


def _latency_cell(lat: Latency) -> str:
    return (
        f"TTFT {_fmt(lat.ttft_p50)} / ITL {_fmt(lat.itl_p50)} ms "
        f"(error {_signed(lat.ttft_error)} / {_signed(lat.itl_error)})"
    )


def rps_ratio(sim: Throughput, base: Throughput) -> float:
    """Figure (a) of one pair of runs; NaN without a baseline."""
    return sim.rps / base.rps if base.rps > 0 else math.nan


def median_pair(
    runs: list[tuple[Throughput, Throughput]],
) -> tuple[Throughput, Throughput]:
    """The (simulator, baseline) pair whose ratio is the median (the lower one of two)."""
    ordered = sorted(runs, key=lambda pair: rps_ratio(*pair))
    return ordered[(len(ordered) - 1) // 2]


def rps_spread(runs: list[tuple[Throughput, Throughput]]) -> str:
    """`` (median of N alternating runs, min–max a–b)`` when figure (a) ran more than once."""
    if len(runs) < 2:
        return ""
    ratios = sorted(rps_ratio(*pair) for pair in runs)
    return f" (median of {len(runs)} alternating runs; ratios {ratios[0]:.2f}–{ratios[-1]:.2f})"


def summary_table(r: Results) -> list[str]:
    held = f"{r.held:,}" + (" (every level tried held)" if r.held == r.max_level else "")
    rows = [
        "| figure | simulator | baseline | ratio | aim |",
        "|---|---|---|---|---|",
        f"| (a) requests/s, `/v1/completions`, `max_tokens` 8, zero latency, "
        f"{r.concurrency} connections | {_fmt(r.sim_rps.rps, 0)} | "
        f"{_fmt(r.base_rps.rps, 0)} (aiohttp + uvloop, fixed body) | "
        f"{_ratio(r.sim_rps.rps, r.base_rps.rps)}{rps_spread(r.rps_runs)} | ≥ {RPS_AIM} |",
        f"| (b) concurrent SSE streams held at {r.itl_ms:g} ms ITL "
        f"(p99 within {r.tolerance_ms:g} ms) | {held} | {STREAM_AIM:,} (aim) | "
        f"{_ratio(r.held, STREAM_AIM)} | ≥ 1.0 |",
    ]
    if r.low_load is not None:
        c = r.low_load
        sim = c.latency(c.sim)
        rows.append(
            f"| (c) latency at low load, {c.concurrency} streams, configured TTFT "
            f"{c.ttft_ms:g} ms / ITL {c.itl_ms:g} ms: p50 (p50 − configured) | "
            f"{_latency_cell(sim)} | {_latency_cell(c.latency(c.base))} (same pacing) | "
            f"{_ratio(sim.itl_p50, c.itl_ms)} (ITL p50 ÷ {c.itl_ms:g} ms) | "
            f"errors within ±{ACCURACY_AIM_MS:g} ms |"
        )
    return rows


def low_load_table(c: LowLoad) -> list[str]:
    lines = [
        "| server | streams finished | errors | TTFT p50 ms | TTFT p99 ms | TTFT p50 error ms "
        "| ITL p50 ms | ITL p99 ms | ITL p50 error ms | within ±"
        f"{ACCURACY_AIM_MS:g} ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for who, run in (("simulator", c.sim), ("baseline server", c.base)):
        lat = c.latency(run)
        ok = lat.within(ACCURACY_AIM_MS) and run.errors == 0
        lines.append(
            f"| {who} | {run.streams:,} | {run.errors} | {_fmt(lat.ttft_p50)} | "
            f"{_fmt(lat.ttft_p99)} | {_signed(lat.ttft_error)} | {_fmt(lat.itl_p50)} | "
            f"{_fmt(lat.itl_p99)} | {_signed(lat.itl_error)} | {'yes' if ok else 'no'} |"
        )
    return lines


def level_table(r: Results) -> list[str]:
    lines = [
        "| streams | open (min) | finished | errors | ITL p50 ms | ITL p99 ms | held |",
        "|---|---|---|---|---|---|---|",
    ]
    runs = [("simulator", run) for run in r.levels]
    if r.baseline_at_break is not None:
        runs.append(("baseline server", r.baseline_at_break))
    for who, run in runs:
        label = f"{run.concurrency:,}" + ("" if who == "simulator" else f" ({who})")
        ok = holds(run, r.itl_ms, r.tolerance_ms)
        lines.append(
            f"| {label} | {run.min_open:,} | {run.streams:,} | {run.errors} | "
            f"{_fmt(run.itl_ms(0.5))} | {_fmt(run.itl_ms(0.99))} | {'yes' if ok else 'no'} |"
        )
    return lines


def holds(run: StreamRun, itl_ms: float, tolerance_ms: float) -> bool:
    """A level holds: no errors, ~all streams open, ITL p99 close to the target."""
    p99 = run.itl_ms(0.99)
    return (
        run.errors == 0
        and run.min_open >= 0.95 * run.concurrency
        and not math.isnan(p99)
        and abs(p99 - itl_ms) <= tolerance_ms
    )


def render(r: Results, now: datetime | None = None) -> str:
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    machine = (
        f"{os.cpu_count()} cores (nproc), {platform.machine()}, "
        f"Python {platform.python_version()}, load client: {r.client}"
    )
    lines = [
        START,
        f"Last run: {when}; {machine}.",
        "",
        *summary_table(r),
        "",
        "Streaming levels (b):",
        "",
        *level_table(r),
    ]
    if r.baseline_at_break is not None:
        lines += [
            "",
            "The baseline row is the minimal server streaming the same chunks at the first level "
            "the simulator did not hold: if it fails too, the client or machine is the limit.",
        ]
    if r.low_load is not None:
        c = r.low_load
        lines += [
            "",
            f"Latency at low load (c): {c.concurrency} concurrent streams of `max_tokens` "
            f"{c.max_tokens} for {c.seconds:g} s, configured TTFT {c.ttft_ms:g} ms and ITL "
            f"{c.itl_ms:g} ms; the baseline server waits and paces the same, so its errors "
            "are the floor set by the client and the event loops.",
            "",
            *low_load_table(c),
        ]
    lines.append(END)
    return "\n".join(lines) + "\n"


def splice(doc: str, block: str, start: str = START, end: str = END) -> str:
    """Replace the block marked ``start``/``end`` in ``doc``; else put it after the
    last results block (simulator, autoscaler, ...), or append it under a Results heading."""
    if start in doc and end in doc:
        head, rest = doc.split(start, 1)
        tail = rest.split(end, 1)[1]
        return head + block.rstrip("\n") + tail
    ends = list(END_MARKER.finditer(doc))
    if start != START and ends:
        cut = ends[-1].end()
        return doc[:cut] + "\n\n" + block.rstrip("\n") + doc[cut:]
    return doc.rstrip("\n") + "\n\n## Results\n\n" + block


def write_block(path: Path, block: str, start: str = START, end: str = END) -> None:
    """Splice ``block`` (rendered with the same markers) into the page at ``path``."""
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(splice(doc, block, start, end))


def write(path: Path, r: Results) -> None:
    write_block(path, render(r))
