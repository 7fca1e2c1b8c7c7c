"""`pyllmd simulate` as a process: a tiny workload replayed end to end, its files on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

WORKLOADS = Path(__file__).parents[1] / "unit" / "simulate" / "workloads"


def run_simulate(out: Path, hash_seed: str = "0") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pyllmd",
            "simulate",
            "--stack",
            str(WORKLOADS / "stack.yaml"),
            "--workload",
            str(WORKLOADS / "shared_prefix_multi_turn.yaml"),
            "--output",
            str(out),
            "--seed",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
    )


def test_simulate_writes_inference_perf_reports_csv_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run_simulate(out)
    assert done.returncode == 0, done.stderr
    assert "44 requests succeeded, 0 failed" in done.stdout
    assert "\r" not in done.stderr  # no progress bar when stderr is not a terminal
    names = {p.name for p in out.iterdir()}
    timeline = {n for n in names if n.startswith("timeline-") and n.endswith(".png")}
    assert "timeline-model-servers-running-requests-per-pod.png" in timeline
    names -= timeline
    assert "timeline-simulate-cost-per-minute-variantcost-x-pod-seconds.png" in timeline
    assert names == {
        "timeline.csv",
        "scale_events.csv",
        "slo_and_cost.json",
        "summary_lifecycle_metrics.json",
        "stage_0_lifecycle_metrics.json",
        "stage_1_lifecycle_metrics.json",
        "per_request.csv",
        "latency_over_time.png",
        "batch_size_over_time.png",
        "kv_usage_over_time.png",
    }
    summary = json.loads((out / "summary_lifecycle_metrics.json").read_text(encoding="utf-8"))
    assert summary["successes"]["count"] == 44
    assert summary["successes"]["latency"]["time_to_first_token"]["p99"] > 0


def test_the_same_seed_gives_the_same_files_in_another_process(tmp_path: Path) -> None:
    # string hashing differs between the two processes; the replay must not depend on it
    assert run_simulate(tmp_path / "a", hash_seed="1").returncode == 0
    assert run_simulate(tmp_path / "b", hash_seed="2").returncode == 0
    for name in ("summary_lifecycle_metrics.json", "stage_1_lifecycle_metrics.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "per_request.csv").read_bytes() == (
        tmp_path / "b" / "per_request.csv"
    ).read_bytes()


def test_simulate_bad_input_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pyllmd", "simulate", "--stack", str(tmp_path / "none.yaml"),
         "--workload", str(WORKLOADS / "random_poisson.yaml"), "--output", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == (
        f"pyllmd simulate: error: --stack {tmp_path / 'none.yaml'}: No such file or directory\n"
    )
