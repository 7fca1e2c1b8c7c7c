"""Results of figure (h) (`bench.epp_kv_wins`): per-request outcomes, the comparisons
behind llm-d's published order, and the Markdown block spliced into benchmarks.md."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bench.host import last_run
from bench.loadgen import percentile

START = "<!-- bench:kvwins:start -->"
END = "<!-- bench:kvwins:end -->"
# TTFT p90s closer than 10 % or 10 ms are a tie (load-only ≈ random): 10 ms is under
# half the prefill of a hit's uncached question, so such a gap is not from caching
SAME_WITHIN = 0.1
SAME_MS = 10.0
TIE_POINTS = 1.0  # hit rates closer than this many percentage points are called a tie


@dataclass(frozen=True)
class Setup:
    """What the report says about the run's shape."""

    requests: int
    tenants: int
    rate: float  # requests per second offered, open-loop
    kv_cache_blocks: int
    prefill_ms_per_token: float
    hit_ceiling: float  # the best hit rate any routing could reach on this sequence
    ceiling_capacity: float = math.nan  # req/s the simulators serve at the hit ceiling
    blind_capacity: float = math.nan  # req/s they serve when the spread ignores caches


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
    def ttft_mean(self) -> float:
        ok = [o.ttft_ms for o in self.outcomes if o.ok]
        return sum(ok) / len(ok) if ok else math.nan

    @property
    def hit_rate(self) -> float:
        """Cached / prompt tokens over the answered requests."""
        prompt = sum(o.prompt_tokens for o in self.outcomes if o.ok)
        cached = sum(o.cached_tokens for o in self.outcomes if o.ok)
        return cached / prompt if prompt else math.nan


Result = tuple[Setup, Sequence[ConfigRun]]  # one workload at one offered rate


@dataclass(frozen=True)
class Verdict:
    """The three comparisons behind llm-d's published order, for TTFT p90 and hit rate."""

    aware_ttft: bool  # precise and approximate both below load-only and random
    precise_ttft: bool  # precise below approximate, beyond a tie
    blind_same: bool  # load-only and random TTFT p90s tie
    blind_ratio: float  # load-only ÷ random TTFT p90
    aware_hits: bool
    precise_hits: bool
    hit_gap_points: float  # precise − approximate hit rate, percentage points
    aware_same: bool = False  # precise and approximate TTFT p90s tie
    aware_ratio: float = math.nan  # precise ÷ approximate TTFT p90

    @property
    def order_held(self) -> bool:
        return self.aware_ttft and self.precise_ttft and self.blind_same

    @property
    def aware_tie(self) -> bool:
        """Precise and approximate cannot be told apart: hit rates within TIE_POINTS
        and TTFT p90s tied."""
        return abs(self.hit_gap_points) < TIE_POINTS and self.aware_same


def same(a: float, b: float) -> bool:
    """Two TTFT p90s (ms) tie: closer than SAME_WITHIN of the larger or SAME_MS."""
    return abs(a - b) <= max(SAME_WITHIN * max(a, b), SAME_MS)


def lower(a: float, b: float) -> bool:
    """TTFT p90 `a` beats `b`: lower, and not a tie."""
    return a < b and not same(a, b)


def verdict(runs: Sequence[ConfigRun]) -> Verdict:
    """Whether llm-d's published order held (labels as in `epp_kv_wins.LABELS`)."""
    by = {r.label: r for r in runs}
    p = {k: r.ttft(0.9) for k, r in by.items()}
    h = {k: r.hit_rate for k, r in by.items()}
    blind_p = min(p["load-only"], p["random"])
    blind_h = max(h["load-only"], h["random"])
    return Verdict(
        aware_ttft=lower(max(p["precise"], p["approximate"]), blind_p),
        precise_ttft=lower(p["precise"], p["approximate"]),
        blind_same=same(p["load-only"], p["random"]),
        blind_ratio=p["load-only"] / p["random"] if p["random"] > 0 else math.nan,
        aware_hits=min(h["precise"], h["approximate"]) > blind_h,
        precise_hits=h["precise"] > h["approximate"],
        hit_gap_points=(h["precise"] - h["approximate"]) * 100,
        aware_same=same(p["precise"], p["approximate"]),
        aware_ratio=p["precise"] / p["approximate"] if p["approximate"] > 0 else math.nan,
    )


