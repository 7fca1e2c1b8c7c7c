"""`pyllmd simulate --sweep`: a grid of simulations over edits of the stack and workload (pure).

A sweep file names the base stack and workload and a list of parameters; the grid is the
cartesian product of the parameters' values, in their order (the last one varies fastest).
A parameter sets one document path to each of its `values` (or to the text of each of its
`files`), or, without a `path`, applies a labelled `set` of several path edits per value.

A path starts at `stack` or `workload` and goes on with `.key`, `["key.with.dots"]`, `[N]`
(the N-th item of a list) or `[name=X]` (the item of a list whose `name`, `metadata.name`,
`deployment.name` or `variantAutoscaling.metadata.name` is X). A path that reaches a string
before its end reads the string as YAML, edits it and writes it back (a ConfigMap's `data`, the
stack's `eppConfig`). The last key of a path may be new; `null` removes what the path selects.

Everything here is pure: the files a parameter names are read by a function the caller gives.
The rows of the report and its Pareto front (cheapest cost against SLO attainment) are computed
from each point's `summary_lifecycle_metrics.json` and `slo_and_cost.json` documents.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import yaml

from pyllmd.core.errors import ConfigError

__all__ = [
    "METRICS",
    "Edit",
    "Parameter",
    "Point",
    "Sweep",
    "edit_documents",
    "expand",
    "metrics_of",
    "pareto",
    "parse_path",
    "parse_sweep",
    "rows",
    "to_csv",
    "to_json",
    "to_markdown",
]

SWEEP_KEYS = ("stack", "workload", "parameters")
PARAMETER_KEYS = ("name", "path", "values", "files")
ROOTS = ("stack", "workload")
NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_STEP_RE = re.compile(r'\.([^.\[\]"]+)|\["([^"]+)"\]|\[(\d+)\]|\[name=([^\]]+)\]')


@dataclass(frozen=True)
class Step:
    """One step of a path: a map key, a list index or a list item selected by name."""

    key: str | None = None
    index: int | None = None
    name: str | None = None

    def __str__(self) -> str:
        if self.key is not None:
            return f'["{self.key}"]' if "." in self.key else f".{self.key}"
        return f"[{self.index}]" if self.index is not None else f"[name={self.name}]"


@dataclass(frozen=True)
class DocPath:
    """A path into the stack or the workload document."""

    root: str
    steps: tuple[Step, ...]
    text: str


@dataclass(frozen=True)
class Edit:
    """Set `path` to `value` (None: remove what the path selects)."""

    path: DocPath
    value: Any


@dataclass(frozen=True)
class Choice:
    """One value of a parameter: its label (in the table and the point's name) and its edits."""

    label: str
    edits: tuple[Edit, ...]


@dataclass(frozen=True)
class Parameter:
    name: str
    choices: tuple[Choice, ...]


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file; `stack` and `workload` as written (relative to the sweep file)."""

    stack: str
    workload: str
    parameters: tuple[Parameter, ...]


@dataclass(frozen=True)
class Point:
    """One point of the grid: its index, its directory name and its choice per parameter."""

    index: int
    name: str
    choices: tuple[Choice, ...]

    def labels(self, parameters: Sequence[Parameter]) -> dict[str, str]:
        return {p.name: c.label for p, c in zip(parameters, self.choices, strict=True)}


def parse_path(text: str) -> DocPath:
    """`stack.variants[name=x].deployment.replicas` -> DocPath; ConfigError saying the rule."""
    root = text.split(".", 1)[0].split("[", 1)[0]
    if root not in ROOTS:
        raise ConfigError(f"path {text!r}: must start with `stack` or `workload`")
    steps: list[Step] = []
    pos = len(root)
    while pos < len(text):
        m = _STEP_RE.match(text, pos)
        if m is None:
            raise ConfigError(
                f'path {text!r}: expected `.key`, `["key"]`, `[N]` or `[name=X]` at {text[pos:]!r}'
            )
        key, quoted, index, name = m.groups()
        if key is not None or quoted is not None:
            steps.append(Step(key=key if key is not None else quoted))
        elif index is not None:
            steps.append(Step(index=int(index)))
        else:
            steps.append(Step(name=name))
        pos = m.end()
    if not steps:
        raise ConfigError(f"path {text!r}: names the whole document; edit a key inside it")
    return DocPath(root, tuple(steps), text)


def _label(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", label).strip("_") or "_"


def _parameter(
    item: Any, i: int, where: str, read: Callable[[str], str]
) -> Parameter:  # one entry of `parameters`
    at = f"{where}: parameters[{i}]"
    if not isinstance(item, Mapping):
        raise ConfigError(f"{at}: must be a map with name, path and values (or files)")
    name = item.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"{at}: name: required, letters, digits, `_`, `.` or `-`")
    at = f"{at} ({name})"
    unknown = sorted(str(k) for k in item if k not in PARAMETER_KEYS)
    if unknown:
        known = ", ".join(PARAMETER_KEYS)
        raise ConfigError(f"{at}: unknown key {unknown[0]!r} (known: {known})")
    if ("values" in item) == ("files" in item):
        raise ConfigError(f"{at}: give either values or files")
    key = "values" if "values" in item else "files"
    raw = item[key]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{at}: {key}: must be a non-empty list")
    choices: list[Choice] = []
    path_text = item.get("path")
    if path_text is None:
        if key == "files":
            raise ConfigError(f"{at}: files: needs a path")
        for j, value in enumerate(raw):
            choices.append(_set_choice(value, f"{at}: values[{j}]"))
    else:
        if not isinstance(path_text, str):
            raise ConfigError(f"{at}: path: must be a string")
        try:
            path = parse_path(path_text)
        except ConfigError as e:
            raise ConfigError(f"{at}: {e}") from None
        for j, value in enumerate(raw):
            if key == "files":
                if not isinstance(value, str) or not value:
                    raise ConfigError(f"{at}: files[{j}]: must be a file name")
                try:
                    text = read(value)
                except OSError as e:
                    raise ConfigError(f"{at}: files[{j}] {value}: {e.strerror or e}") from None
                choices.append(Choice(PurePath(value).stem, (Edit(path, text),)))
            else:
                choices.append(Choice(_label(value), (Edit(path, value),)))
    seen: set[str] = set()
    for c in choices:
        if _safe(c.label) in seen:
            raise ConfigError(f"{at}: two values have the label {c.label!r}; labels must differ")
        seen.add(_safe(c.label))
    return Parameter(name, tuple(choices))


def _set_choice(value: Any, at: str) -> Choice:
    """A `{label: L, set: {PATH: VALUE, ...}}` value of a parameter without a path."""
    if not isinstance(value, Mapping) or set(value) != {"label", "set"}:
        raise ConfigError(
            f"{at}: without a path, each value is a map of label and set ({{PATH: VALUE, ...}})"
        )
    label, edits = value["label"], value["set"]
    if not isinstance(label, str | int | float) or isinstance(label, bool) or label == "":
        raise ConfigError(f"{at}: label: must be a non-empty string")
    if not isinstance(edits, Mapping) or not edits:
        raise ConfigError(f"{at} ({label}): set: must be a non-empty map of PATH: VALUE")
    out: list[Edit] = []
    for path_text, v in edits.items():
        try:
            out.append(Edit(parse_path(str(path_text)), v))
        except ConfigError as e:
            raise ConfigError(f"{at} ({label}): set: {e}") from None
    return Choice(str(label), tuple(out))


def parse_sweep(doc: Any, where: str, read: Callable[[str], str]) -> Sweep:
    """A sweep file document -> Sweep; ConfigError (one line starting with `where`).

    `read(name)` returns the text of a file a parameter names (OSError when it cannot)."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: the sweep file must be a map of {', '.join(SWEEP_KEYS)}")
    unknown = sorted(str(k) for k in doc if k not in SWEEP_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(SWEEP_KEYS)})")
    files: dict[str, str] = {}
    for key in ("stack", "workload"):
        value = doc.get(key, "")
        if value is None or not isinstance(value, str):
            raise ConfigError(f"{where}: {key}: must be a file name")
        files[key] = value
    items = doc.get("parameters")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}: parameters: declare at least one parameter (a list)")
    params = tuple(_parameter(item, i, where, read) for i, item in enumerate(items))
    names = [p.name for p in params]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"{where}: parameters[{i}] ({name}): a parameter of that name exists")
    return Sweep(files["stack"], files["workload"], params)


