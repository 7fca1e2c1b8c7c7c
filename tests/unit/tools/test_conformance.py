"""The conformance doc generator: spec parsing, test discovery, and freshness."""

from __future__ import annotations

from pathlib import Path

from tools import conformance as conf

SPEC = """# Spec

## 13. Older

1. not an acceptance check

## 14. Acceptance checks

Unless stated: defaults.

1. First check.
2. Second check with a `a|b` pipe,
   wrapped onto a second line.
3. Third check.

## 15. Next
"""


def test_parse_spec_reads_only_the_numbered_items_of_section_14() -> None:
    checks = conf.parse_spec(SPEC)
    assert [c.number for c in checks] == [1, 2, 3]
    assert checks[0].text == "First check."
    assert checks[1].text == "Second check with a `a|b` pipe, wrapped onto a second line."


def test_check_numbers_from_test_names() -> None:
    assert conf.check_numbers("test_sim_acc_07_unknown_model") == [7]
    assert conf.check_numbers("test_sim_acc_09_10_11_validation") == [9, 10, 11]
    assert conf.check_numbers("test_sim_acc_7_too_short") == []
    assert conf.check_numbers("test_other") == []


def test_scan_finds_module_and_class_tests(tmp_path: Path) -> None:
    tests = tmp_path / "tests" / "unit"
    tests.mkdir(parents=True)
    (tests / "test_a.py").write_text(
        "def test_sim_acc_01_first(): ...\n"
        "async def test_sim_acc_03_third(): ...\n"
        "class TestX:\n"
        "    def test_sim_acc_01_again(self): ...\n"
        "def helper_sim_acc_02(): ...\n"
    )
    found = conf.scan_tests(tmp_path / "tests", tmp_path)
    assert found == {
        1: [
            "tests/unit/test_a.py::test_sim_acc_01_first",
            "tests/unit/test_a.py::TestX::test_sim_acc_01_again",
        ],
        3: ["tests/unit/test_a.py::test_sim_acc_03_third"],
    }


def test_render_statuses_and_escapes_pipes() -> None:
    checks = conf.parse_spec(SPEC)
    doc = conf.render(checks, {1: ["t.py::test_sim_acc_01_x"]}, {"2": "issue 7"})
    rows = [line for line in doc.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows[0] == "| 1 | First check. | `t.py::test_sim_acc_01_x` | tested |"
    assert rows[1].endswith("| deferred (issue 7) |")
    assert "`a\\|b`" in rows[1]
    assert rows[2] == "| 3 | Third check. |  | open |"
    assert "1 of 3 checks tested, 1 deferred, 1 open." in doc


def test_render_lists_tests_for_checks_the_spec_lacks() -> None:
    doc = conf.render(conf.parse_spec(SPEC), {99: ["t.py::test_sim_acc_99_x"]}, {})
    assert "- `t.py::test_sim_acc_99_x`" in doc


def test_committed_conformance_doc_is_up_to_date() -> None:
    expected = conf.generate()
    actual = conf.DOC.read_text() if conf.DOC.exists() else ""
    assert actual == expected, "docs/developer-guide/conformance.md is stale: run make conformance"
