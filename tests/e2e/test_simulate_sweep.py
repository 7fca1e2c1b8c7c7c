"""`pyllmd simulate --sweep` as a user runs it: a process, its local process pool, the tables
on disk; and the capacity-planning example of the user guide (shortened, and in full)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
WORKLOADS = ROOT / "tests" / "unit" / "simulate" / "workloads"
EXAMPLE = ROOT / "examples" / "capacity-planning"
TABLES = ("sweep.csv", "sweep.md", "sweep.json")


def run(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyllmd", "simulate", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONHASHSEED": "random"},
    )


def rows(out: Path) -> list[dict[str, str]]:
    with (out / "sweep.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write(path: Path, doc: Any) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def tiny_workload(tmp: Path) -> Path:
    doc = yaml.safe_load((WORKLOADS / "random_poisson.yaml").read_text(encoding="utf-8"))
    doc["load"]["stages"] = [{"rate": 6, "duration": 2}]
    return write(tmp / "workload.yaml", doc)


def test_a_sweep_on_a_process_pool_gives_the_same_tables_twice(tmp_path: Path) -> None:
    tiny_workload(tmp_path)
    sweep = write(
        tmp_path / "sweep.yaml",
        {
            "stack": str(WORKLOADS / "stack.yaml"),
            "workload": "workload.yaml",
            "parameters": [
                {
                    "name": "replicas",
                    "path": "stack.variants[name=llama].deployment.replicas",
                    "values": [1, 2],
                },
                {
                    "name": "seqs",
                    "path": "stack.variants[0].deployment.args[3]",
                    "values": ["2", "32"],
                },
            ],
        },
    )
    runs = []
    for name in ("a", "b"):
        done = run("--sweep", str(sweep), "--output", str(tmp_path / name), "--parallelism",
                   "2", "--seed", "5", "--slo-ttft", "50ms")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "swept 4 points (0 failed)" in done.stdout
        runs.append(tmp_path / name)
    a, b = runs
    for name in TABLES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    table = rows(a)
    assert [(r["replicas"], r["seqs"]) for r in table] == [
        ("1", "2"),
        ("1", "32"),
        ("2", "2"),
        ("2", "32"),
    ]
    assert all(r["error"] == "" and int(r["successes"]) > 0 for r in table)
    # the cheapest point is on the front; a dearer one is on it only when it attains more
    cheapest = min(table, key=lambda r: float(r["cost"]))
    assert cheapest["pareto"] == "true"
    for r in table:
        beaten = any(
            float(o["cost"]) <= float(r["cost"])
            and float(o["slo_attainment"]) >= float(r["slo_attainment"])
            and (o["cost"], o["slo_attainment"]) != (r["cost"], r["slo_attainment"])
            for o in table
        )
        assert r["pareto"] == ("false" if beaten else "true")
    # a point re-runs alone with plain `pyllmd simulate` from its documents: the same report
    point = a / "points" / "002-2-2"
    again = tmp_path / "again"
    done = run("--stack", str(point / "stack.yaml"), "--workload", str(point / "workload.yaml"),
               "--output", str(again), "--seed", "5", "--slo-ttft", "50ms")  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in ("summary_lifecycle_metrics.json", "slo_and_cost.json"):
        assert (again / name).read_bytes() == (point / name).read_bytes()


def test_a_bad_sweep_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    sweep = write(
        tmp_path / "sweep.yaml",
        {
            "stack": str(WORKLOADS / "stack.yaml"),
            "workload": str(WORKLOADS / "random_poisson.yaml"),
            "parameters": [{"name": "r", "path": "stack.variants[name=x].replicas", "values": [1]}],
        },
    )
    done = run("--sweep", str(sweep), "--output", str(tmp_path / "out"), timeout=60)
    assert done.returncode == 1
    assert done.stderr == (
        f"pyllmd simulate: error: --sweep {sweep}: parameters[0] (r): value '1': path "
        "stack.variants[name=x].replicas: stack.variants[name=x]: selects nothing (name, "
        "metadata.name or deployment.name)\n"
    )
    assert not (tmp_path / "out").exists()


def shortened(
    tmp_path: Path, sweep_file: str, stack_file: str
) -> tuple[Path, list[dict[str, str]]]:
    """An example's sweep with two values of its second parameter and 3 s of its workload,
    run as the guide runs it; its output directory and table."""
    sweep = yaml.safe_load((EXAMPLE / sweep_file).read_text(encoding="utf-8"))
    sweep["stack"] = str(EXAMPLE / stack_file)
    sweep["workload"] = "workload.yaml"
    sweep["parameters"][1]["values"] = [1, 2]
    workload = yaml.safe_load((EXAMPLE / "workload.yaml").read_text(encoding="utf-8"))
    workload["load"]["stages"] = [{"rate": 10, "duration": 3}]
    write(tmp_path / "workload.yaml", workload)
    path = write(tmp_path / "sweep.yaml", sweep)
    out = tmp_path / "out"
    done = run("--sweep", str(path), "--output", str(out), "--slo-ttft", "200ms", "--seed", "1",
               "--autoscaler=false")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out, rows(out)


def test_the_capacity_planning_example_shortened(tmp_path: Path) -> None:
    out, table = shortened(tmp_path, "sweep.yaml", "stack.yaml")
    assert [(r["gpu"], r["replicas"]) for r in table] == [
        ("H100", "1"),
        ("H100", "2"),
        ("A100", "1"),
        ("A100", "2"),
    ]
    for r in table:  # one variant left in each point's stack, costed with its variantCost
        point = out / "points" / r["point"]
        stack = yaml.safe_load((point / "stack.yaml").read_text(encoding="utf-8"))
        (variant,) = stack["variants"]
        name = {"H100": "llama-h100", "A100": "llama-a100"}[r["gpu"]]
        assert variant["deployment"]["name"] == name
        assert variant["deployment"]["replicas"] == int(r["replicas"])
    slo = (out / "points" / "001-H100-2" / "slo_and_cost.json").read_text(encoding="utf-8")
    assert '"llama-h100"' in slo and '"variant_cost": 4.0' in slo


def cheapest_meeting(table: list[dict[str, str]], attainment: float) -> str:
    good = [r for r in table if not r["error"] and float(r["slo_attainment"]) >= attainment]
    return min(good, key=lambda r: float(r["cost"]))["point"]


@pytest.mark.full
def test_the_capacity_planning_example_finds_what_the_guide_says(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run("--sweep", str(EXAMPLE / "sweep.yaml"), "--output", str(out), "--slo-ttft",
               "200ms", "--seed", "1", "--autoscaler=false")  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = rows(out)
    assert len(table) == 8
    # docs/user-guide/end-user/capacity-planning.md: two H100 pods are the cheapest mix whose
    # TTFT p90 is within 200 ms (attainment >= 0.9); no A100 count up to four gets there
    assert cheapest_meeting(table, 0.9) == "001-H100-2"
    assert all(float(r["slo_attainment"]) < 0.9 for r in table if r["gpu"] == "A100")
    assert all(r["pareto"] == "true" for r in table if r["point"] in ("000-H100-1", "001-H100-2"))


def test_the_pd_ratio_example_shortened(tmp_path: Path) -> None:
    out, table = shortened(tmp_path, "pd-sweep.yaml", "pd-stack.yaml")
    assert [(r["prefill"], r["decode"]) for r in table] == [
        ("1", "1"), ("1", "2"), ("2", "1"), ("2", "2")
    ]  # fmt: skip
    for r in table:
        assert not r["error"] and int(r["successes"]) > 0
        point = out / "points" / r["point"]
        with (point / "per_request.csv").open(newline="", encoding="utf-8") as f:
            pods = {row["pod"] for row in csv.DictReader(f)}
        # every request was prefilled elsewhere and answered by a decode pod
        assert pods and all(p.startswith("decode-") for p in pods), pods
        assert len(pods) <= int(r["decode"])