def expand(sweep: Sweep) -> list[Point]:
    """The grid: every combination of the parameters' values, the last parameter fastest."""
    combos = list(itertools.product(*(p.choices for p in sweep.parameters)))
    width = max(3, len(str(len(combos) - 1)))
    return [
        Point(k, f"{k:0{width}d}-" + "-".join(_safe(c.label) for c in combo), tuple(combo))
        for k, combo in enumerate(combos)
    ]


def _matches(item: Any, name: str) -> bool:
    if not isinstance(item, Mapping):
        return False
    candidates = [item.get("name")]
    for outer in ("metadata", "deployment"):
        inner = item.get(outer)
        if isinstance(inner, Mapping):
            candidates.append(inner.get("name"))
    va = item.get("variantAutoscaling")
    if isinstance(va, Mapping) and isinstance(va.get("metadata"), Mapping):
        candidates.append(va["metadata"].get("name"))
    return any(isinstance(c, str | int) and str(c) == name for c in candidates)


_REMOVED = object()


def _edit(node: Any, steps: Sequence[Step], value: Any, trail: str) -> Any:
    """`node` with `value` at `steps` (mutated in place where it can be); ConfigError."""
    if not steps:
        return _REMOVED if value is None else copy.deepcopy(value)
    if isinstance(node, str):  # YAML inside a string: edit it and write it back
        try:
            inner = yaml.safe_load(node)
        except yaml.YAMLError:
            raise ConfigError(f"{trail} is a string that is not YAML") from None
        if not isinstance(inner, dict | list):
            raise ConfigError(f"{trail} is a string, not YAML holding a map or a list")
        edited = _edit(inner, steps, value, trail)
        return yaml.safe_dump(edited, sort_keys=False, default_flow_style=False)
    step, rest = steps[0], steps[1:]
    here = f"{trail}{step}"
    if step.key is not None:
        if not isinstance(node, dict):
            raise ConfigError(f"{here}: {trail} is not a map")
        if step.key not in node and (rest or value is None):
            raise ConfigError(f"{here}: selects nothing (no key {step.key!r})")
        new = _edit(node.get(step.key), rest, value, here)
        if new is _REMOVED:
            del node[step.key]
        else:
            node[step.key] = new
        return node
    if not isinstance(node, list):
        raise ConfigError(f"{here}: {trail} is not a list")
    if step.index is not None:
        if step.index >= len(node):
            raise ConfigError(f"{here}: selects nothing (the list has {len(node)} items)")
        i = step.index
    else:
        found = [j for j, item in enumerate(node) if _matches(item, str(step.name))]
        if len(found) != 1:
            what = "nothing" if not found else f"{len(found)} items"
            raise ConfigError(f"{here}: selects {what} (name, metadata.name or deployment.name)")
        i = found[0]
    new = _edit(node[i], rest, value, here)
    if new is _REMOVED:
        del node[i]
    else:
        node[i] = new
    return node


