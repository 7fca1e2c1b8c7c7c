"""The dashboards' panels over a virtual-time run: every panel query of the Grafana dashboards
(`pyllmd.dashboards`, the JSON shipped to clusters) evaluated by `simulate.promql` over the
scraped series at each step, as a long CSV and one PNG per panel.

Dashboard variables are set as Grafana would for the run: `$namespace` and `$model` to the
stack's values (regular expressions, as the dashboards match them), `$__rate_interval` to four
scrape intervals (Grafana's rule with the default scrape interval of 15 s: 1m). A series'
name in the CSV and the plots is the target's `legendFormat` with its `{{label}}` fields filled.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pyllmd.dashboards import NAMES, load
from pyllmd.simulate.promql import Evaluator
from pyllmd.simulate.promql.store import Labels

CSV_COLUMNS = ("time_s", "dashboard", "panel", "series", "value")
_FIELD = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    dashboard: str
    title: str
    targets: tuple[Target, ...]


class Point(NamedTuple):  # a tuple: a long run has a point per pod, panel and step
    t: float
    dashboard: str
    panel: str
    series: str
    value: float


def dashboard_panels(names: Sequence[str] = NAMES) -> list[Panel]:
    """The panels with queries of the named dashboards, in their order."""
    out = []
    for name in names:
        for p in load(name).get("panels", []):
            targets = tuple(
                Target(t["expr"], str(t.get("legendFormat") or ""))
                for t in p.get("targets", [])
                if t.get("expr")
            )
            if targets:
                out.append(Panel(name, str(p.get("title", "")), targets))
    return out


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """Grafana's `$name` / `${name}` variables replaced (longest names first)."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    return expr


def _series_name(legend: str, labels: Mapping[str, str], expr: str) -> str:
    if legend:
        return _FIELD.sub(lambda m: labels.get(m.group(1), ""), legend)
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    return ",".join(f"{k}={v}" for k, v in sorted(shown.items())) or expr


def evaluate(
    evaluator: Evaluator,
    panels: Iterable[Panel],
    times: Iterable[float],
    variables: Mapping[str, str],
) -> list[Point]:
    """Every panel target at every time; NaN and empty answers are left out."""
    out: list[Point] = []
    queries = [(p, t, substitute(t.expr, variables)) for p in panels for t in p.targets]
    texts = [query for _, _, query in queries]
    names: dict[tuple[int, Labels], str] = {}  # a series' name per target (the same each step)
    for at in times:
        values = evaluator.instant_many(texts, at)
        for k, ((panel, target, query), value) in enumerate(zip(queries, values, strict=True)):
            if isinstance(value, str):
                continue
            if isinstance(value, float):
                rows: list[tuple[Labels, float]] = [((), value)]
            else:
                rows = [(p.labels, p.value) for p in value]  # type: ignore[union-attr]
            for labels, v in rows:
                if v != v:  # NaN
                    continue
                name = names.get((k, labels))
                if name is None:
                    name = names[(k, labels)] = _series_name(target.legend, dict(labels), query)
                out.append(Point(at, panel.dashboard, panel.title, name, v))
    return out


def write_csv(path: Path, points: Sequence[Point]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for p in points:
            w.writerow([f"{p.t:.3f}", p.dashboard, p.panel, p.series, repr(p.value)])
    return path


LEGEND_MAX = 12  # series a panel's legend lists at most (a panel per pod has none)
# the axes' place in a figure, fixed (a layout engine measuring every figure's texts would
# cost more than drawing it): room for the title, the x label and tick labels of ~8 digits
MARGINS = {"left": 0.1, "right": 0.98, "top": 0.9, "bottom": 0.14}
PNG = {"compress_level": 1}  # zlib's fastest: a plot of lines is mostly white, small anyway


def plot(directory: Path, points: Sequence[Point]) -> list[Path]:
    """One PNG per panel that has data: each series a line over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.collections import LineCollection

    by_panel: dict[tuple[str, str], dict[str, tuple[list[float], list[float]]]] = {}
    for p in points:
        xy = by_panel.setdefault((p.dashboard, p.panel), {}).get(p.series)
        if xy is None:
            xy = by_panel[(p.dashboard, p.panel)][p.series] = ([], [])
        xy[0].append(p.t)
        xy[1].append(p.value)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    out = []
    for (dashboard, title), series in by_panel.items():
        fig, ax = plt.subplots(figsize=(8, 3.5))
        fig.subplots_adjust(**MARGINS)
        ordered = sorted(series.items())
        if len(ordered) <= LEGEND_MAX:
            for name, (xs, ys) in ordered:
                ax.plot(xs, ys, label=name)
            ax.legend(fontsize="small", loc="best")
        else:  # one collection of lines, colored as separate lines would be
            lines = [np.column_stack((xs, ys)) for _, (xs, ys) in ordered]
            palette = [colors[i % len(colors)] for i in range(len(lines))]
            ax.add_collection(LineCollection(lines, colors=palette, linewidths=1.5))
            ax.autoscale_view()
        ax.set_title(f"{title} ({dashboard})")
        ax.set_xlabel("virtual time (s)")
        slug = re.sub(r"[^a-z0-9]+", "-", f"{dashboard} {title}".lower()).strip("-")
        path = directory / f"timeline-{slug}.png"
        fig.savefig(path, dpi=90, pil_kwargs=PNG)
        plt.close(fig)
        out.append(path)
    return out
