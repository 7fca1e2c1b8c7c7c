"""Runs the benchmark figures and writes the report.

(a) requests/s of the simulator vs the baseline server, same client and
concurrency, zero simulated latency. (b) the most concurrent SSE streams one
simulator process holds at 50 ms inter-token latency with the client-measured
ITL p99 within 10 ms of 50 ms, stepping the number of streams up until it
breaks. (c) client-measured TTFT and ITL at low load (4 streams, configured
100 ms / 20 ms) on the simulator and on the baseline server paced the same, so
the client's and event loops' own error shows next to the simulator's. (d) one
autoscaler decision cycle for 1,000 variants from pre-collected metrics, against
an empty cycle (`bench.autoscaler_cycle`). (e)-(g) the endpoint picker: one
scheduling decision (`bench.epp_cycle`), the latency Envoy + EPP add and the
requests/s one EPP routes (`bench.epp_gateway`). (h) TTFT and prefix-cache hit
rate of four EPP configurations on a shared-prefix workload (`bench.epp_kv_wins`).
(i) whole-run replays of the shared calibration runs on the batch engine, in virtual
time, against a loop of the same step count (`bench.replay_speed`). (j) `pyllmd simulate` of
one hour at 100 requests/s over 100 pods, an autoscaled variant and the endpoint picker's
default profile, in simulated requests per wall-second, against the profile scheduling the
same requests alone (`bench.cluster_speed`; ``--cluster-quick``: one simulated minute).
The whole run is bounded (``--budget`` seconds for the stepping, fixed spans or
counts else); ``--only`` runs a part (``--only rps``: figure (a) alone, printed, no
page rewrite). Figure (a) runs ``--rps-repeat`` times (default 5), simulator and
baseline alternating, and reports the run with the median ratio plus the spread.
"""

from __future__ import annotations

import argparse
import math
import resource
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import uvloop

from bench import (
    autoscaler_cycle,
    cluster_speed,
    epp_cycle,
    epp_gateway,
    epp_kv_wins,
    epp_kv_wins_report,
    epp_report,
    loadgen,
    replay_speed,
    report,
    wrk,
)
from bench.autoscaler_fleet import FleetShape
from bench.procs import Server, free_port, pin

MODEL = "bench-model"
PROMPT = "Hello, how are you today? Tell me something."
RPS_BODY: dict[str, object] = {"model": MODEL, "prompt": PROMPT, "max_tokens": 8}
RAMP_SECONDS = 1.0
SETTLE_SECONDS = 1.0
DEFAULT_LEVELS = "250,500,1000,1500,2000,2500,3000,4000"
LOW_TTFT_MS = 100.0
LOW_ITL_MS = 20.0
LOW_STREAMS = 4
LOW_MAX_TOKENS = 50
LOW_WARMUP_SECONDS = 1.0


@dataclass(frozen=True)
class Settings:
    sim_command: list[str]
    output: Path
    concurrency: int
    levels: list[int]
    itl_ms: float
    tolerance_ms: float
    rps_seconds: int
    measure_seconds: float
    budget: float
    low_load_seconds: float
    only: str = "all"
    rps_repeat: int = 5
    autoscaler_repetitions: int = 30
    autoscaler_models: int = 250
    profile_autoscaler: bool = False
    epp_cycles: int = 2_000
    epp_requests: int = 1_000
    epp_seconds: int = 5
    epp_concurrency: int = 32
    fidelity_data: Path = Path("../shared/fidelity")
    replay_runs: int | None = None
    profile_replay: bool = False
    cluster_seconds: float = cluster_speed.FULL_S
    profile_cluster: bool = False

    def runs(self, part: str) -> bool:
        """Whether this run includes ``part`` (``simulator``, ``autoscaler`` or ``epp``)."""
        return self.only in ("all", part)


