"""Generates the conformance pages: spec acceptance checks -> tests.

Each part's spec ends with numbered acceptance checks: the simulator spec's
§14, the autoscaler spec's "Acceptance checks" section and the EPP spec's §13
(the last two grouped under plain sub-headings). A test covers check NN of a
part when its name starts with the part's prefix and the number:
``test_sim_acc_NN_`` (simulator), ``test_wva_acc_NN_`` (autoscaler) or
``test_epp_acc_NN_`` (endpoint picker); a test covering several checks lists
them all: ``test_sim_acc_09_10_validation``. This tool joins the two and writes
one table per part with each check's status: ``tested``, ``deferred (reason)``
(from the ``deferred`` map of the part's checked-in JSON), ``partly tested``
(tests exist and the rest is deferred) or ``open``.

The specs live outside the repository (``../shared/spec/`` from the
repository root). When a spec is there, its check titles are refreshed into
the part's checked-in JSON (tools/acceptance_checks*.json), which the page is
built from, so the pages can be regenerated without the specs.

Usage: ``python tools/conformance.py [--check] [--spec-dir DIR]``.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC_DIR = ROOT.parent / "shared" / "spec"
ITEM = re.compile(r"^(\d+)\.\s+(.*\S)\s*$")


@dataclass(frozen=True)
class Suite:
    """One part's acceptance checks: where they come from and where the page goes."""

    key: str
    title: str
    spec_name: str
    section: str
    prefix: str
    checks_json: Path
    doc: Path
    where: str = ""  # how the JSON's `source` names the section

    @property
    def test_name(self) -> re.Pattern[str]:
        return re.compile(rf"^{self.prefix}((?:\d{{2}}_)+)\w*$")


SIMULATOR = Suite(
    key="sim",
    title="Simulator",
    spec_name="simulator.md",
    section="## 14. Acceptance checks",
    prefix="test_sim_acc_",
    checks_json=ROOT / "tools" / "acceptance_checks.json",
    doc=ROOT / "docs" / "developer-guide" / "conformance.md",
    where="section 14",
)
AUTOSCALER = Suite(
    key="wva",
    title="Autoscaler",
    spec_name="autoscaler.md",
    section="## Acceptance checks",
    prefix="test_wva_acc_",
    checks_json=ROOT / "tools" / "acceptance_checks_autoscaler.json",
    doc=ROOT / "docs" / "developer-guide" / "conformance-autoscaler.md",
    where="section Acceptance checks",
)
EPP = Suite(
    key="epp",
    title="EPP",
    spec_name="epp.md",
    section="## 13. Acceptance checks",
    prefix="test_epp_acc_",
    checks_json=ROOT / "tools" / "acceptance_checks_epp.json",
    doc=ROOT / "docs" / "developer-guide" / "conformance-epp.md",
    where="section 13",
)
SUITES = (SIMULATOR, AUTOSCALER, EPP)

# Backwards-compatible names (the simulator suite).
SPEC = SPEC_DIR / SIMULATOR.spec_name
CHECKS_JSON = SIMULATOR.checks_json
DOC = SIMULATOR.doc
SECTION = SIMULATOR.section


@dataclass(frozen=True)
class Check:
    number: int
    text: str
    group: str = ""


def _is_group_heading(lines: list[str], i: int) -> bool:
    """A plain line (no number, not indented, no final period) right before an item."""
    line = lines[i]
    if not line.strip() or line[0].isspace() or ITEM.match(line) or line.rstrip().endswith("."):
        return False
    following = next((x for x in lines[i + 1 :] if x.strip()), "")
    return bool(ITEM.match(following))


