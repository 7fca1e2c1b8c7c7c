"""Results of figure (h) (`bench.epp_kv_wins`): per-request outcomes, the comparisons
behind llm-d's published order, and the Markdown block spliced into benchmarks.md."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bench.loadgen import percentile

START = "<!-- bench:kvwins:start -->"
END = "<!-- bench:kvwins:end -->"
SAME_WITHIN = 0.1  # load-only ≈ random: TTFT p90s within 10 %
TIE_POINTS = 1.0  # hit rates closer than this many percentage points are called a tie


@dataclass(frozen=True)
class Setup:
    """What the report says about the run's shape."""

    requests: int
    tenants: int
    concurrency: int
    kv_cache_blocks: int
    prefill_ms_per_token: float
    hit_ceiling: float  # the best hit rate any routing could reach on this sequence


@dataclass(frozen=True)
class Outcome:
    """One request as the client saw it; `ttft_ms` NaN when it failed."""

    ttft_ms: float
    prompt_tokens: int = 0
    cached_tokens: int = 0

    @property
    def ok(self) -> bool:
        return not math.isnan(self.ttft_ms)


@dataclass(frozen=True)
class ConfigRun:
    """One EPP configuration's run of the workload."""

    label: str
    outcomes: tuple[Outcome, ...]
    seconds: float
    per_sim: tuple[int, ...] = ()  # requests each simulator served
    events_indexed: int = 0  # BlockStored events the precise scorer indexed

    @property
    def errors(self) -> int:
        return sum(not o.ok for o in self.outcomes)

    def ttft(self, q: float) -> float:
        return percentile([o.ttft_ms for o in self.outcomes if o.ok], q)

    @property
    def hit_rate(self) -> float:
        """Cached / prompt tokens over the answered requests."""
        prompt = sum(o.prompt_tokens for o in self.outcomes if o.ok)
        cached = sum(o.cached_tokens for o in self.outcomes if o.ok)
        return cached / prompt if prompt else math.nan


@dataclass(frozen=True)
class Verdict:
    """The three comparisons behind llm-d's published order, for TTFT p90 and hit rate."""

    aware_ttft: bool  # precise and approximate both below load-only and random
    precise_ttft: bool  # precise below approximate
    blind_ratio: float  # load-only ÷ random TTFT p90; "≈" means within ±SAME_WITHIN
    aware_hits: bool
    precise_hits: bool
    hit_gap_points: float  # precise − approximate hit rate, percentage points

    @property
    def blind_same(self) -> bool:
        return abs(self.blind_ratio - 1) <= SAME_WITHIN

    @property
    def order_held(self) -> bool:
        return self.aware_ttft and self.precise_ttft and self.blind_same

    @property
    def aware_tie(self) -> bool:
        return abs(self.hit_gap_points) < TIE_POINTS


def verdict(runs: Sequence[ConfigRun]) -> Verdict:
    """Whether llm-d's published order held (labels as in `epp_kv_wins.LABELS`)."""
    by = {r.label: r for r in runs}
    p = {k: r.ttft(0.9) for k, r in by.items()}
    h = {k: r.hit_rate for k, r in by.items()}
    blind_p = min(p["load-only"], p["random"])
    blind_h = max(h["load-only"], h["random"])
    return Verdict(
        aware_ttft=max(p["precise"], p["approximate"]) < blind_p,
        precise_ttft=p["precise"] < p["approximate"],
        blind_ratio=p["load-only"] / p["random"] if p["random"] > 0 else math.nan,
        aware_hits=min(h["precise"], h["approximate"]) > blind_h,
        precise_hits=h["precise"] > h["approximate"],
        hit_gap_points=(h["precise"] - h["approximate"]) * 100,
    )