def parse_args(argv: Sequence[str] | None) -> Settings:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--output", type=Path, default=Path("docs/developer-guide/benchmarks.md"))
    p.add_argument(
        "--sim-command",
        default=f"{shlex.quote(sys.executable)} -m pyllmd sim",
        help="command that starts the simulator (e.g. the Go llm-d-inference-sim to compare)",
    )
    p.add_argument("--concurrency", type=int, default=32, help="connections for figure (a)")
    p.add_argument("--levels", default=DEFAULT_LEVELS, help="stream counts for figure (b)")
    p.add_argument("--itl-ms", type=float, default=50.0)
    p.add_argument("--tolerance-ms", type=float, default=10.0)
    p.add_argument("--rps-seconds", type=int, default=8)
    p.add_argument(
        "--rps-repeat",
        type=int,
        default=5,
        help="alternating simulator/baseline runs of figure (a); the median ratio is reported",
    )
    p.add_argument("--measure-seconds", type=float, default=4.0)
    p.add_argument("--budget", type=float, default=180.0, help="seconds for figure (b)")
    p.add_argument("--low-load-seconds", type=float, default=5.0, help="span of figure (c)")
    p.add_argument(
        "--only",
        choices=("all", "simulator", "rps", "autoscaler", "epp", "replay", "cluster"),
        default="all",
        help="run figures (a)-(c) (simulator), (d) (autoscaler), (e)-(h) (epp), (i) (replay) "
        "or (j) (cluster) only; rewrites only its block; 'rps' runs figure (a) alone and only "
        "prints it",
    )
    p.add_argument("--autoscaler-repetitions", type=int, default=30, help="timed cycles in (d)")
    p.add_argument(
        "--autoscaler-models", type=int, default=250, help="models (× 4 variants) in (d)"
    )
    p.add_argument(
        "--profile-autoscaler",
        action="store_true",
        help="also print a cProfile of 10 cycles per analyzer for (d)",
    )
    p.add_argument("--epp-cycles", type=int, default=2_000, help="timed decisions in (e)")
    p.add_argument(
        "--epp-requests", type=int, default=1_000, help="sequential requests per gateway in (f)"
    )
    p.add_argument("--epp-seconds", type=int, default=5, help="measured seconds per gateway in (g)")
    p.add_argument("--epp-concurrency", type=int, default=32, help="connections in (g)")
    p.add_argument(
        "--fidelity-data",
        type=Path,
        default=Path("../shared/fidelity"),
        help="directory of calibration_runs.csv and workloads/ for (i)",
    )
    p.add_argument(
        "--replay-runs", type=int, default=None, help="replay only the first N runs in (i)"
    )
    p.add_argument(
        "--profile-replay",
        action="store_true",
        help="also print a cProfile of the slowest run's replay for (i)",
    )
    p.add_argument(
        "--cluster-quick",
        action="store_true",
        help=f"figure (j) over {cluster_speed.QUICK_S:g} simulated seconds instead of "
        f"{cluster_speed.FULL_S:g}",
    )
    p.add_argument(
        "--profile-cluster",
        action="store_true",
        help="also print a cProfile of one simulated minute of (j)",
    )
    a = p.parse_args(argv)
    return Settings(
        sim_command=shlex.split(a.sim_command),
        output=a.output,
        concurrency=a.concurrency,
        levels=[int(x) for x in a.levels.split(",") if x.strip()],
        itl_ms=a.itl_ms,
        tolerance_ms=a.tolerance_ms,
        rps_seconds=a.rps_seconds,
        measure_seconds=a.measure_seconds,
        budget=a.budget,
        low_load_seconds=a.low_load_seconds,
        only=a.only,
        rps_repeat=max(1, a.rps_repeat),
        autoscaler_repetitions=a.autoscaler_repetitions,
        autoscaler_models=a.autoscaler_models,
        profile_autoscaler=a.profile_autoscaler,
        epp_cycles=a.epp_cycles,
        epp_requests=a.epp_requests,
        epp_seconds=a.epp_seconds,
        epp_concurrency=a.epp_concurrency,
        fidelity_data=a.fidelity_data,
        replay_runs=a.replay_runs,
        profile_replay=a.profile_replay,
        cluster_seconds=cluster_speed.QUICK_S if a.cluster_quick else cluster_speed.FULL_S,
        profile_cluster=a.profile_cluster,
    )


def simulator(s: Settings, *flags: str) -> Server:
    port = free_port()
    argv = [*s.sim_command, "--model", MODEL, "--port", str(port), "--seed", "1", *flags]
    return Server("simulator", argv, port)


def baseline(itl_ms: float, ttft_ms: float = 0.0) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "bench.baseline", "--port", str(port)]
    argv += ["--inter-token-latency-ms", str(itl_ms), "--time-to-first-token-ms", str(ttft_ms)]
    return Server("baseline", argv, port)


