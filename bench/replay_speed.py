"""Figure (i): replay speed of the batch engine on the shared calibration set, in this process.

Each run of the calibration CSV is replayed whole (every stage, 1,200 s of virtual time for
most), one after another, exactly as `pyllmd calibrate` replays it after fitting
(`pyllmd.simulate.calibrate.replay`: the requests built from the run's spec, the engine built
from the run's vLLM settings and the shipped profile, inference-perf's metrics computed), and
timed with `time.perf_counter` around the whole call. Right after each replay the baseline
runs: a tight pure-Python loop of the same number of engine steps that only adds up the step
times of a decode step of one sequence (the run's own step-time function), the least an engine
loop on this interpreter can do per step. Replay ÷ baseline is the engine's cost per step
relative to that floor, and compares across machines.

A second row times `pyllmd simulate` (in this process, output to a temporary directory) of the
shared `general` workload against one Llama-3.1-8B-Instruct H100 pod: the same engine plus the
client model, every token's time, the reports and the plots; then the replay alone (client and
engine) once more.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from bench.host import last_run
from pyllmd.sim.batch.steptime import Profile, default_profile
from pyllmd.simulate.calibrate import Run, engine_spec, load_runs, replay
from pyllmd.simulate.cluster import Fleet
from pyllmd.simulate.deployment import build_engine_spec, parse_stack
from pyllmd.simulate.replay import replay as replay_simulate
from pyllmd.simulate.run import SimulateConfig, simulate
from pyllmd.simulate.workload import Client, parse_workload

START = "<!-- bench:replay:start -->"
END = "<!-- bench:replay:end -->"
AIM_MEDIAN_S = 3.0
AIM_MAX_S = 10.0
SIMULATE_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
SIMULATE_STACK = f"""\
variants:
  - deployment:
      name: bench
      replicas: 1
      args: [--model, {SIMULATE_MODEL}, --accelerator, H100, --latency-calculator, batch,
             --max-num-seqs, "128", --max-num-batched-tokens, "2048", --max-model-len, "4096"]
"""


@dataclass(frozen=True)
class RunTiming:
    """One run replayed whole, and the baseline loop of as many steps."""

    run_id: str
    virtual_s: float  # seconds of load (the stages' durations)
    requests: int  # sent (successes + failures)
    steps: int
    wall_s: float
    cpu_s: float
    baseline_s: float

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def ratio(self) -> float:
        return self.wall_s / self.baseline_s if self.baseline_s > 0 else float("inf")


@dataclass(frozen=True)
class SimulateTiming:
    """`pyllmd simulate` of one workload: wall seconds in all and of the replay alone."""

    workload: str
    requests: int
    wall_s: float
    replay_s: float


@dataclass(frozen=True)
class ReplayResults:
    runs: tuple[RunTiming, ...]
    simulate: SimulateTiming | None

    @property
    def median_s(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def max_s(self) -> float:
        return max(r.wall_s for r in self.runs)


def baseline_loop(step_time: Callable[[int, int, int, int, bool], float], steps: int) -> float:
    """Seconds a loop of `steps` iterations takes that only adds up a decode step's time."""
    started = time.perf_counter()
    now = 0.0
    pairs = 1
    for _ in range(steps):
        now += step_time(1, pairs, pairs, 1, True)
        pairs += 1
    elapsed = time.perf_counter() - started
    assert now > 0.0
    return elapsed


def time_run(run: Run, profile: Profile) -> RunTiming:
    started, cpu = time.perf_counter(), time.process_time()
    rep = replay(run, profile, None, "repeat", 300.0)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    base = baseline_loop(engine_spec(run, profile).step.time, rep.steps)
    return RunTiming(
        run.run_id,
        sum(d for _, d in run.stages),
        rep.n_success + rep.n_fail,
        rep.steps,
        wall,
        cpu,
        base,
    )


def time_simulate(workload: Path) -> SimulateTiming:
    """`pyllmd simulate` of `workload` against one pod (see the module docstring), then the
    replay alone again (the client and the engine, without reading files or writing reports)."""
    with tempfile.TemporaryDirectory(prefix="bench-simulate-") as tmp:
        stack = Path(tmp) / "stack.yaml"
        stack.write_text(SIMULATE_STACK, encoding="utf-8")
        config = SimulateConfig(
            stack=str(stack), workload=str(workload), output=str(Path(tmp) / "out")
        )
        started = time.perf_counter()
        outcome, _ = simulate(config)
        wall = time.perf_counter() - started
        (variant,) = parse_stack(yaml.safe_load(SIMULATE_STACK), str(stack))
    wl = parse_workload(yaml.safe_load(workload.read_text(encoding="utf-8")), str(workload))
    spec = build_engine_spec(variant)
    client = Client(wl, config.seed)
    started = time.perf_counter()
    replay_simulate(client, Fleet.of_pods(spec, [variant.name]))
    replay_s = time.perf_counter() - started
    return SimulateTiming(workload.stem, len(outcome.sends), wall, replay_s)


