"""The batch package is a pure core: standard library and pyllmd.core only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pyllmd.sim.batch

PACKAGE = Path(pyllmd.sim.batch.__file__).parent


def imported_modules(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


def test_the_package_imports_only_the_standard_library_and_pyllmd_core() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 5
    for f in files:
        for module in imported_modules(f):
            top = module.split(".")[0]
            allowed = top in sys.stdlib_module_names or module.startswith("pyllmd.core")
            assert allowed, f"{f.name} imports {module}"