def parse_spec(text: str, section: str = SECTION) -> list[Check]:
    """The numbered items of the acceptance-checks section, in order, with their groups."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith(section))
    except StopIteration:
        raise ValueError(f"section {section!r} not found in the spec") from None
    checks: list[Check] = []
    group = ""
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if line.startswith("## "):
            break
        match = ITEM.match(line)
        if match:
            checks.append(Check(int(match.group(1)), match.group(2), group))
        elif checks and line.startswith("   ") and line.strip():
            last = checks[-1]  # a wrapped continuation line
            checks[-1] = Check(last.number, f"{last.text} {line.strip()}", last.group)
        elif _is_group_heading(lines, i):
            group = line.strip()
    if not checks:
        raise ValueError("no acceptance checks found in the spec")
    return checks


def load_json(path: Path) -> tuple[list[Check], dict[str, str], dict[str, str]]:
    """Checks, the deferred map (number -> reason) and the notes map (number -> remark)."""
    data = json.loads(path.read_text())
    checks = [
        Check(int(c["number"]), str(c["text"]), str(c.get("group", ""))) for c in data["checks"]
    ]
    deferred = {str(k): str(v) for k, v in data.get("deferred", {}).items()}
    notes = {str(k): str(v) for k, v in data.get("notes", {}).items()}
    return checks, deferred, notes


@dataclass(frozen=True)
class Correction:
    """A spec statement (outside the acceptance checks) that upstream's code contradicts."""

    where: str
    spec: str
    upstream: str
    tests: tuple[str, ...] = ()


def load_corrections(path: Path) -> list[Correction]:
    """The JSON's `corrections` list (empty when absent)."""
    data = json.loads(path.read_text())
    return [
        Correction(str(c["where"]), str(c["spec"]), str(c["upstream"]), tuple(c.get("tests", ())))
        for c in data.get("corrections", [])
    ]


def _correction_json(correction: Correction) -> dict[str, object]:
    item: dict[str, object] = {
        "where": correction.where,
        "spec": correction.spec,
        "upstream": correction.upstream,
    }
    if correction.tests:
        item["tests"] = list(correction.tests)
    return item


def _by_number(items: Mapping[str, str]) -> dict[str, str]:
    return dict(sorted(items.items(), key=lambda kv: int(kv[0])))


def _check_json(check: Check) -> dict[str, object]:
    item: dict[str, object] = {"number": check.number, "text": check.text}
    if check.group:
        item["group"] = check.group
    return item


def dump_json(
    path: Path,
    checks: list[Check],
    deferred: Mapping[str, str],
    notes: Mapping[str, str] | None = None,
    source: str = "shared/spec/simulator.md, section 14 (regenerate: make conformance)",
    corrections: Sequence[Correction] = (),
) -> None:
    data: dict[str, object] = {
        "source": source,
        "deferred": _by_number(deferred),
        "notes": _by_number(notes or {}),
    }
    if corrections:
        data["corrections"] = [_correction_json(c) for c in corrections]
    data["checks"] = [_check_json(c) for c in checks]
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _source(suite: Suite) -> str:
    where = suite.where or f"section {suite.section.lstrip('# ')}"
    return f"shared/spec/{suite.spec_name}, {where} (regenerate: make conformance)"


def check_numbers(test_name: str, suite: Suite = SIMULATOR) -> list[int]:
    """Check numbers a test name claims: ``test_sim_acc_09_10_x`` -> [9, 10]."""
    match = suite.test_name.match(test_name)
    if not match:
        return []
    return [int(n) for n in match.group(1).split("_") if n]


