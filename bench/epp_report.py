"""Markdown for figures (e)-(g), spliced into benchmarks.md between its own markers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from bench.epp_cycle import CycleResults
from bench.epp_gateway import LatencyResults, ThroughputResults
from bench.host import last_run

START = "<!-- bench:epp:start -->"
END = "<!-- bench:epp:end -->"
CYCLE_AIM_MS = 1.0  # (e) p50 of one scheduling decision
ADDED_AIM_MS = 1.5  # (f) p50 latency Envoy + EPP add over Envoy alone
RPS_AIM = 1_000.0  # (g) routed requests/s through one EPP


@dataclass(frozen=True)
class EppResults:
    """What `--only epp` measured; a part left out is None."""

    cycle: CycleResults | None
    latency: LatencyResults | None
    throughput: ThroughputResults | None


def _n(value: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


def _ratio(num: float, den: float) -> str:
    return f"{num / den:,.1f}" if den > 0 and not math.isnan(num) else "n/a"


def summary(r: EppResults) -> list[str]:
    rows = [
        "| figure | measured | same-run baseline | difference / ratio | aim | met |",
        "|---|---|---|---|---|---|",
    ]
    if (c := r.cycle) is not None:
        d, b = c.default, c.baseline
        rows.append(
            f"| (e) one scheduling decision, {c.endpoints} endpoints, "
            f"{c.prompt_chars // 1024} KB prompts, default config: p50 / p99 ms | "
            f"{_n(d.p(0.5), 3)} / {_n(d.p(0.99), 3)} | {_n(b.p(0.5), 3)} / {_n(b.p(0.99), 3)} "
            f"(random-picker only) | {_ratio(d.p(0.5), b.p(0.5))}× (p50) | "
            f"p50 < {CYCLE_AIM_MS:g} ms | {_yes(d.p(0.5) < CYCLE_AIM_MS)} |"
        )
    if (lat := r.latency) is not None:
        added = lat.added(0.5)
        rows.append(
            "| (f) sequential request latency through Envoy + EPP: p50 / p99 ms | "
            f"{_n(lat.epp(0.5))} / {_n(lat.epp(0.99))} | {_n(lat.direct(0.5))} / "
            f"{_n(lat.direct(0.99))} (Envoy → simulator) | +{_n(added)} / "
            f"+{_n(lat.added(0.99))} ms | added p50 ≤ {ADDED_AIM_MS:g} ms | "
            f"{_yes(lat.errors == 0 and added <= ADDED_AIM_MS)} |"
        )
    if (t := r.throughput) is not None:
        rows.append(
            f"| (g) requests/s routed by one EPP to {len(t.per_sim)} simulators, "
            f"{t.concurrency} connections | {_n(t.epp.rps, 0)} | {_n(t.direct.rps, 0)} "
            f"(Envoy round robin) | {_n(t.epp.rps / t.direct.rps if t.direct.rps else math.nan)} | "
            f"≥ {RPS_AIM:,.0f} req/s | {_yes(t.epp.errors == 0 and t.epp.rps >= RPS_AIM)} |"
        )
    return rows


def plugin_table(c: CycleResults) -> list[str]:
    """Mean per call of each plugin in (e), from `inference_extension_plugin_duration_seconds`."""
    lines = ["| config | extension point / plugin type | mean µs per call |", "|---|---|---|"]
    for row in (c.default, c.baseline):
        for key, mean in sorted(row.plugin_mean_us, key=lambda kv: -kv[1]):
            lines.append(f"| {row.label} | {key} | {_n(mean, 1)} |")
    return lines


def details(r: EppResults) -> list[str]:
    out: list[str] = []
    if (c := r.cycle) is not None:
        out += [
            "",
            f"(e) {c.cycles:,} timed cycles per config after {c.warmup} warm-up cycles. "
            f"After the run the prefix index held {c.default.index_size:,} entries; the default "
            f"config picked {c.default.endpoints_used} distinct endpoints, the random picker "
            f"{c.baseline.endpoints_used}. Plugin means include the warm-up cycles:",
            "",
            *plugin_table(c),
        ]
    if (lat := r.latency) is not None:
        out += [
            "",
            f"(f) {len(lat.epp_ms):,} + {len(lat.direct_ms):,} timed requests after "
            f"{lat.warmup} warm-up requests per gateway; {lat.errors} errors.",
        ]
    if (t := r.throughput) is not None:
        split = " / ".join(f"{n:,}" for n in t.per_sim)
        out += [
            "",
            f"(g) {t.client}, {t.seconds} s measured after a 2 s warm-up per gateway; errors "
            f"{t.epp.errors} (EPP) and {t.direct.errors} (direct). During the EPP run the EPP "
            f"process used {_n(t.epp_cpu * 100, 0)} % of its core and the simulators served "
            f"{split} requests.",
        ]
    return out


def render(r: EppResults, now: datetime | None = None) -> str:
    lines = [
        START,
        last_run(now),
        "",
        *summary(r),
        *details(r),
        END,
    ]
    return "\n".join(lines) + "\n"