def run(
    data: Path,
    limit: int | None = None,
    simulate: bool = True,
    log: Callable[[str], None] = print,
) -> ReplayResults:
    runs = load_runs(data / "calibration_runs.csv", "--fidelity-data")
    if limit is not None:
        runs = runs[:limit]
    profile = default_profile()
    out = []
    for r in runs:
        t = time_run(r, profile)
        log(
            f"  {r.short:44} {t.steps:>8,} steps  {t.wall_s:6.2f} s  "
            f"{t.steps_per_s:>9,.0f} steps/s  baseline {t.baseline_s:5.2f} s  ×{t.ratio:.1f}"
        )
        out.append(t)
    sim = None
    workload = data / "workloads" / "general.yaml"
    if simulate and workload.exists():
        sim = time_simulate(workload)
        log(
            f"  pyllmd simulate {sim.workload}: {sim.wall_s:.2f} s "
            f"(replay {sim.replay_s:.2f} s), {sim.requests:,} requests"
        )
    return ReplayResults(tuple(out), sim)


def profile_slowest(data: Path, results: ReplayResults, top: int = 25) -> str:
    """cProfile of the slowest run's replay, by own time."""
    slowest = max(results.runs, key=lambda t: t.wall_s)
    (run_,) = [r for r in load_runs(data / "calibration_runs.csv") if r.run_id == slowest.run_id]
    prof = cProfile.Profile()
    prof.enable()
    replay(run_, default_profile(), None, "repeat", 300.0)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return f"profile of {run_.short}:\n{buf.getvalue()}"


def _s(x: float) -> str:
    return f"{x:.2f}"


def table(r: ReplayResults) -> list[str]:
    walls = [t.wall_s for t in r.runs]
    steps = sum(t.steps for t in r.runs)
    wall = sum(walls)
    ratios = sorted(t.ratio for t in r.runs)
    met = r.median_s <= AIM_MEDIAN_S and r.max_s <= AIM_MAX_S
    lines = [
        "| figure | measured | same-run baseline | ratio | aim | met |",
        "|---|---|---|---|---|---|",
        f"| (i) whole-run replay of the {len(r.runs)} calibration runs, wall s per run: "
        f"median / max | {_s(r.median_s)} / {_s(r.max_s)} | "
        f"{_s(statistics.median(t.baseline_s for t in r.runs))} / "
        f"{_s(max(t.baseline_s for t in r.runs))} (loop of the same steps) | "
        f"{statistics.median(ratios):.1f}× (median; {ratios[0]:.1f}–{ratios[-1]:.1f}) | "
        f"median ≤ {AIM_MEDIAN_S:g} s, max ≤ {AIM_MAX_S:g} s | {'yes' if met else 'no'} |",
        f"| (i) engine steps per second, all runs | {steps / wall:,.0f} | "
        f"{steps / sum(t.baseline_s for t in r.runs):,.0f} | "
        f"{(steps / wall) / (steps / sum(t.baseline_s for t in r.runs)):.2f} | — | — |",
    ]
    if r.simulate is not None:
        s = r.simulate
        lines.append(
            f"| (i) `pyllmd simulate` of `{s.workload}` ({s.requests:,} requests), one "
            f"Llama-3.1-8B H100 pod: wall s (of which the replay) | {_s(s.wall_s)} "
            f"({_s(s.replay_s)}) | — | — | — | — |"
        )
    return lines


def per_run(r: ReplayResults) -> list[str]:
    lines = [
        "| run | virtual s | requests | engine steps | wall s | CPU s | steps/s | baseline s "
        "| ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in r.runs:
        lines.append(
            f"| {t.run_id.split(':', 1)[-1]} | {t.virtual_s:,.0f} | {t.requests:,} | "
            f"{t.steps:,} | {_s(t.wall_s)} | {_s(t.cpu_s)} | {t.steps_per_s:,.0f} | "
            f"{_s(t.baseline_s)} | {t.ratio:.1f} |"
        )
    return lines


def render(r: ReplayResults, now: datetime | None = None) -> str:
    lines = [
        START,
        last_run(now),
        "",
        *table(r),
        "",
        "Per run (in the CSV's order; virtual s is the load's duration):",
        "",
        *per_run(r),
        END,
    ]
    return "\n".join(lines) + "\n"