def _test_names(tree: ast.Module) -> Iterable[str]:
    """Test functions at module level and in classes, as pytest node suffixes."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield f"{node.name}::{item.name}"


def scan_tests(tests_dir: Path, root: Path, suite: Suite = SIMULATOR) -> dict[int, list[str]]:
    """Check number -> ``path::name`` of every test named with the suite's prefix."""
    found: dict[int, list[str]] = {}
    for path in sorted(tests_dir.rglob("test_*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        rel = path.relative_to(root).as_posix()
        for name in _test_names(tree):
            for number in check_numbers(name.rsplit("::", 1)[-1], suite):
                found.setdefault(number, []).append(f"{rel}::{name}")
    return found


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def status(
    check: Check,
    tests: Mapping[int, list[str]],
    deferred: Mapping[str, str],
    notes: Mapping[str, str] | None = None,
) -> str:
    key = str(check.number)
    note = (notes or {}).get(key)
    if tests.get(check.number):
        if key in deferred:
            return f"partly tested ({note or 'see tests'}); rest deferred ({deferred[key]})"
        return f"tested ({note})" if note else "tested"
    if key in deferred:
        return f"deferred ({deferred[key]})"
    return "open"


def _header(suite: Suite) -> list[str]:
    if suite is SIMULATOR:
        return [
            "# Simulator conformance",
            "",
            "Generated by `make conformance` (tools/conformance.py) from the acceptance checks of",
            "the simulator spec (section 14) and the tests named `test_sim_acc_NN_*`. Do not edit.",
        ]
    name = suite.title if suite.title.isupper() else suite.title.lower()
    return [
        f"# {suite.title} conformance",
        "",
        "Generated by `make conformance` (tools/conformance.py) from the acceptance checks of",
        f'the {name} spec (section "{suite.section.lstrip("# ")}") and the '
        f"tests named `{suite.prefix}NN_*`.",
        "Do not edit. The simulator's page is [conformance.md](conformance.md).",
    ]


def _table(rows: list[tuple[Check, str]], tests: Mapping[int, list[str]]) -> list[str]:
    lines = ["| # | check | tests | status |", "|---|---|---|---|"]
    for check, state in rows:
        names = "<br>".join(f"`{t}`" for t in tests.get(check.number, []))
        lines.append(f"| {check.number} | {_cell(check.text)} | {names} | {state} |")
    return lines


def render(
    checks: list[Check],
    tests: Mapping[int, list[str]],
    deferred: Mapping[str, str],
    notes: Mapping[str, str] | None = None,
    suite: Suite = SIMULATOR,
    corrections: Sequence[Correction] = (),
) -> str:
    """The whole conformance page; a pure function of its inputs."""
    states = [status(c, tests, deferred, notes) for c in checks]
    tested = sum(s.startswith("tested") for s in states)
    partly = sum(s.startswith("partly") for s in states)
    later = sum(s.startswith("deferred") for s in states)
    opened = len(checks) - tested - partly - later
    summary = f"{tested} of {len(checks)} checks tested, "
    if partly:
        summary += f"{partly} partly tested, "
    lines = [*_header(suite), "", f"{summary}{later} deferred, {opened} open.", ""]
    rows = list(zip(checks, states, strict=True))
    groups = list(dict.fromkeys(c.group for c in checks))
    if groups == [""]:
        lines += _table(rows, tests)
    else:
        for group in groups:
            lines += [f"## {group or 'Other'}", ""]
            lines += _table([r for r in rows if r[0].group == group], tests)
            lines.append("")
        lines.pop()
    unknown = sorted(set(tests) - {c.number for c in checks})
    if unknown:
        lines += ["", "Tests naming a check the spec does not have:", ""]
        lines += [f"- `{t}`" for n in unknown for t in tests[n]]
    if corrections:
        lines += ["", "## Corrections to the spec", ""]
        lines += [
            "Statements of the spec outside the acceptance checks that upstream's code at the",
            "pinned revision contradicts; pyllmd follows the code.",
            "",
            "| where | the spec says | upstream (and pyllmd) | tests |",
            "|---|---|---|---|",
        ]
        for c in corrections:
            names = "<br>".join(f"`{t}`" for t in c.tests)
            lines.append(f"| {_cell(c.where)} | {_cell(c.spec)} | {_cell(c.upstream)} | {names} |")
    return "\n".join(lines) + "\n"


def generate(root: Path = ROOT, checks_json: Path | None = None, suite: Suite = SIMULATOR) -> str:
    path = checks_json or suite.checks_json
    checks, deferred, notes = load_json(path)
    tests = scan_tests(root / "tests", root, suite)
    return render(checks, tests, deferred, notes, suite, load_corrections(path))


def refresh(suite: Suite, spec: Path) -> bool:
    """Rewrite the suite's JSON from the spec when the spec is present."""
    if not spec.exists():
        return False
    path = suite.checks_json
    _, deferred, notes = load_json(path) if path.exists() else ([], {}, {})
    corrections = load_corrections(path) if path.exists() else []
    checks = parse_spec(spec.read_text(), suite.section)
    dump_json(path, checks, deferred, notes, _source(suite), corrections)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a page is out of date")
    parser.add_argument("--spec-dir", type=Path, default=SPEC_DIR)
    args = parser.parse_args(argv)
    if args.check:
        stale = [s for s in SUITES if not s.doc.exists() or s.doc.read_text() != generate(suite=s)]
        for suite in stale:
            print(f"{suite.doc.relative_to(ROOT)} is out of date: run make conformance",
                  file=sys.stderr)  # fmt: skip
        return 1 if stale else 0
    for suite in SUITES:
        spec = args.spec_dir / suite.spec_name
        if refresh(suite, spec):
            print(f"refreshed {suite.checks_json.relative_to(ROOT)} from {spec.name}")
        suite.doc.write_text(generate(suite=suite))
        print(f"wrote {suite.doc.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
