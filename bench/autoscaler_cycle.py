"""Figure (d): one autoscaler decision cycle for 1,000 variants, from pre-collected metrics.

The real `SaturationEngine` runs over the in-memory fleet of
`bench.autoscaler_fleet` (fake cluster and collector, real `ControllerMetrics`,
`StatusBook` and analyzers, a `VirtualClock`). Each analyzer row times
``await engine.cycle()`` after a warm-up, the same engine code over an empty
fleet (the baseline: ConfigMap parsing and the cycle's fixed costs), and the
analyzer alone over the same model groups, so a reader sees where the time goes.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import math
import pstats
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from bench.autoscaler_fleet import (
    SATURATION_CONFIG_MAP,
    SYSTEM_NAMESPACE,
    FakeCluster,
    FakeCollector,
    Fleet,
    FleetShape,
    action_counts,
    build_fleet,
    empty_fleet,
)
from bench.host import last_run
from bench.loadgen import percentile
from pyllmd.autoscaler.decide.analyze import make_analyzer
from pyllmd.autoscaler.decide.analyze.capacity_store import V2State
from pyllmd.autoscaler.decide.configmaps import resolve_saturation
from pyllmd.autoscaler.decide.model import Decision
from pyllmd.autoscaler.decide.status import StatusBook
from pyllmd.autoscaler.loops.metrics import ControllerMetrics
from pyllmd.autoscaler.loops.saturation import SaturationEngine
from pyllmd.autoscaler.yaml12 import parse_saturation_configmap
from pyllmd.core.clock import VirtualClock
from pyllmd.core.heap import freeze_heap

START = "<!-- bench:autoscaler:start -->"
END = "<!-- bench:autoscaler:end -->"
AIM_MS = 50.0
ANALYZERS: tuple[tuple[str, str], ...] = (("V1", ""), ("V2", "saturation"))
"""(row label, `analyzerName` of the global `default` entry)."""


@dataclass(frozen=True)
class Timing:
    """Durations of repeated runs of one thing, in milliseconds."""

    samples_ms: tuple[float, ...]

    @property
    def median(self) -> float:
        return percentile(list(self.samples_ms), 0.5)

    @property
    def p95(self) -> float:
        return percentile(list(self.samples_ms), 0.95)


@dataclass(frozen=True)
class AnalyzerRow:
    """One analyzer's figures: full cycle, empty cycle, analysis alone, and what was decided."""

    label: str
    analyzer_name: str
    cycle: Timing
    empty: Timing
    analysis: Timing
    actions: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class AutoscalerResults:
    """Everything figure (d) measured."""

    shape: FleetShape
    pods: int
    repetitions: int
    warmup: int
    rows: tuple[AnalyzerRow, ...]


def new_engine(fleet: Fleet) -> SaturationEngine:
    """A `SaturationEngine` with real outputs over the fleet's fakes and a virtual clock."""
    return SaturationEngine(
        FakeCluster(fleet),
        FakeCollector(fleet),
        ControllerMetrics(),
        StatusBook(),
        VirtualClock(),
    )


async def time_async(
    call: Callable[[], Awaitable[object]], repetitions: int, warmup: int
) -> Timing:
    """Run `call` `warmup` times untimed, then `repetitions` times timed one by one."""
    for _ in range(warmup):
        await call()
    samples: list[float] = []
    for _ in range(repetitions):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return Timing(tuple(samples))


def time_sync(call: Callable[[], object], repetitions: int, warmup: int) -> Timing:
    """`time_async` for a plain function."""

    async def wrapped() -> object:
        return call()

    return asyncio.run(time_async(wrapped, repetitions, warmup))


def analysis_call(fleet: Fleet, analyzer_name: str) -> Callable[[], list[Decision]]:
    """The analyzer over every model group of the fleet, as the engine would call it."""
    analyzer = make_analyzer(analyzer_name, V2State())
    entries, _ = parse_saturation_configmap(
        fleet.config_maps[(SYSTEM_NAMESPACE, SATURATION_CONFIG_MAP)]
    )
    work = []
    for group in fleet.groups():
        cfg = resolve_saturation(entries, {}, group.namespace, group.model_id)
        assert cfg is not None
        work.append((group, cfg))

    def run() -> list[Decision]:
        out: list[Decision] = []
        for group, cfg in work:
            out.extend(analyzer.analyze(group, cfg, 0.0))
        return out

    return run


CycleTimings = tuple[Timing, Timing, list[Decision]]


