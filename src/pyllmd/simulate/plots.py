"""PNG plots of a replay (matplotlib, no display needed): latency over time, batch size and
KV cache usage over time per pod."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pyllmd.sim.batch.scheduler import StepLog, StepRecord

__all__ = ["plot_all"]

MAX_POINTS = 2000  # steps drawn per pod at most (evenly thinned; ~2.5 per pixel column)
LEGEND_MAX = 12  # pods a plot's legend names at most (more: one collection of lines)
# the axes' place in a figure, fixed (measuring every figure's texts to fit them would cost
# more than drawing it): room for the title, the axis labels and tick labels of ~8 digits
MARGINS = {"left": 0.1, "right": 0.98, "top": 0.92, "bottom": 0.12}
PNG = {"compress_level": 1}  # zlib's fastest: a plot of lines is mostly white, small anyway


def _column(records: Sequence[StepRecord], field: str) -> np.ndarray:
    """One field of every step, as float64 (a `StepLog` keeps each in a typed array)."""
    if isinstance(records, StepLog):
        return np.asarray(getattr(records, field), dtype=np.float64)
    return np.fromiter((getattr(r, field) for r in records), np.float64, len(records))


def _floats(rows: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    return np.fromiter((float(r[key]) for r in rows), np.float64, len(rows))


def _thinned(n: int) -> np.ndarray | None:
    """The steps drawn of `n` (every one: None): MAX_POINTS evenly spaced."""
    if n <= MAX_POINTS:
        return None
    return (np.arange(MAX_POINTS) * (n / MAX_POINTS)).astype(np.int64)


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
    from matplotlib.collections import LineCollection

    written: list[Path] = []
    ok = [r for r in rows if r["e2e_s"] != ""]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    fig.subplots_adjust(**MARGINS)
    first = [r for r in ok if r["ttft_s"] != ""]
    # dots as a line's markers (one stamp drawn many times; a scatter draws each point's
    # path), from arrays (a list of floats goes through a masked array point by point)
    for label, xs, ys in (
        ("request latency", _floats(ok, "send_s"), _floats(ok, "e2e_s")),
        ("time to first token", _floats(first, "send_s"), _floats(first, "ttft_s")),
    ):
        ax.plot(xs, ys, linestyle="none", marker="o", markersize=3, mew=0, label=label)
    ax.set_xlabel("send time (s)")
    ax.set_ylabel("seconds")
    ax.set_title("Latency over time")
    ax.legend(loc="upper left")
    path = out / "latency_over_time.png"
    fig.savefig(path, dpi=100, pil_kwargs=PNG)
    plt.close(fig)
    written.append(path)
    pods = sorted(steps.items())
    starts, seqs, used = [], [], []
    for _, records in pods:
        keep = _thinned(len(records))
        columns = [_column(records, f) for f in ("start", "seqs", "blocks_used")]
        x, s, b = (c if keep is None else c[keep] for c in columns)
        starts.append(x)
        seqs.append(s)
        used.append(b / num_blocks if num_blocks else np.zeros_like(b))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for name, ylabel, values in (
        ("batch_size_over_time.png", "sequences in the step", seqs),
        ("kv_usage_over_time.png", "KV cache usage (fraction of blocks)", used),
    ):
        fig, ax = plt.subplots(figsize=(9, 4.5))
        fig.subplots_adjust(**MARGINS)
        if len(pods) <= LEGEND_MAX:
            for (pod, _), x, y in zip(pods, starts, values, strict=True):
                ax.plot(x, y, linewidth=0.8, label=pod)
            if pods:
                ax.legend(loc="upper left")
        else:  # one collection of lines, colored as separate lines would be
            lines = [np.column_stack((x, y)) for x, y in zip(starts, values, strict=True)]
            palette = [colors[i % len(colors)] for i in range(len(lines))]
            ax.add_collection(LineCollection(lines, colors=palette, linewidths=0.8))
            ax.autoscale_view()
        ax.set_xlabel("time (s)")
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel[0].upper() + ylabel[1:] + " over time")
        path = out / name
        fig.savefig(path, dpi=100, pil_kwargs=PNG)
        plt.close(fig)
        written.append(path)
    return written