def edit_documents(
    docs: Mapping[str, Any], point: Point, parameters: Sequence[Parameter], where: str
) -> dict[str, Any]:
    """Copies of the base documents ({"stack": ..., "workload": ...}) with the point's edits,
    parameter by parameter; ConfigError naming the parameter and the path's rule."""
    out = {root: copy.deepcopy(doc) for root, doc in docs.items()}
    for i, (param, choice) in enumerate(zip(parameters, point.choices, strict=True)):
        for e in choice.edits:
            try:
                new = _edit(out[e.path.root], e.path.steps, e.value, e.path.root)
            except ConfigError as err:
                raise ConfigError(
                    f"{where}: parameters[{i}] ({param.name}): value {choice.label!r}: path "
                    f"{e.path.text}: {err}"
                ) from None
            if new is _REMOVED:  # unreachable: a path has at least one step
                raise ConfigError(f"{where}: parameters[{i}] ({param.name}): removes a document")
            out[e.path.root] = new
    return out


# --- the report -----------------------------------------------------------------------

METRICS = (
    "requests",
    "successes",
    "failures",
    "ttft_p50_s",
    "ttft_p90_s",
    "itl_p50_s",
    "itl_p90_s",
    "e2e_p90_s",
    "slo_attainment",
    "goodput_rps",
    "cost",
)