def _n(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _held(ok: bool) -> str:
    return "held" if ok else "**did not hold**"


def table(runs: Sequence[ConfigRun]) -> list[str]:
    lines = [
        "| configuration | TTFT p50 ms | TTFT p90 ms | TTFT mean ms | prefix-cache hit rate "
        "| errors | requests per simulator | run s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        split = " / ".join(str(n) for n in r.per_sim) or "n/a"
        lines.append(
            f"| {r.label} | {_n(r.ttft(0.5))} | {_n(r.ttft(0.9))} | {_n(r.ttft_mean)} | "
            f"{_n(r.hit_rate * 100)} % | {r.errors} | {split} | {_n(r.seconds)} |"
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
    ideal: Sequence[Result],
    now: datetime | None = None,
    divergent: Sequence[Result] = (),
) -> str:
    """The results block of figure (h): the "ideal" workload, then optionally "divergent",
    each at every offered rate."""
    lines = [
        START,
        last_run(now),
        "",
        *section(ideal, "Ideal" if divergent else ""),
    ]
    if divergent:
        lines += ["", DIVERGENT_NOTE, "", *section(divergent, "Divergent")]
    return "\n".join([*lines, END]) + "\n"


def section(results: Sequence[Result], title: str = "") -> list[str]:
    """One workload: its paragraph, then a table and verdict lines per offered rate."""
    if not results:
        return []
    first = results[0][0]
    name = f" {title}:" if title else ""
    lines = [
        f"(h){name} {first.requests:,} streamed requests per configuration and rate, "
        f"{first.tenants} tenants, sent open-loop (Poisson arrivals) through Envoy + EPP to "
        f"4 simulators ({first.kv_cache_blocks} KV blocks each, "
        f"{first.prefill_ms_per_token:g} ms prefill per uncached token). The best hit rate "
        f"any routing could reach on this sequence (every tenant's prompt cached after its "
        f"first request) is {_n(first.hit_ceiling * 100)} %. By the simulators' latency "
        f"flags they serve about {_n(first.ceiling_capacity, 0)} requests per second at "
        f"that hit rate and about {_n(first.blind_capacity, 0)} when the spread ignores "
        f"the caches.",
    ]
    for setup, runs in results:
        lines += ["", *at_rate(setup, runs)]
    return lines


def at_rate(setup: Setup, runs: Sequence[ConfigRun]) -> list[str]:
    """One offered rate: its table and which parts of the published order held."""
    v = verdict(runs)
    precise = next((r for r in runs if r.label == "precise"), None)
    events = f"{precise.events_indexed:,}" if precise is not None else "n/a"
    tie = (
        f"Precise and approximate are {_n(abs(v.hit_gap_points))} points of hit rate apart "
        f"(under {TIE_POINTS:g}) and their TTFT p90s within {SAME_WITHIN * 100:g} % or "
        f"{SAME_MS:g} ms (ratio {_n(v.aware_ratio, 2)}): a tie, not an order."
        if v.aware_tie
        else f"Precise − approximate hit rate: {v.hit_gap_points:+.1f} points."
    )
    return [
        f"At {setup.rate:g} requests per second, "
        f"{_n(setup.rate / setup.blind_capacity, 2)} × what a cache-blind spread can serve "
        f"and {_n(setup.rate / setup.ceiling_capacity, 2)} × what a spread at the ceiling "
        f"can:",
        "",
        *table(runs),
        "",
        "| expected (llm-d's published order) | TTFT p90 | prefix-cache hit rate |",
        "|---|---|---|",
        f"| cache-aware (precise, approximate) beat load-only and random | "
        f"{_held(v.aware_ttft)} | {_held(v.aware_hits)} |",
        f"| precise beats approximate | {_held(v.precise_ttft)} | {_held(v.precise_hits)} |",
        f"| load-only ≈ random (p90s within {SAME_WITHIN * 100:g} % or {SAME_MS:g} ms; "
        f"'beat' means lower by more) | "
        f"{_held(v.blind_same)} ({_n(v.blind_ratio, 2)}) | — |",
        "",
        f"Whole order precise < approximate < load-only ≈ random (TTFT p90): "
        f"{_held(v.order_held)}. {tie} The precise scorer indexed {events} BlockStored events.",
    ]
