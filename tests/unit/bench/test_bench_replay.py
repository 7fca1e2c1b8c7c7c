"""Figure (i): whole-run replays of calibration runs timed against a loop of as many steps,
and `pyllmd simulate` of the `general` workload; the block written into the page."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from bench import replay_speed
from bench.replay_speed import ReplayResults, RunTiming, SimulateTiming

GOLDEN = Path(__file__).parents[1] / "simulate" / "golden"
WORKLOADS = Path(__file__).parents[1] / "simulate" / "workloads"


def _data(tmp_path: Path) -> Path:
    """Two runs of the calibration set cut to 20 s per stage, and a small `general`."""
    lines = (GOLDEN / "runs.csv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    rows = []
    for line in lines[1:3]:
        cells = line.split(",")
        for col in ("stage0_duration_s", "stage1_duration_s"):
            i = header.index(col)
            if cells[i]:
                cells[i] = "20"
        rows.append(",".join(cells))
    data = tmp_path / "fidelity"
    (data / "workloads").mkdir(parents=True)
    (data / "calibration_runs.csv").write_text("\n".join([lines[0], *rows]) + "\n", "utf-8")
    shutil.copy(WORKLOADS / "shared_prefix_multi_turn.yaml", data / "workloads" / "general.yaml")
    return data


def test_each_run_is_replayed_whole_and_timed_with_its_baseline(tmp_path: Path) -> None:
    logged: list[str] = []
    results = replay_speed.run(_data(tmp_path), log=logged.append)
    assert len(results.runs) == 2 and len(logged) == 3
    for t in results.runs:
        assert t.virtual_s in (20.0, 40.0)
        assert t.steps > 0 and t.requests > 0
        assert t.wall_s > 0 and t.baseline_s > 0 and t.steps_per_s > 0
    assert results.simulate is not None
    assert results.simulate.workload == "general"
    assert results.simulate.requests == 44  # 4/s for 5 s, then 8/s for 3 s
    assert 0 < results.simulate.replay_s and 0 < results.simulate.wall_s
    block = replay_speed.render(results)
    assert block.startswith(replay_speed.START) and block.rstrip().endswith(replay_speed.END)
    assert "20260217-170634-llama-2-7b-tp1-reasoning" in block


def test_the_baseline_loop_calls_the_step_time_once_per_step() -> None:
    calls: list[int] = []

    def step_time(tokens: int, pairs: int, kv: int, seqs: int, decode_only: bool) -> float:
        calls.append(pairs)
        return 0.01

    assert replay_speed.baseline_loop(step_time, 5) >= 0.0
    assert calls == [1, 2, 3, 4, 5]


def _timing(run_id: str, wall: float, base: float) -> RunTiming:
    return RunTiming(run_id, 1200.0, 9000, 100_000, wall, wall, base)


def test_the_block_gives_median_max_ratio_and_whether_the_aim_is_met() -> None:
    runs = (
        _timing("TR:a", 1.0, 0.1),
        _timing("TR:b", 2.0, 0.1),
        _timing("TR:c", 12.0, 0.2),
    )
    results = ReplayResults(runs, SimulateTiming("general", 16_800, 5.0, 3.0))
    block = replay_speed.render(results, datetime(2026, 1, 2, 3, 4, tzinfo=UTC))
    assert "Last run: 2026-01-02 03:04 UTC" in block
    assert "| 2.00 / 12.00 |" in block  # median / max wall s
    assert "20.0× (median; 10.0–60.0)" in block
    assert "| no |" in block  # the max is over 10 s
    assert "| 5.00 (3.00) |" in block
    assert "| a | 1,200 | 9,000 | 100,000 | 1.00 | 1.00 | 100,000 | 0.10 | 10.0 |" in block
    fast = ReplayResults(runs[:2], None)
    assert "| yes |" in replay_speed.render(fast)
    assert "simulate" not in replay_speed.render(fast)