async def _cycles(fleet: Fleet, empty: Fleet, repetitions: int, warmup: int) -> CycleTimings:
    """(full cycle, empty cycle, the decisions of one full cycle)."""
    engine, baseline = new_engine(fleet), new_engine(empty)
    decisions = await engine.cycle()  # the first warm-up cycle
    freeze_heap()  # as the controller does after its first cycle
    cycle = await time_async(engine.cycle, repetitions, max(0, warmup - 1))
    empty_cycle = await time_async(baseline.cycle, repetitions, warmup)
    return cycle, empty_cycle, decisions


def measure_analyzer(
    label: str, analyzer_name: str, shape: FleetShape, repetitions: int, warmup: int
) -> AnalyzerRow:
    """Figure (d) for one analyzer; raises if the cycle did not decide for every variant."""
    fleet = build_fleet(shape, analyzer_name)
    cycle, empty, decisions = asyncio.run(
        _cycles(fleet, empty_fleet(analyzer_name), repetitions, warmup)
    )
    if len(decisions) != shape.variants:
        raise RuntimeError(f"{label}: {len(decisions)} decisions for {shape.variants} variants")
    analysis = time_sync(analysis_call(fleet, analyzer_name), repetitions, warmup)
    return AnalyzerRow(label, analyzer_name, cycle, empty, analysis, action_counts(decisions))


def run(shape: FleetShape, repetitions: int = 30, warmup: int = 3) -> AutoscalerResults:
    """Figure (d) for V1 and V2, printing each row as it is measured."""
    rows: list[AnalyzerRow] = []
    fleet_pods = build_fleet(shape).pod_count
    for label, name in ANALYZERS:
        row = measure_analyzer(label, name, shape, repetitions, warmup)
        print(
            f"  {label}: cycle median {row.cycle.median:.1f} ms (p95 {row.cycle.p95:.1f}), "
            f"empty cycle {row.empty.median:.2f} ms, analysis alone {row.analysis.median:.1f} ms, "
            f"actions {row.actions}"
        )
        rows.append(row)
    return AutoscalerResults(shape, fleet_pods, repetitions, warmup, tuple(rows))


def profile(shape: FleetShape, analyzer_name: str, cycles: int = 10, top: int = 25) -> str:
    """cProfile of `cycles` warm cycles, the `top` functions by own time (for reports)."""
    engine = new_engine(build_fleet(shape, analyzer_name))
    prof = cProfile.Profile()

    async def go() -> None:
        for _ in range(3):
            await engine.cycle()
        prof.enable()
        for _ in range(cycles):
            await engine.cycle()
        prof.disable()

    asyncio.run(go())
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


# ---------------------------------------------------------------- report


def _ms(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def per_variant_us(row: AnalyzerRow, variants: int) -> float:
    """What one more variant costs a cycle: (cycle − empty cycle) median per variant, µs."""
    if variants <= 0:
        return math.nan
    return (row.cycle.median - row.empty.median) * 1000 / variants


def table(r: AutoscalerResults) -> list[str]:
    lines = [
        "| analyzer | cycle median ms | cycle p95 ms | empty cycle median ms (p95) "
        "| cycle ÷ empty | per variant µs | analysis alone median ms (p95) "
        "| analysis share | decisions up / down / hold | median < 50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r.rows:
        c, e, a = row.cycle, row.empty, row.analysis
        ratio = f"{c.median / e.median:,.0f}" if e.median > 0 else "n/a"
        share = f"{a.median / c.median:.0%}" if c.median > 0 else "n/a"
        acts = row.actions
        name = row.analyzer_name or '""'
        lines.append(
            f"| {row.label} (`analyzerName: {name}`) | {_ms(c.median)} | {_ms(c.p95)} | "
            f"{_ms(e.median, 2)} ({_ms(e.p95, 2)}) | {ratio} | "
            f"{_ms(per_variant_us(row, r.shape.variants))} | {_ms(a.median)} ({_ms(a.p95)}) | "
            f"{share} | {acts.get('scale-up', 0)} / {acts.get('scale-down', 0)} / "
            f"{acts.get('no-change', 0)} | {'yes' if c.median < AIM_MS else 'no'} |"
        )
    return lines


def render(r: AutoscalerResults, now: datetime | None = None) -> str:
    s = r.shape
    lines = [
        START,
        last_run(now),
        "",
        f"(d) one decision cycle for {s.variants:,} variants ({s.models} models × "
        f"{s.variants_per_model} variants in {s.namespaces} namespaces, {r.pods:,} pods), "
        f"from pre-collected metrics; {r.repetitions} timed cycles after {r.warmup} warm-up "
        f"cycles. Aim: median < {AIM_MS:g} ms.",
        "",
        *table(r),
        END,
    ]
    return "\n".join(lines) + "\n"
