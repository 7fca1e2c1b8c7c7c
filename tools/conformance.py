"""Generates docs/developer-guide/conformance.md: spec acceptance checks -> tests.

The simulator spec's §14 lists numbered acceptance checks. A test covers check
NN when its name starts with ``test_sim_acc_NN_``. This tool joins the two and
writes a table with each check's status (a test covering several checks lists
them all: ``test_sim_acc_09_10_validation``): ``tested``, ``deferred (issue N)``
(from the ``deferred`` map in tools/acceptance_checks.json) or ``open``.

The spec lives outside the repository (``../shared/spec/simulator.md`` from
the repository root). When it is there, the check titles are refreshed into
tools/acceptance_checks.json, the checked-in copy the doc is built from, so the
doc can be regenerated without it.

Usage: ``python tools/conformance.py [--check] [--spec PATH]``.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "spec" / "simulator.md"
CHECKS_JSON = ROOT / "tools" / "acceptance_checks.json"
DOC = ROOT / "docs" / "developer-guide" / "conformance.md"
TEST_NAME = re.compile(r"^test_sim_acc_((?:\d{2}_)+)\w*$")
SECTION = "## 14. Acceptance checks"
ITEM = re.compile(r"^(\d+)\.\s+(.*\S)\s*$")


@dataclass(frozen=True)
class Check:
    number: int
    text: str


def parse_spec(text: str) -> list[Check]:
    """The numbered items of the acceptance-checks section, in order."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith(SECTION))
    except StopIteration:
        raise ValueError(f"section {SECTION!r} not found in the spec") from None
    checks: list[Check] = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        match = ITEM.match(line)
        if match:
            checks.append(Check(int(match.group(1)), match.group(2)))
        elif checks and line.startswith("   ") and line.strip():
            last = checks[-1]  # a wrapped continuation line
            checks[-1] = Check(last.number, f"{last.text} {line.strip()}")
    if not checks:
        raise ValueError("no acceptance checks found in the spec")
    return checks


def load_json(path: Path) -> tuple[list[Check], dict[str, str], dict[str, str]]:
    """Checks, the deferred map (number -> issue) and the notes map (number -> deviation)."""
    data = json.loads(path.read_text())
    checks = [Check(int(c["number"]), str(c["text"])) for c in data["checks"]]
    deferred = {str(k): str(v) for k, v in data.get("deferred", {}).items()}
    notes = {str(k): str(v) for k, v in data.get("notes", {}).items()}
    return checks, deferred, notes


def _by_number(items: Mapping[str, str]) -> dict[str, str]:
    return dict(sorted(items.items(), key=lambda kv: int(kv[0])))


def dump_json(
    path: Path,
    checks: list[Check],
    deferred: Mapping[str, str],
    notes: Mapping[str, str] | None = None,
) -> None:
    data = {
        "source": "shared/spec/simulator.md, section 14 (regenerate: make conformance)",
        "deferred": _by_number(deferred),
        "notes": _by_number(notes or {}),
        "checks": [{"number": c.number, "text": c.text} for c in checks],
    }
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def check_numbers(test_name: str) -> list[int]:
    """Check numbers a test name claims: ``test_sim_acc_09_10_x`` -> [9, 10]."""
    match = TEST_NAME.match(test_name)
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


def scan_tests(tests_dir: Path, root: Path) -> dict[int, list[str]]:
    """Check number -> ``path::name`` of every test named test_sim_acc_NN_*."""
    found: dict[int, list[str]] = {}
    for path in sorted(tests_dir.rglob("test_*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        rel = path.relative_to(root).as_posix()
        for name in _test_names(tree):
            for number in check_numbers(name.rsplit("::", 1)[-1]):
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
    if tests.get(check.number):
        note = (notes or {}).get(str(check.number))
        return f"tested ({note})" if note else "tested"
    if str(check.number) in deferred:
        return f"deferred ({deferred[str(check.number)]})"
    return "open"


def render(
    checks: list[Check],
    tests: Mapping[int, list[str]],
    deferred: Mapping[str, str],
    notes: Mapping[str, str] | None = None,
) -> str:
    """The whole conformance.md text; a pure function of its inputs."""
    states = [status(c, tests, deferred, notes) for c in checks]
    tested = sum(s.startswith("tested") for s in states)
    later = sum(s.startswith("deferred") for s in states)
    lines = [
        "# Simulator conformance",
        "",
        "Generated by `make conformance` (tools/conformance.py) from the acceptance checks of",
        "the simulator spec (section 14) and the tests named `test_sim_acc_NN_*`. Do not edit.",
        "",
        f"{tested} of {len(checks)} checks tested, {later} deferred, "
        f"{len(checks) - tested - later} open.",
        "",
        "| # | check | tests | status |",
        "|---|---|---|---|",
    ]
    for check, state in zip(checks, states, strict=True):
        names = "<br>".join(f"`{t}`" for t in tests.get(check.number, []))
        lines.append(f"| {check.number} | {_cell(check.text)} | {names} | {state} |")
    unknown = sorted(set(tests) - {c.number for c in checks})
    if unknown:
        lines += ["", "Tests naming a check the spec does not have:", ""]
        lines += [f"- `{t}`" for n in unknown for t in tests[n]]
    return "\n".join(lines) + "\n"


def generate(root: Path = ROOT, checks_json: Path = CHECKS_JSON) -> str:
    checks, deferred, notes = load_json(checks_json)
    return render(checks, scan_tests(root / "tests", root), deferred, notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the doc is out of date")
    parser.add_argument("--spec", type=Path, default=SPEC)
    args = parser.parse_args(argv)
    if args.check:
        if DOC.exists() and DOC.read_text() == generate():
            return 0
        print(f"{DOC.relative_to(ROOT)} is out of date: run make conformance", file=sys.stderr)
        return 1
    if args.spec.exists():
        _, deferred, notes = load_json(CHECKS_JSON) if CHECKS_JSON.exists() else ([], {}, {})
        dump_json(CHECKS_JSON, parse_spec(args.spec.read_text()), deferred, notes)
        print(f"refreshed {CHECKS_JSON.relative_to(ROOT)} from {args.spec.name}")
    DOC.write_text(generate())
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