def _quantile(latency: Any, metric: str, q: str) -> float | None:
    if not isinstance(latency, Mapping) or not isinstance(latency.get(metric), Mapping):
        return None
    value = latency[metric].get(q)
    return float(value) if isinstance(value, int | float) else None


def metrics_of(summary: Mapping[str, Any], slo: Mapping[str, Any]) -> dict[str, Any]:
    """A point's row values from its summary_lifecycle_metrics.json and slo_and_cost.json."""
    successes = summary.get("successes") or {}
    latency = successes.get("latency")
    return {
        "requests": slo["summary"]["requests"],
        "successes": successes.get("count", 0),
        "failures": (summary.get("failures") or {}).get("count", 0),
        "ttft_p50_s": _quantile(latency, "time_to_first_token", "median"),
        "ttft_p90_s": _quantile(latency, "time_to_first_token", "p90"),
        "itl_p50_s": _quantile(latency, "inter_token_latency", "median"),
        "itl_p90_s": _quantile(latency, "inter_token_latency", "p90"),
        "e2e_p90_s": _quantile(latency, "request_latency", "p90"),
        "slo_attainment": slo["summary"]["attainment"],
        "goodput_rps": slo["summary"]["goodput_rps"],
        "cost": slo["cost"]["total"],
    }


def pareto(points: Sequence[tuple[float, float] | None]) -> list[bool]:
    """Which (cost, attainment) points no other point beats: as cheap or cheaper and at least
    as good, better in one. None (a failed point) is never on the front."""
    ok = [p for p in points if p is not None]

    def dominated(p: tuple[float, float]) -> bool:
        return any(q[0] <= p[0] and q[1] >= p[1] and q != p for q in ok)

    return [p is not None and not dominated(p) for p in points]


def rows(
    points: Sequence[Point], parameters: Sequence[Parameter], results: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One row per point from its result ({"metrics": ..., "error": ...}), Pareto marked."""
    out: list[dict[str, Any]] = [
        {
            "point": p.name,
            "dir": f"points/{p.name}",
            "labels": p.labels(parameters),
            "metrics": dict(r["metrics"]),
            "pareto": False,
            "error": r["error"] or None,
        }
        for p, r in zip(points, results, strict=True)
    ]
    marks = pareto(
        [
            None
            if r["error"]
            else (float(r["metrics"]["cost"]), float(r["metrics"]["slo_attainment"]))
            for r in out
        ]
    )
    for r, mark in zip(out, marks, strict=True):
        r["pareto"] = mark
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def to_csv(parameters: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """One row per point: its name, the parameters' labels, the metrics, pareto and error."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["point", *parameters, *METRICS, "pareto", "error"])
    for r in rows:
        w.writerow(
            [r["point"], *(r["labels"][p] for p in parameters)]
            + [_cell(r["metrics"].get(m)) for m in METRICS]
            + [_cell(r["pareto"]), r["error"] or ""]
        )
    return buf.getvalue()


def _short(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _md_escape(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def to_markdown(
    parameters: Sequence[str], rows: Sequence[Mapping[str, Any]], title: str, note: str
) -> str:
    """The table as Markdown, then the Pareto front from the cheapest point up."""
    head = ["point", *parameters, *METRICS, "pareto", "error"]
    lines = [f"# {title}", "", note, "", "| " + " | ".join(head) + " |"]
    lines.append("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        cells = [r["point"], *(r["labels"][p] for p in parameters)]
        cells += [_short(r["metrics"].get(m)) for m in METRICS]
        cells += ["yes" if r["pareto"] else "", r["error"] or ""]
        lines.append("| " + " | ".join(_md_escape(str(c)) for c in cells) + " |")
    front = sorted(
        (r for r in rows if r["pareto"]),
        key=lambda r: (r["metrics"]["cost"], -r["metrics"]["slo_attainment"], r["point"]),
    )
    lines += ["", "Pareto front, cheapest first (cost, SLO attainment):", ""]
    lines += [
        f"- {r['point']}: {_short(r['metrics']['cost'])}, {_short(r['metrics']['slo_attainment'])}"
        for r in front
    ] or ["- none: every point failed"]
    return "\n".join(lines) + "\n"


def to_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"
