"""The replay's plots: every pod's steps drawn (thinned evenly past MAX_POINTS), from the
engines' typed step logs, into images of one fixed size."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from pyllmd.sim.batch.scheduler import StepLog
from pyllmd.simulate.plots import MAX_POINTS, _thinned, plot_all


def test_long_step_logs_are_thinned_to_evenly_spaced_steps() -> None:
    assert _thinned(MAX_POINTS) is None  # short logs are drawn whole
    for n in (MAX_POINTS + 1, 12_345, 7_777_777):
        stride = n / MAX_POINTS
        assert _thinned(n).tolist() == [int(i * stride) for i in range(MAX_POINTS)]  # type: ignore[union-attr]


def _log(n: int, pod: int) -> StepLog:
    log = StepLog()
    for k in range(n):
        log.add(0.01 * k, 0.01 * k + 0.01, 64, 1 + (k + pod) % 9, 0, (k * 7 + pod) % 500, True)
    return log


def test_the_plots_of_many_pods_are_written_at_one_size(tmp_path: Path) -> None:
    rows = [
        {"send_s": f"{0.1 * i:.6f}", "e2e_s": "1.000000", "ttft_s": "0.050000"} for i in range(50)
    ]
    rows.append({"send_s": "5.000000", "e2e_s": "", "ttft_s": ""})  # a failed request
    for pods in (3, 40):  # a legend, and one collection of lines without
        out = tmp_path / str(pods)
        out.mkdir()
        steps = {f"pod-{p}": _log(MAX_POINTS + 500, p) for p in range(pods)}
        paths = plot_all(out, rows, steps, 500)
        assert [p.name for p in paths] == [
            "latency_over_time.png",
            "batch_size_over_time.png",
            "kv_usage_over_time.png",
        ]
        for path in paths:
            with Image.open(path) as image:
                assert image.size == (900, 450)
