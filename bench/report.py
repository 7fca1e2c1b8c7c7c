"""Markdown for the benchmark results, spliced into benchmarks.md.

Only the block between the two marker comments is rewritten, so the method
text around it stays hand-written.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.loadgen import StreamRun, Throughput

START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"
STREAM_AIM = 1000
RPS_AIM = 0.5


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


def _fmt(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _ratio(num: float, den: float) -> str:
    return f"{num / den:.2f}" if den > 0 else "n/a"


def summary_table(r: Results) -> list[str]:
    held = f"{r.held:,}" + (" (every level tried held)" if r.held == r.max_level else "")
    return [
        "| figure | simulator | baseline | ratio | aim |",
        "|---|---|---|---|---|",
        f"| (a) requests/s, `/v1/completions`, `max_tokens` 8, zero latency, "
        f"{r.concurrency} connections | {_fmt(r.sim_rps.rps, 0)} | "
        f"{_fmt(r.base_rps.rps, 0)} (aiohttp + uvloop, fixed body) | "
        f"{_ratio(r.sim_rps.rps, r.base_rps.rps)} | ≥ {RPS_AIM} |",
        f"| (b) concurrent SSE streams held at {r.itl_ms:g} ms ITL "
        f"(p99 within {r.tolerance_ms:g} ms) | {held} | {STREAM_AIM:,} (aim) | "
        f"{_ratio(r.held, STREAM_AIM)} | ≥ 1.0 |",
    ]


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
    lines.append(END)
    return "\n".join(lines) + "\n"


def splice(doc: str, block: str) -> str:
    """Replace the marked block in ``doc``, or append it under a Results heading."""
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        tail = rest.split(END, 1)[1]
        return head + block.rstrip("\n") + tail
    return doc.rstrip("\n") + "\n\n## Results\n\n" + block


def write(path: Path, r: Results) -> None:
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(splice(doc, render(r)))