def _n(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _held(ok: bool) -> str:
    return "held" if ok else "**did not hold**"


def table(runs: Sequence[ConfigRun]) -> list[str]:
    lines = [
        "| configuration | TTFT p50 ms | TTFT p90 ms | prefix-cache hit rate | errors "
        "| requests per simulator | run s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        split = " / ".join(str(n) for n in r.per_sim) or "n/a"
        lines.append(
            f"| {r.label} | {_n(r.ttft(0.5))} | {_n(r.ttft(0.9))} | {_n(r.hit_rate * 100)} % | "
            f"{r.errors} | {split} | {_n(r.seconds)} |"
        )
    return lines


DIVERGENT_NOTE = (
    "Divergent: the same shape, but the words have 8–12 letters (one simulator token "
    "each, about 11 characters per token, not 4) and, at 40, 50, 60 and 70 % of the run, "
    "simulator 1, 2, 3, 4 in turn has its KV cache dropped (`/sleep?level=1` then "
    "`/wake_up`, which emits AllBlocksCleared). The approximate scorer cuts prompts into "
    "blocks of block size × 4 characters and, under autoTune, sizes each endpoint's LRU "
    "from the engine's block count, so it counts about 2.7 times as many blocks per "
    "prompt as the engine holds and believes each simulator keeps fewer tenants than it "
    "does; and it never learns of the dropped caches. The precise scorer hashes the "
    "engine's own tokens and drops a pod's blocks on AllBlocksCleared. The hit ceiling "
    "below ignores the drops (the real ceiling is lower)."
)


def render(
    setup: Setup,
    runs: Sequence[ConfigRun],
    now: datetime | None = None,
    divergent: tuple[Setup, Sequence[ConfigRun]] | None = None,
) -> str:
    """The results block of figure (h): the "ideal" workload, then optionally "divergent"."""
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        START,
        f"Last run: {when}; {os.cpu_count()} cores (nproc), {platform.machine()}, "
        f"Python {platform.python_version()}.",
        "",
        *section(setup, runs, "Ideal" if divergent else ""),
    ]
    if divergent is not None:
        lines += ["", DIVERGENT_NOTE, "", *section(*divergent, "Divergent")]
    return "\n".join([*lines, END]) + "\n"


def section(setup: Setup, runs: Sequence[ConfigRun], title: str = "") -> list[str]:
    """One workload's paragraph, table and verdict lines."""
    v = verdict(runs)
    precise = next((r for r in runs if r.label == "precise"), None)
    events = f"{precise.events_indexed:,}" if precise is not None else "n/a"
    tie = (
        f"Precise and approximate are {_n(abs(v.hit_gap_points))} points of hit rate apart "
        f"(under {TIE_POINTS:g}): a tie, so their TTFT order is within run-to-run noise here."
        if v.aware_tie
        else f"Precise − approximate hit rate: {v.hit_gap_points:+.1f} points."
    )
    name = f" {title}:" if title else ""
    return [
        f"(h){name} {setup.requests:,} streamed requests per configuration, "
        f"{setup.tenants} tenants, "
        f"{setup.concurrency} concurrent, through Envoy + EPP to 4 simulators "
        f"({setup.kv_cache_blocks} KV blocks each, {setup.prefill_ms_per_token:g} ms prefill "
        f"per uncached token). The best hit rate any routing could reach on this sequence "
        f"(every tenant's prompt cached after its first request) is "
        f"{_n(setup.hit_ceiling * 100)} %.",
        "",
        *table(runs),
        "",
        "| expected (llm-d's published order) | TTFT p90 | prefix-cache hit rate |",
        "|---|---|---|",
        f"| cache-aware (precise, approximate) beat load-only and random | "
        f"{_held(v.aware_ttft)} | {_held(v.aware_hits)} |",
        f"| precise beats approximate | {_held(v.precise_ttft)} | {_held(v.precise_hits)} |",
        f"| load-only ≈ random (p90 ratio within ±{SAME_WITHIN:.0%}) | "
        f"{_held(v.blind_same)} ({_n(v.blind_ratio, 2)}) | — |",
        "",
        f"Whole order precise < approximate < load-only ≈ random (TTFT p90): "
        f"{_held(v.order_held)}. {tie} The precise scorer indexed {events} BlockStored events.",
    ]
