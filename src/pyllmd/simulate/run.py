"""`pyllmd simulate`: replay an inference-perf workload against a stack file's deployment in
virtual time (the composition root of the virtual-time run).

It reads the stack file (`deployment.py`) and the workload (`workload.py`), builds the batch
engine of each pod from `pyllmd.sim.batch`, runs the client and the pods on one virtual clock
(`replay.py`) and writes inference-perf's reports, a per-request CSV and plots (`report.py`).
No server, socket or wall clock is involved: the same seed gives the same report.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as settings_dataclass

from pyllmd.autoscaler.config_table import ControllerConfig
from pyllmd.core.entry import run_command
from pyllmd.core.errors import ConfigError
from pyllmd.core.flags import FlagKind
from pyllmd.core.heap import gc_paused
from pyllmd.core.logging import verbosity
from pyllmd.core.settings import flag_specs, flags_only, setting
from pyllmd.epp.config.gateway import ENVOY_EPP, gateway_settings
from pyllmd.simulate import goodput
from pyllmd.simulate.cluster import (
    DEFAULT_STARTUP_JITTER_S,
    DEFAULT_STARTUP_S,
    Fleet,
    StartupDelay,
    Timers,
    VirtualCluster,
    write_scale_events,
)
from pyllmd.simulate.control import Control, scaler_of
from pyllmd.simulate.deployment import Variant, build_engine_spec, parse_stack, variants_for
from pyllmd.simulate.gateway import BuiltinGateway
from pyllmd.simulate.kvfeed import DEFAULT_DELAY_S, drop_prefix_cache
from pyllmd.simulate.promql import Evaluator
from pyllmd.simulate.replay import Outcome, replay
from pyllmd.simulate.report import request_rows, write
from pyllmd.simulate.routing import EppRouter, Router
from pyllmd.simulate.scrape import SCRAPE_INTERVAL, Scraper
from pyllmd.simulate.timeline import Point, dashboard_panels, evaluate, plot, write_csv
from pyllmd.simulate.workload import Client, Workload, parse_workload, scaled
from pyllmd.stackfile import parse_local_spec

__all__ = ["PROG", "SIMULATE_FLAGS", "SimulateConfig", "load_options", "main", "simulate"]

PROG = "pyllmd simulate"
DESCRIPTION = (
    "Replay an inference-perf workload against the deployment of a `pyllmd up` stack file in "
    "virtual time; write inference-perf's reports, a per-request CSV and plots.\n\n"
)
log = logging.getLogger("pyllmd.simulate")


@settings_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class SimulateConfig:
    """Every `pyllmd simulate` flag."""

    stack: str = setting(
        "", "stack file whose variants are replayed (required without --sweep)", flag="stack"
    )
    workload: str = setting(
        "", "inference-perf config file of the workload (required without --sweep)", flag="workload"
    )
    output: str = setting(
        "", "directory for the reports, the per-request CSV and the plots (required)", flag="output"
    )
    seed: int = setting(0, "seed of the workload's random data and arrivals", flag="seed")
    time_scale: float = setting(
        1.0,
        "stretch the workload's clock by this factor: trace times, stage durations and the "
        "pause between stages multiplied, stage rates divided (the same requests)",
        flag="time-scale",
    )
    rate_scale: float = setting(
        1.0,
        "multiply the workload's request rate: stage rates multiplied, trace times divided",
        flag="rate-scale",
    )
    slo_ttft: float = setting(
        0.0,
        "time to first token a request must not exceed to count as good (0: not checked)",
        flag="slo-ttft",
        kind=FlagKind.DURATION,
    )
    slo_itl: float = setting(
        0.0,
        "mean inter-token latency a request must not exceed to count as good (0: not checked)",
        flag="slo-itl",
        kind=FlagKind.DURATION,
    )
    interval: float = setting(
        60.0,
        "period of the autoscaler's saturation cycle (its GLOBAL_OPT_INTERVAL)",
        flag="interval",
        kind=FlagKind.DURATION,
    )
    scrape_interval: float = setting(
        SCRAPE_INTERVAL,
        "period of Prometheus' scrapes of the pods and the autoscaler",
        flag="scrape-interval",
        kind=FlagKind.DURATION,
    )
    pod_startup_delay: float = setting(
        DEFAULT_STARTUP_S,
        "mean time from a pod's creation by a scale-up to Ready (image pull, model load)",
        flag="pod-startup-delay",
        kind=FlagKind.DURATION,
    )
    pod_startup_jitter: float = setting(
        DEFAULT_STARTUP_JITTER_S,
        "standard deviation of the start-up time (log-normal; 0: every pod takes the mean)",
        flag="pod-startup-jitter",
        kind=FlagKind.DURATION,
    )
    autoscaler: bool = setting(
        True,
        "run the stack's autoscaler and its HPAs/ScaledObjects; false keeps every Deployment "
        "at its declared replicas",
        flag="autoscaler",
    )
    kv_event_delay: float = setting(
        DEFAULT_DELAY_S,
        "time from a block entering or leaving a pod's prefix cache to the endpoint picker's "
        "precise prefix index knowing it (ZMQ and processing)",
        flag="kv-event-delay",
        kind=FlagKind.DURATION,
    )
    sweep: str = setting(
        "",
        "sweep file: run a grid of edits of the stack and workload, write sweep.csv, sweep.md, "
        "sweep.json and pareto.png (--stack/--workload default to the sweep file's)",
        flag="sweep",
    )
    parallelism: int = setting(
        0, "with --sweep: points run at once in local processes (0: the CPU count)",
        flag="parallelism",
    )  # fmt: skip
    ray_address: str = setting(
        "", "with --sweep: run the points as tasks on this Ray cluster (pyllmd[ray])",
        flag="ray-address",
    )  # fmt: skip
    v: int = verbosity("log verbosity (4: debug)")


SIMULATE_FLAGS = flag_specs(SimulateConfig)


def load_options(argv: Sequence[str]) -> SimulateConfig:
    """The command line as SimulateConfig; ConfigError naming the flag otherwise."""
    config = flags_only(SimulateConfig, argv, PROG)
    for name in ("output",) if config.sweep else ("stack", "workload", "output"):
        if not getattr(config, name):
            raise ConfigError(f"--{name}: required")
    if not config.sweep and (config.parallelism or config.ray_address):
        raise ConfigError(
            f"--{'parallelism' if config.parallelism else 'ray-address'}: needs --sweep"
        )
    if config.parallelism < 0:
        raise ConfigError(
            f"--parallelism: must be 0 (the CPU count) or more, got {config.parallelism}"
        )
    if config.seed < 0:
        raise ConfigError(f"--seed: must be 0 or more, got {config.seed}")
    for flag, value in (
        ("slo-ttft", config.slo_ttft),
        ("slo-itl", config.slo_itl),
        ("pod-startup-delay", config.pod_startup_delay),
        ("pod-startup-jitter", config.pod_startup_jitter),
        ("kv-event-delay", config.kv_event_delay),
    ):
        if not 0 <= value < math.inf:
            raise ConfigError(f"--{flag}: must be a duration >= 0, got {value:g}s")
    for flag, value in (("interval", config.interval), ("scrape-interval", config.scrape_interval)):
        if not 0 < value < math.inf:
            raise ConfigError(f"--{flag}: must be a duration > 0, got {value:g}s")
    for flag, value in (("time-scale", config.time_scale), ("rate-scale", config.rate_scale)):
        if not 0 < value < math.inf:
            raise ConfigError(f"--{flag}: must be a number > 0, got {value:g}")
    out = Path(config.output)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output {out}: not a directory")
    return config


def _read_yaml(flag: str, path: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"--{flag} {path}: {e.strerror or e}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        at = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
        problem = " ".join(str(e.problem or e.context or "invalid YAML").split())
        raise ConfigError(f"--{flag} {at}: {problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"--{flag} {path}: {' '.join(str(e).split())}") from None


def expected_requests(wl: Workload) -> int:
    """Requests the schedule sends (the progress bar's total; poisson stages on average)."""
    total = wl.sweep.num_requests if wl.sweep is not None else 0
    for st in wl.stages:
        if wl.load_trace is not None:
            cap = (
                len(wl.data_trace.entries)
                if wl.data_trace
                else int((st.rate or 0) * (st.duration or 0))
            )
            total += min(len(wl.load_trace.entries), cap)
        elif st.num_requests is not None:
            total += st.num_requests
        elif st.rate is not None and st.duration is not None:
            total += int(round(st.rate * st.duration))
    return max(total, 1)


class Progress:
    """A one-line progress bar on a terminal (nothing otherwise)."""

    WIDTH = 30

    def __init__(self, client: Client, total: int, stream: TextIO) -> None:
        self.client, self.total, self.stream = client, total, stream
        self.shown = -1
        self.now = 0.0

    def __call__(self, now: float, done: bool = False) -> None:
        percent = 100 if done else min(99, int(100 * self.client.index / self.total))
        if percent == self.shown:
            return
        self.shown = percent
        self.now = now
        filled = self.WIDTH * percent // 100
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(f"\r[{bar}] {percent:3d}%  virtual time {now:9.1f} s")
        self.stream.flush()

    def close(self, end: float | None = None) -> None:
        if end is not None:
            self(end, done=True)
        if self.shown >= 0:
            self.stream.write("\n")
            self.stream.flush()


def _router(stack_doc: Any, config: SimulateConfig, token_chars: int = 4) -> Router:
    """The stack's gateway: the endpoint picker with `gateway: envoy-epp`, else the built-in
    gateway of `pyllmd up`."""
    kind, epp_text = gateway_settings(stack_doc, f"--stack {config.stack}")
    if kind != ENVOY_EPP:
        return BuiltinGateway()
    try:
        return EppRouter(
            epp_text,
            str(stack_doc.get("namespace") or "default"),
            config.seed,
            config.kv_event_delay,
            token_chars,
        )
    except ConfigError as e:
        raise ConfigError(f"--stack {config.stack}: eppConfig: {e}") from None


def _control(
    stack_doc: Any,
    config: SimulateConfig,
    variants: Sequence[Variant],
    fleet: Fleet,
    scraper: Scraper,
    router: Router,
    model: str,
) -> Control | None:
    """The autoscaler and the Deployments' HPAs/ScaledObjects, when the stack has any."""
    where = f"--stack {config.stack}"
    if not config.autoscaler:
        return None
    spec = parse_local_spec(stack_doc, where, require_va=False)
    scalers = []
    for i, v in enumerate(variants):
        if v.deployment is None:
            continue
        try:
            scaler = scaler_of(v.deployment)
        except (ValueError, TypeError) as e:
            key = "hpa" if v.deployment.hpa is not None else "scaledObject"
            raise ConfigError(f"{where}: variants[{i}].{key}: {e}") from None
        if scaler is not None:
            scalers.append(scaler)
    if not spec.vas and not scalers:
        return None
    control: Control | None = None
    cluster = VirtualCluster(
        fleet, spec.vas, spec.config_maps, spec.nodes, lambda: control.clock.t if control else 0.0
    )
    cfg = ControllerConfig(global_opt_interval=config.interval)
    control = Control(cluster, fleet, scraper.store, cfg, router, model, scalers)
    scraper.also.append(control.scrape)
    control.start()
    return control


def simulate(
    config: SimulateConfig,
    stream: TextIO | None = None,
    *,
    token_chars: int = 4,
    cache_drops: Sequence[tuple[float, str]] = (),
    plots: bool = True,
) -> tuple[Outcome, list[Path]]:
    """Run one simulation from the settings; ConfigError (one line) on bad input.

    Beyond the flags (for experiments): `token_chars`, the characters the endpoint picker
    sees per prompt token (`routing.token_text`); `cache_drops`, (virtual time, pod name):
    that pod's prefix cache dropped then, as `/sleep?level=1` and `/wake_up` do live
    (`kvfeed.drop_prefix_cache`; a pod not Ready then is left alone); `plots`, false: no
    PNG (the reports and CSVs only)."""
    stack_doc = _read_yaml("stack", config.stack)
    variants = parse_stack(stack_doc, config.stack)
    router = _router(stack_doc, config, token_chars)
    wl = parse_workload(_read_yaml("workload", config.workload), config.workload)
    wl = scaled(wl, config.time_scale, config.rate_scale)
    for warning in wl.warnings:
        log.warning("%s", warning)
    serving = variants_for(variants, wl.model_name)
    specs = {}
    for variant in variants:
        try:
            specs[variant.name] = build_engine_spec(variant)
        except ConfigError as e:
            raise ConfigError(f"--stack {config.stack}: variant {variant.name}: {e}") from None
    client = Client(wl, config.seed)
    timers = Timers()
    startup = StartupDelay(config.pod_startup_delay, config.pod_startup_jitter)
    fleet = Fleet(variants, specs, [v.name for v in serving], timers, startup, config.seed)
    for at, pod in cache_drops:
        timers.at(at, functools.partial(_drop_cache, fleet, pod), engines=True)
    if isinstance(router, EppRouter):  # the precise prefix scorers hear the pods' KV events
        for run in fleet.runs:
            router.attach(run)
        fleet.on_ready.append(router.attach)
    namespace = str(stack_doc.get("namespace") or "default")
    first = serving[0].config
    scraper = Scraper(namespace, first.display_model, first.max_model_len, config.scrape_interval)
    if isinstance(router, EppRouter):
        scraper.also.append(functools.partial(router.scrape_into, scraper.store))
    control = _control(stack_doc, config, variants, fleet, scraper, router, first.display_model)
    bar = Progress(client, expected_requests(wl), stream) if stream is not None else None
    quiet = logging.getLogger("pyllmd.autoscaler")
    level = quiet.level
    if config.v < 4:  # a cycle's INFO lines are many, and stamped with wall time: debug only
        quiet.setLevel(logging.WARNING)
    try:
        outcome = replay(client, fleet, bar, router, scraper)
    except BaseException:
        if bar is not None:
            bar.close()
        raise
    finally:
        quiet.setLevel(level)
        if control is not None:
            control.close()
    if bar is not None:
        bar.close(outcome.end)
    if client.saturation is not None:
        rates = ", ".join(f"{st.rate:g}" for st in client.stages)
        log.info("load.sweep: saturation %.2f requests/s; stage rates %s", client.saturation, rates)
    out = Path(config.output)
    with gc_paused():  # the reports walk every request and token time of the replay
        first_token_s = specs[serving[0].name].profile.first_token_s
        rows = request_rows(
            [s for s in outcome.sends if s.stage >= 0], outcome.requests, first_token_s
        )
        files = write(
            out,
            client.stages,
            outcome.sends,
            outcome.requests,
            outcome.steps,
            outcome.num_blocks,
            first_token_s,
            plots,
            rows=rows,
        )
        dashboards = ["model-servers"]
        dashboards += ["endpoint-picker"] if isinstance(router, EppRouter) else []
        dashboards += ["autoscaler"] if control is not None else []
        costs = {v.name: v.cost for v in variants}
        extra = _run_panels(rows, config, fleet.pod_counts, costs, outcome.end)
        files += _timeline(out, scraper, namespace, dashboards, extra, plots)
        files.append(write_scale_events(out / "scale_events.csv", fleet.events))
        doc = goodput.summary(
            rows,
            len(client.stages),
            config.slo_ttft,
            config.slo_itl,
            fleet.replica_seconds(outcome.end),
            costs,
        )
        path = out / "slo_and_cost.json"
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        files.append(path)
    return outcome, files


def _drop_cache(fleet: Fleet, pod: str, now: float) -> None:
    """A fleet timer that touches engines: when it fires every pod has run the steps that
    start before `now`, and none has begun a step after it but decode-only ones, which change
    the blocks no request holds only by taking some (their prefix gone either way), as a live
    sleep lands between steps."""
    run = fleet.by_name.get(pod)
    if run is not None and run.name in fleet.engines:
        drop_prefix_cache(run, now)


RUN_PANEL_STEP_S = 60.0
ATTAINMENT_PANEL = "SLO attainment per minute (by send time)"
GOODPUT_PANEL = "Goodput per minute (requests per second)"
COST_PANEL = "Cost per minute (variantCost x pod-seconds)"


def _run_panels(
    rows: Sequence[Mapping[str, Any]],
    config: SimulateConfig,
    pod_counts: Sequence[tuple[float, str, int]],
    costs: Mapping[str, float],
    end: float,
) -> list[Point]:
    """The run's own panels, per minute: SLO attainment and goodput of the requests sent in
    it, and each variant's cost (variantCost × the pod-seconds spent in it)."""
    step = RUN_PANEL_STEP_S
    slo = goodput.attainment_over_time(rows, config.slo_ttft, config.slo_itl, step)
    out: list[Point] = []
    for t, share, rate in slo:
        out.append(Point(t, "simulate", ATTAINMENT_PANEL, "attainment", share))
        out.append(Point(t, "simulate", GOODPUT_PANEL, "goodput", rate))
    for t, variant, spent in goodput.cost_over_time(pod_counts, costs, step, end):
        out.append(Point(t, "simulate", COST_PANEL, variant, spent))
    return out


def _timeline(
    out: Path,
    scraper: Scraper,
    namespace: str,
    dashboards: Sequence[str],
    extra: Sequence[Point] = (),
    plots: bool = True,
) -> list[Path]:
    """The dashboards' panels at every scrape but the first (at time 0), and `extra` (their
    CSV, and with `plots` their PNGs)."""
    step = scraper.interval
    times = [step * k for k in range(1, round(scraper.next_time / step))]
    variables = {
        "namespace": namespace,  # a DNS label: no regular-expression metacharacter
        "model": ".*",
        "__rate_interval": f"{int(4 * step)}s",  # Grafana: four scrape intervals
    }
    points = evaluate(
        Evaluator(scraper.store), dashboard_panels(list(dashboards)), times, variables
    )
    points += extra
    csv_path = write_csv(out / "timeline.csv", points)
    return [csv_path, *plot(out, points)] if plots else [csv_path]


def _run(config: SimulateConfig) -> int:
    if config.sweep:
        from pyllmd.simulate.sweep_run import run_sweep  # it imports this module

        return run_sweep(config)
    stream = sys.stderr if sys.stderr.isatty() else None
    outcome, files = simulate(config, stream)
    measured = [s for s in outcome.sends if s.stage >= 0]
    ok = sum(1 for s in measured if s.end is not None and s.error is None)
    failed = sum(1 for s in measured if s.error is not None)
    probe = len(outcome.sends) - len(measured)
    swept = f" (and {probe} in the sweep's probe)" if probe else ""
    print(
        f"{PROG}: {ok} requests succeeded, {failed} failed{swept}, {outcome.preemptions} "
        f"preemptions, {outcome.end:.1f} s of virtual time; wrote {len(files)} files to "
        f"{config.output}"
    )
    return 0


def main(argv: Sequence[str]) -> int:
    """Entry point of `pyllmd simulate`."""
    return run_command(
        PROG,
        lambda: load_options(argv),
        _run,
        verbosity=lambda c: c.v,
        description=DESCRIPTION,
        errors=(ConfigError, OSError),
    )
