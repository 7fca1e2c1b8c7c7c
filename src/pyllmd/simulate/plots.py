"""PNG plots of a replay (matplotlib, no display needed): latency over time, batch size and
KV cache usage over time per pod."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pyllmd.sim.batch.scheduler import StepRecord

__all__ = ["plot_all"]

MAX_POINTS = 4000  # steps drawn per pod at most (evenly thinned)


def _thin(records: Sequence[StepRecord]) -> Sequence[StepRecord]:
    if len(records) <= MAX_POINTS:
        return records
    stride = len(records) / MAX_POINTS
    return [records[int(i * stride)] for i in range(MAX_POINTS)]


def plot_all(
    out: Path,
    rows: Sequence[dict[str, Any]],
    steps: Mapping[str, Sequence[StepRecord]],
    num_blocks: int,
) -> list[Path]:
    import logging

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its start-up notes
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    ok = [r for r in rows if r["e2e_s"] != ""]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    sends = [float(r["send_s"]) for r in ok]
    ax.scatter(sends, [float(r["e2e_s"]) for r in ok], s=4, label="request latency")
    ttft = [(float(r["send_s"]), float(r["ttft_s"])) for r in ok if r["ttft_s"] != ""]
    ax.scatter([t for t, _ in ttft], [v for _, v in ttft], s=4, label="time to first token")
    ax.set_xlabel("send time (s)")
    ax.set_ylabel("seconds")
    ax.set_title("Latency over time")
    ax.legend(loc="upper left")
    path = out / "latency_over_time.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    written.append(path)
    series: list[tuple[str, str, Callable[[StepRecord], float]]] = [
        ("batch_size_over_time.png", "sequences in the step", lambda s: float(s.seqs)),
        (
            "kv_usage_over_time.png",
            "KV cache usage (fraction of blocks)",
            lambda s: s.blocks_used / num_blocks if num_blocks else 0.0,
        ),
    ]
    for name, ylabel, value in series:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for pod, records in sorted(steps.items()):
            thin = _thin(records)
            ax.plot([s.start for s in thin], [value(s) for s in thin], linewidth=0.8, label=pod)
        ax.set_xlabel("time (s)")
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel[0].upper() + ylabel[1:] + " over time")
        if steps:
            ax.legend(loc="upper left")
        path = out / name
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
