"""Golden replays: every figure a replay reports stays exactly what it was when the files in
`golden/` were written, so that a change made for speed cannot move a result.

- `pyllmd simulate` of `golden/workload.yaml` (shared-prefix multi-turn chat at two rates, a
  client timeout) against `golden/stack.yaml` (two pods with a KV cache small enough to
  preempt): the summary and per-stage reports, equal number for number, and the per-request
  CSV, equal byte for byte (by its SHA-256);
- `pyllmd calibrate`'s replay of three runs of the calibration set (`golden/runs.csv`; an
  overloaded one, a MoE model at TP 2, a dense one), cut to 120 s per stage: its metrics,
  success and failure counts, engine steps and preemptions.

Both use the step-time profile in `golden/profile.yaml`, not the shipped one, so a refit of
the shipped profile does not move them. A deliberate change of results (a new term in the
step-time model, a change of the scheduler's behaviour) rewrites the files:
`PYLLMD_UPDATE_GOLDEN=1 pytest tests/unit/simulate/test_replay_golden.py`, and the diff
shows what moved.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from pathlib import Path

import yaml

from pyllmd.cli import main as cli_main
from pyllmd.sim.config.profile import load_profile
from pyllmd.simulate import calibrate as ff
from pyllmd.simulate.cluster import Fleet
from pyllmd.simulate.deployment import build_engine_spec, parse_stack
from pyllmd.simulate.replay import replay
from pyllmd.simulate.workload import Client, parse_workload

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("PYLLMD_UPDATE_GOLDEN") == "1"


def _check(name: str, got: object) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    want = json.loads(path.read_text(encoding="utf-8"))
    assert got == want, f"{name} changed (see the module docstring)"


def test_pyllmd_simulate_reports_every_figure_as_before(tmp_path: Path) -> None:
    stack = tmp_path / "stack.yaml"
    text = (GOLDEN / "stack.yaml").read_text(encoding="utf-8")
    stack.write_text(text.replace("golden-profile", str(GOLDEN / "profile.yaml")), "utf-8")
    out = tmp_path / "out"
    argv = ["simulate", "--stack", str(stack), "--workload", str(GOLDEN / "workload.yaml")]
    assert cli_main([*argv, "--output", str(out), "--seed", "3"]) == 0
    reports = {
        p.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(out.glob("*_lifecycle_metrics.json"))
    }
    assert set(reports) == {
        "summary_lifecycle_metrics.json",
        "stage_0_lifecycle_metrics.json",
        "stage_1_lifecycle_metrics.json",
    }
    summary = reports["summary_lifecycle_metrics.json"]
    assert summary["failures"]["count"] > 0  # the timeout bites: aborts are covered
    csv_text = (out / "per_request.csv").read_text(encoding="utf-8")
    preemptions = sum(int(line.split(",")[15]) for line in csv_text.splitlines()[1:])
    assert preemptions > 0  # the KV cache runs out: preemptions are covered
    _check(
        "simulate.json",
        {
            "reports": reports,
            "per_request_csv_sha256": hashlib.sha256(csv_text.encode()).hexdigest(),
            "per_request_rows": csv_text.count("\n") - 1,
        },
    )


def test_calibrate_replays_report_every_figure_as_before() -> None:
    profile = load_profile(str(GOLDEN / "profile.yaml"))
    got = {}
    for run in ff.load_runs(GOLDEN / "runs.csv"):
        rep = ff.replay(run, profile, 120.0, "repeat", 60.0)
        got[run.run_id] = {
            "values": rep.values,
            "stage_values": rep.stage_values,
            "n_success": rep.n_success,
            "n_fail": rep.n_fail,
            "steps": rep.steps,
            "preemptions": rep.preemptions,
        }
    assert any(g["n_fail"] for g in got.values())  # the overloaded run times out
    _check("calibrate.json", got)


def test_a_replay_pauses_the_cyclic_garbage_collector_and_restores_it() -> None:
    """A replay allocates a record per request, step and token and makes no reference
    cycles: the collector's passes over them would be wasted."""
    text = (GOLDEN / "stack.yaml").read_text(encoding="utf-8")
    (variant,) = parse_stack(
        yaml.safe_load(text.replace("golden-profile", str(GOLDEN / "profile.yaml"))), "stack"
    )
    workload = yaml.safe_load((GOLDEN / "workload.yaml").read_text(encoding="utf-8"))
    seen: list[bool] = []
    assert gc.isenabled()
    outcome = replay(
        Client(parse_workload(workload, "workload"), 3),
        Fleet.of_pods(build_engine_spec(variant), ["a", "b"]),
        lambda now: seen.append(gc.isenabled()),
    )
    assert outcome.sends and seen and not any(seen)
    assert gc.isenabled()
