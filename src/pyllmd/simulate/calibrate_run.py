"""`pyllmd calibrate`: fit the batch step-time profile to measured runs (composition root).

It reads the runs (a CSV with the columns of the shared calibration set's
calibration_runs.csv; per-stage metrics from a calibration_stages.csv beside it, when
there is one), fits with `calibrate.py` (pure: replays in virtual time), prints the error per
run and the medians, and writes the profile as YAML, which `--latency-profile` reads.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as settings_dataclass

from pyllmd.core.entry import run_command
from pyllmd.core.errors import ConfigError
from pyllmd.core.logging import verbosity
from pyllmd.core.settings import flag_specs, flags_only, setting
from pyllmd.sim.batch.prior import prior_profile
from pyllmd.sim.batch.steptime import Profile, default_profile
from pyllmd.sim.config.profile import load_profile, profile_yaml
from pyllmd.simulate.calibrate import (
    METRICS,
    Run,
    Settings,
    calibrate,
    decode_bs1,
    load_runs,
    load_stages,
)

__all__ = ["CALIBRATE_FLAGS", "PROG", "CalibrateConfig", "load_options", "main", "run_calibration"]

PROG = "pyllmd calibrate"
DESCRIPTION = (
    "Fit the batch latency model's coefficients to measured vLLM runs (a CSV with the columns "
    "of calibration_runs.csv), replaying each in virtual time; print the error per run and the "
    "medians and write the profile (YAML) that --latency-profile reads.\n\n"
)
HOLDOUT_CHOICES = ("none", "model", "gpu", "both")


@settings_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class CalibrateConfig:
    """Every `pyllmd calibrate` flag."""

    runs: str = setting(
        "", "CSV of measured runs, columns of calibration_runs.csv (required)", flag="runs"
    )
    output: str = setting(
        "", "file the fitted profile is written to, YAML (required)", flag="output"
    )
    profile: str = setting(
        "",
        "profile scored with --iterations 0, YAML or JSON (default: the shipped profile)",
        flag="profile",
    )
    prior: str = setting(
        "",
        "prior every fit starts from and is drawn toward, YAML or JSON (default: the "
        "package's physical prior, which has seen no calibration run)",
        flag="prior",
    )
    iterations: int = setting(
        12, "Levenberg-Marquardt iterations of the fit (0: no fit)", flag="iterations"
    )
    passes: int = setting(
        0, "pattern-search passes after them (also picks roofline_p)", flag="passes"
    )
    fit_seconds: float = setting(
        40.0, "seconds of each load stage replayed while fitting", flag="fit-seconds"
    )
    request_timeout: float = setting(
        300.0,
        "seconds after which the client gives up on a request (a failure)",
        flag="request-timeout",
    )
    holdout: str = setting(
        "none",
        "also refit without each model and/or GPU and predict it: none, model, gpu or both",
        flag="holdout",
    )
    results: str = setting(
        "", "also write every error as JSON here (the input of `make fidelity`)", flag="results"
    )
    v: int = verbosity("log verbosity (4: debug)")


CALIBRATE_FLAGS = flag_specs(CalibrateConfig)


def load_options(argv: Sequence[str]) -> CalibrateConfig:
    """The command line as CalibrateConfig; ConfigError naming the flag otherwise."""
    config = flags_only(CalibrateConfig, argv, PROG, required=("runs", "output"))
    if config.iterations < 0:
        raise ConfigError(f"--iterations: must be 0 or more, got {config.iterations}")
    if config.passes < 0:
        raise ConfigError(f"--passes: must be 0 or more, got {config.passes}")
    if config.fit_seconds <= 0:
        raise ConfigError(f"--fit-seconds: must be > 0, got {config.fit_seconds:g}")
    if config.request_timeout <= 0:
        raise ConfigError(f"--request-timeout: must be > 0, got {config.request_timeout:g}")
    if config.holdout not in HOLDOUT_CHOICES:
        raise ConfigError(
            f"--holdout: must be one of {', '.join(HOLDOUT_CHOICES)}, got {config.holdout!r}"
        )
    return config


def _pct(x: float | None) -> str:
    return f"{x * 100:+.1f}%" if x is not None else "n/a"


def _median_abs(values: Sequence[float]) -> float:
    return statistics.median(abs(v) for v in values) if values else float("nan")


def error_table(records: Sequence[dict[str, object]], title: str) -> list[str]:
    """Plain-text lines: the error per run of `records`, then the median |error| per metric."""
    lines = [title, f"{'run':46} {'gpu':9} {'E2E':>7} {'TTFT':>7} {'ITL':>7} {'E2Ep90':>7}"]
    for rec in records:
        errs = rec["errors"]
        assert isinstance(errs, dict)
        cells = " ".join(f"{_pct(errs.get(m)):>7}" for m in METRICS)
        lines.append(f"{str(rec['run_id']).split(':', 1)[-1][:46]:46} {rec['gpu']!s:9} {cells}")
    meds = []
    for m in METRICS:
        vals = [e[m] for rec in records if isinstance(e := rec["errors"], dict) and m in e]
        meds.append(f"{_median_abs(vals) * 100:6.1f}%")
    lines.append(f"{'median |err|':56} {' '.join(meds)}")
    return lines


def _load(path: str, flag: str) -> Profile:
    """The profile file of `flag`; ConfigError naming that flag (not --latency-profile)."""
    try:
        return load_profile(path)
    except ConfigError as e:
        raise ConfigError(str(e).replace("--latency-profile", flag, 1)) from None


def run_calibration(
    config: CalibrateConfig, log: Callable[[str], None] = print
) -> tuple[Profile, dict[str, object]]:
    """Load, fit, replay and (with --holdout) refit; ConfigError (one line) on bad input."""
    runs: list[Run] = load_runs(Path(config.runs))
    start = _load(config.profile, "--profile") if config.profile else default_profile()
    holdout = {"none": (), "model": ("model",), "gpu": ("gpu",), "both": ("model", "gpu")}
    settings = Settings(
        iterations=config.iterations,
        passes=config.passes,
        fit_seconds=config.fit_seconds,
        timeout=config.request_timeout,
        holdout=holdout[config.holdout],
        prior=_load(config.prior, "--prior") if config.prior else prior_profile(),
    )
    stages = load_stages(Path(config.runs).with_name("calibration_stages.csv"))
    prof, results = calibrate(runs, start, settings, stages, log)
    bs1 = Path(config.runs).with_name("decode_bs1.csv")
    if bs1.exists():
        results["decode_bs1"] = [
            {"label": label, "simulated_ms": sim, "measured_ms": real}
            for label, sim, real in decode_bs1(bs1, prof)
        ]
    return prof, results


def _run(config: CalibrateConfig) -> int:
    started = time.monotonic()
    prof, results = run_calibration(config)
    records = results["runs"]
    assert isinstance(records, list)
    for title, which in (
        ("error per run (simulated / measured - 1), fitted runs:", "fitted"),
        ("runs with CPU KV offload (not fitted):", "offload"),
    ):
        chosen = [r for r in records if r["kind"] == which]
        if chosen:
            print("\n".join(["", *error_table(chosen, title)]))
    over = [r for r in records if r["kind"] == "overloaded"]
    if over:
        print("\noverloaded runs (not fitted): successes simulated vs measured")
        for r in over:
            name = str(r["run_id"]).split(":", 1)[-1][:46]
            print(f"  {name:46} {r['n_success_simulated']} vs {r['n_success']}")
    held = results["holdout"]
    assert isinstance(held, dict)
    for title, by_run in held.items():
        chosen = [dict(r, errors=by_run[r["run_id"]]) for r in records if r["run_id"] in by_run]
        print("\n".join(["", *error_table(chosen, f"{title}:")]))
    Path(config.output).write_text(profile_yaml(prof), encoding="utf-8")
    if config.results:
        Path(config.results).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"\n{PROG}: wrote {config.output} in {time.monotonic() - started:.0f} s")
    return 0


def main(argv: Sequence[str]) -> int:
    """Entry point of `pyllmd calibrate`."""
    return run_command(
        PROG,
        lambda: load_options(argv),
        _run,
        verbosity=lambda c: c.v,
        description=DESCRIPTION,
        errors=(ConfigError, OSError),
    )
