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


GROUPED_SPEC = """# Spec

## Acceptance checks

Defaults unless stated: T_kv 0.80.

CRD and config
1. First check.
2. Second check.

Outputs (`wva_*`)

3. Third check.

## Known weaknesses
"""


def test_parse_spec_records_plain_sub_headings_as_groups() -> None:
    checks = conf.parse_spec(GROUPED_SPEC, conf.AUTOSCALER.section)
    assert [(c.number, c.group) for c in checks] == [
        (1, "CRD and config"),
        (2, "CRD and config"),
        (3, "Outputs (`wva_*`)"),
    ]


def test_simulator_spec_without_sub_headings_has_no_groups() -> None:
    assert {c.group for c in conf.parse_spec(SPEC)} == {""}


def test_autoscaler_test_names_use_the_wva_prefix() -> None:
    assert conf.check_numbers("test_wva_acc_01_03_schema", conf.AUTOSCALER) == [1, 3]
    assert conf.check_numbers("test_sim_acc_01_x", conf.AUTOSCALER) == []
    assert conf.check_numbers("test_wva_acc_01_x", conf.SIMULATOR) == []


def test_render_groups_and_partly_tested_checks() -> None:
    checks = conf.parse_spec(GROUPED_SPEC, conf.AUTOSCALER.section)
    doc = conf.render(
        checks,
        {1: ["t.py::test_wva_acc_01_x"], 3: ["t.py::test_wva_acc_03_x"]},
        {"2": "later", "3": "needs a real cluster"},
        {"3": "manifests only"},
        conf.AUTOSCALER,
    )
    assert doc.startswith("# Autoscaler conformance\n")
    assert "## CRD and config" in doc and "## Outputs (`wva_*`)" in doc
    rows = [line for line in doc.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows[1].endswith("| deferred (later) |")
    assert rows[2].endswith(
        "| partly tested (manifests only); rest deferred (needs a real cluster) |"
    )
    assert "1 of 3 checks tested, 1 partly tested, 1 deferred, 0 open." in doc


def test_dump_and_load_keep_groups(tmp_path: Path) -> None:
    path = tmp_path / "checks.json"
    checks = conf.parse_spec(GROUPED_SPEC, conf.AUTOSCALER.section)
    conf.dump_json(path, checks, {"2": "later"}, {"1": "note"})
    assert conf.load_json(path) == (checks, {"2": "later"}, {"1": "note"})


def test_committed_autoscaler_conformance_doc_is_up_to_date() -> None:
    suite = conf.AUTOSCALER
    actual = suite.doc.read_text() if suite.doc.exists() else ""
    assert actual == conf.generate(suite=suite), (
        "docs/developer-guide/conformance-autoscaler.md is stale: run make conformance"
    )


EPP_SPEC = """# EPP

## 12. Local mode note

1. not a check

## 13. Acceptance checks

CLI / start-up
1. No `--pool-name` → exit ≠ 0.
2. Both flags → same error.

Scorers / pickers
3. queue-scorer, queues {0, 5, 10} → scores {1, 0.5, 0}.

---

## 14. Known weaknesses / open asks (observed upstream) a better implementation could fix

* No built-in default config.
"""


def test_epp_suite_reads_section_13_with_its_groups() -> None:
    checks = conf.parse_spec(EPP_SPEC, conf.EPP.section)
    assert [(c.number, c.group) for c in checks] == [
        (1, "CLI / start-up"),
        (2, "CLI / start-up"),
        (3, "Scorers / pickers"),
    ]


def test_epp_test_names_use_the_epp_prefix() -> None:
    assert conf.check_numbers("test_epp_acc_09_10_standalone", conf.EPP) == [9, 10]
    assert conf.check_numbers("test_wva_acc_09_x", conf.EPP) == []
    assert conf.check_numbers("test_epp_acc_09_x", conf.SIMULATOR) == []


def test_render_epp_page_header_and_deferred_reasons() -> None:
    checks = conf.parse_spec(EPP_SPEC, conf.EPP.section)
    doc = conf.render(checks, {1: ["t.py::test_epp_acc_01_x"]}, {"3": "issue 7"}, {}, conf.EPP)
    assert doc.startswith("# EPP conformance\n")
    assert 'the EPP spec (section "13. Acceptance checks")' in doc
    assert "`test_epp_acc_NN_*`" in doc
    assert "1 of 3 checks tested, 1 deferred, 1 open." in doc


def test_epp_json_source_names_section_13(tmp_path: Path) -> None:
    path = tmp_path / "epp.json"
    checks = conf.parse_spec(EPP_SPEC, conf.EPP.section)
    conf.dump_json(path, checks, {"3": "issue 7"}, {}, conf._source(conf.EPP))
    assert "shared/spec/epp.md, section 13 " in path.read_text()
    assert conf.load_json(path) == (checks, {"3": "issue 7"}, {})


def test_every_suite_writes_its_own_page() -> None:
    assert len({s.doc for s in conf.SUITES}) == len({s.key for s in conf.SUITES}) == 3


def test_committed_epp_conformance_doc_is_up_to_date() -> None:
    suite = conf.EPP
    actual = suite.doc.read_text() if suite.doc.exists() else ""
    assert actual == conf.generate(suite=suite), (
        "docs/developer-guide/conformance-epp.md is stale: run make conformance"
    )


def test_spec_corrections_are_kept_by_refresh_and_rendered(tmp_path: Path) -> None:
    path = tmp_path / "epp.json"
    checks = conf.parse_spec(EPP_SPEC, conf.EPP.section)
    fix = conf.Correction("§5, `x-filter`", "keeps a|b", "keeps c", ("t.py::test_x",))
    conf.dump_json(path, checks, {}, {}, conf._source(conf.EPP), [fix])
    assert conf.load_corrections(path) == [fix]
    spec = tmp_path / "epp.md"
    spec.write_text(EPP_SPEC)
    suite = conf.Suite(**{**conf.EPP.__dict__, "checks_json": path})
    assert conf.refresh(suite, spec)
    assert conf.load_corrections(path) == [fix]  # a refresh from the spec keeps them
    doc = conf.render(checks, {}, {}, {}, conf.EPP, [fix])
    assert doc.endswith(
        "| where | the spec says | upstream (and pyllmd) | tests |\n|---|---|---|---|\n"
        "| §5, `x-filter` | keeps a\\|b | keeps c | `t.py::test_x` |\n"
    )
    assert "Corrections" not in conf.render(checks, {}, {}, {}, conf.EPP)