def requests_per_second(url: str, s: Settings) -> loadgen.Throughput:
    if wrk.available():
        wrk.run(url, RPS_BODY, s.concurrency, 2)  # warm-up, discarded
        return wrk.run(url, RPS_BODY, s.concurrency, s.rps_seconds)
    return uvloop.run(loadgen.throughput(url, RPS_BODY, s.concurrency, 2.0, s.rps_seconds))


def stream_body(s: Settings) -> dict[str, object]:
    """A streaming request that lasts past the measuring window (plus 1 s)."""
    seconds = RAMP_SECONDS + SETTLE_SECONDS + s.measure_seconds + 1.0
    tokens = math.ceil(seconds * 1000 / s.itl_ms)
    return {
        "model": MODEL,
        "prompt": PROMPT,
        "max_tokens": tokens,
        "ignore_eos": True,
        "stream": True,
    }


def hold(url: str, n: int, s: Settings) -> loadgen.StreamRun:
    body = stream_body(s)
    run = uvloop.run(
        loadgen.hold_streams(url, body, n, RAMP_SECONDS, SETTLE_SECONDS, s.measure_seconds)
    )
    p99 = run.itl_ms(0.99)
    print(f"  {n} streams: p99 {p99:.1f} ms, min open {run.min_open}, errors {run.errors}")
    return run


def stream_levels(s: Settings) -> tuple[list[loadgen.StreamRun], int, loadgen.StreamRun | None]:
    """Step up until a level does not hold or the time budget is spent."""
    deadline = time.monotonic() + s.budget
    runs: list[loadgen.StreamRun] = []
    held, broke_at = 0, 0
    top = max(s.levels) * 2
    flags = ["--inter-token-latency", f"{s.itl_ms:g}ms", "--max-num-seqs", str(top)]
    flags += ["--max-waiting-queue-length", str(top)]
    with simulator(s, *flags) as sim:
        for n in s.levels:
            if time.monotonic() > deadline:
                print(f"  time budget spent before {n} streams")
                break
            run = hold(f"{sim.base_url}/v1/completions", n, s)
            runs.append(run)
            if not report.holds(run, s.itl_ms, s.tolerance_ms):
                broke_at = n
                break
            held = n
    base_run = None
    if broke_at:
        print("baseline server at the breaking level:")
        with baseline(s.itl_ms) as base:
            base_run = hold(f"{base.base_url}/v1/completions", broke_at, s)
    return runs, held, base_run


def low_load_run(url: str, s: Settings, who: str) -> loadgen.StreamRun:
    body: dict[str, object] = {
        "model": MODEL,
        "prompt": PROMPT,
        "max_tokens": LOW_MAX_TOKENS,
        "ignore_eos": True,
        "stream": True,
    }
    run = uvloop.run(
        loadgen.repeat_streams(url, body, LOW_STREAMS, LOW_WARMUP_SECONDS, s.low_load_seconds)
    )
    lat = report.summarize(run, LOW_TTFT_MS, LOW_ITL_MS)
    print(
        f"  {who}: TTFT p50 {lat.ttft_p50:.1f} p99 {lat.ttft_p99:.1f} ms, "
        f"ITL p50 {lat.itl_p50:.1f} p99 {lat.itl_p99:.1f} ms, "
        f"{run.streams} streams, {run.errors} errors"
    )
    return run


def low_load(s: Settings) -> report.LowLoad:
    """Figure (c): the same client and load against the simulator, then the baseline."""
    flags = ["--time-to-first-token", f"{LOW_TTFT_MS:g}ms"]
    flags += ["--inter-token-latency", f"{LOW_ITL_MS:g}ms"]
    with simulator(s, *flags) as sim:
        sim_run = low_load_run(f"{sim.base_url}/v1/completions", s, "simulator")
    with baseline(LOW_ITL_MS, LOW_TTFT_MS) as base:
        base_run = low_load_run(f"{base.base_url}/v1/completions", s, "baseline ")
    return report.LowLoad(
        ttft_ms=LOW_TTFT_MS,
        itl_ms=LOW_ITL_MS,
        concurrency=LOW_STREAMS,
        max_tokens=LOW_MAX_TOKENS,
        seconds=s.low_load_seconds,
        sim=sim_run,
        base=base_run,
    )


def autoscaler(s: Settings) -> None:
    """Figure (d), in this process (no servers), written to its own block."""
    pin(0, 1)  # the same core as the load client of (a)-(c)
    shape = FleetShape(models=s.autoscaler_models)
    print(f"(d) one autoscaler decision cycle for {shape.variants:,} variants")
    results = autoscaler_cycle.run(shape, s.autoscaler_repetitions)
    if s.profile_autoscaler:
        for label, name in autoscaler_cycle.ANALYZERS:
            print(f"profile of 10 {label} cycles:")
            print(autoscaler_cycle.profile(shape, name))
    block = autoscaler_cycle.render(results)
    report.write_block(s.output, block, autoscaler_cycle.START, autoscaler_cycle.END)
    print(block)


def epp(s: Settings) -> int:
    """Figures (e)-(g), written to their own block; 1 when (f) or (g) saw errors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pin(0, 1)  # the client's core, shared with Envoy and the simulators; the EPP gets core 0
    print(f"(e) one EPP scheduling decision, {epp_cycle.ENDPOINTS} endpoints, 8k-token prompts")
    cycle = epp_cycle.run(s.epp_cycles)
    print("(f) sequential requests through Envoy + EPP and through Envoy alone, one simulator")
    with epp_gateway.gateways(s.sim_command, 1) as gw:
        latency = epp_gateway.sequential(gw.epp_url, gw.direct_url, s.epp_requests, 100)
    print(
        f"  Envoy + EPP p50 {latency.epp(0.5):.2f} p99 {latency.epp(0.99):.2f} ms, "
        f"Envoy alone p50 {latency.direct(0.5):.2f} p99 {latency.direct(0.99):.2f} ms, "
        f"added p50 {latency.added(0.5):.2f} ms, {latency.errors} errors"
    )
    print(f"(g) requests/s through one EPP to three simulators, {s.epp_concurrency} connections")
    with epp_gateway.gateways(s.sim_command, 3) as gw:
        rps = epp_gateway.throughput(gw, s.epp_concurrency, s.epp_seconds)
    print(
        f"  Envoy + EPP {rps.epp.rps:,.0f} req/s ({rps.epp.errors} errors, EPP "
        f"{rps.epp_cpu:.0%} of a core, split {rps.per_sim}), Envoy alone "
        f"{rps.direct.rps:,.0f} req/s ({rps.direct.errors} errors)"
    )
    block = epp_report.render(epp_report.EppResults(cycle, latency, rps))
    report.write_block(s.output, block, epp_report.START, epp_report.END)
    print(block)
    errors = latency.errors + rps.epp.errors + rps.direct.errors
    return 0 if errors == 0 else 1


def kv_wins(s: Settings) -> int:
    """Figure (h), written to its own block; 1 when a request failed."""
    pin(0, 1)  # the client's core, shared with Envoy and the simulators; the EPP gets core 0
    print("(h) KV-cache wins: shared-prefix workload through four EPP configurations")
    ideal = epp_kv_wins.run()
    divergent = epp_kv_wins.run(name="divergent")
    block = epp_kv_wins_report.render(ideal, divergent=divergent)
    report.write_block(s.output, block, epp_kv_wins_report.START, epp_kv_wins_report.END)
    print(block)
    runs = [r for _, rate_runs in (*ideal, *divergent) for r in rate_runs]
    return 0 if all(r.errors == 0 for r in runs) else 1


def replay(s: Settings) -> None:
    """Figure (i), in this process (no servers), written to its own block."""
    if not (s.fidelity_data / "calibration_runs.csv").exists():
        print(f"(i) skipped: no calibration_runs.csv in {s.fidelity_data} (--fidelity-data)")
        return
    pin(0, 1)
    print(f"(i) whole-run replays of the calibration runs in {s.fidelity_data}")
    results = replay_speed.run(s.fidelity_data, s.replay_runs)
    if s.profile_replay:
        print(replay_speed.profile_slowest(s.fidelity_data, results))
    block = replay_speed.render(results)
    report.write_block(s.output, block, replay_speed.START, replay_speed.END)
    print(block)


def cluster(s: Settings) -> None:
    """Figure (j), in this process (no servers), written to its own block."""
    pin(0, 1)
    print(
        f"(j) pyllmd simulate of {s.cluster_seconds:g} s at {cluster_speed.RATE:g} requests/s, "
        f"{cluster_speed.FIXED_PODS} pods + an autoscaled variant, default EPP profile"
    )
    result = cluster_speed.run(s.cluster_seconds)
    if s.profile_cluster:
        print(cluster_speed.profile())
    block = cluster_speed.render(result)
    report.write_block(s.output, block, cluster_speed.START, cluster_speed.END)
    print(block)


def main(argv: Sequence[str] | None = None) -> int:
    s = parse_args(argv)
    if s.only == "rps":
        return rps_only(s)
    code = simulator_figures(s) if s.runs("simulator") else 0
    if s.runs("autoscaler"):
        autoscaler(s)
    if s.runs("epp"):
        code = max(code, epp(s), kv_wins(s))
    if s.runs("replay"):
        replay(s)
    if s.runs("cluster"):
        cluster(s)
    print(f"written to {s.output}")
    return code


def rps_runs(s: Settings) -> list[tuple[loadgen.Throughput, loadgen.Throughput]]:
    """Figure (a) ``s.rps_repeat`` times: the simulator, then the baseline, alternating
    (both servers stay up, idle while the other is measured), so slow drifts of a
    shared machine hit both alike."""
    client = "wrk (1 thread)" if wrk.available() else "bench.loadgen (aiohttp)"
    print(f"(a) requests/s with {client}, {s.concurrency} connections, {s.rps_repeat} runs")
    runs: list[tuple[loadgen.Throughput, loadgen.Throughput]] = []
    with (
        simulator(s, "--max-num-seqs", str(max(s.concurrency, 5))) as sim,
        baseline(s.itl_ms) as base,
    ):
        for i in range(s.rps_repeat):
            sim_rps = requests_per_second(f"{sim.base_url}/v1/completions", s)
            base_rps = requests_per_second(f"{base.base_url}/v1/completions", s)
            runs.append((sim_rps, base_rps))
            print(
                f"  run {i + 1}: simulator {sim_rps.rps:,.0f} req/s ({sim_rps.errors} errors), "
                f"baseline {base_rps.rps:,.0f} req/s ({base_rps.errors} errors), "
                f"ratio {report.rps_ratio(sim_rps, base_rps):.3f}"
            )
    return runs


def _prepare_client() -> str:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the servers
    pin(0, 1)  # this process is the client; servers go on core 0
    return "wrk (1 thread)" if wrk.available() else "bench.loadgen (aiohttp)"


def rps_only(s: Settings) -> int:
    """``--only rps``: figure (a) alone, printed (the page is not rewritten)."""
    _prepare_client()
    runs = rps_runs(s)
    ratios = sorted(report.rps_ratio(*pair) for pair in runs)
    median = report.rps_ratio(*report.median_pair(runs))
    print(f"(a) median ratio {median:.3f}, min {ratios[0]:.3f}, max {ratios[-1]:.3f}")
    return 0 if all(sim.errors == 0 for sim, _ in runs) else 1


def simulator_figures(s: Settings) -> int:
    """Figures (a)-(c); 1 when figure (a) saw errors."""
    client = _prepare_client()
    pairs = rps_runs(s)
    sim_rps, base_rps = report.median_pair(pairs)
    print(f"(b) concurrent streams at {s.itl_ms:g} ms inter-token latency")
    runs, held, base_run = stream_levels(s)
    print(f"(c) latency at {LOW_STREAMS} streams, TTFT {LOW_TTFT_MS:g} ms, ITL {LOW_ITL_MS:g} ms")
    low = low_load(s)
    results = report.Results(
        client=client,
        concurrency=s.concurrency,
        sim_rps=sim_rps,
        base_rps=base_rps,
        levels=runs,
        held=held,
        itl_ms=s.itl_ms,
        tolerance_ms=s.tolerance_ms,
        max_level=max(s.levels),
        baseline_at_break=base_run,
        low_load=low,
        rps_runs=pairs,
    )
    report.write(s.output, results)
    print(report.render(results))
    return 0 if all(sim.errors == 0 for sim, _ in pairs) else 1
