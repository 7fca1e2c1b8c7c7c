"""README.md and docs/ match the code: command lines parse, make targets, paths and links exist.

`tools/doccheck.py` does the work; the first test runs it over the real pages,
the others show on synthetic pages that it catches what it must.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tools import doccheck
from tools.doccheck import check, doc_pages, undocumented_flags, undocumented_metrics

PAGE = "docs/user-guide/admin/synthetic.md"


def problems(markdown: str) -> list[str]:
    return [str(p) for p in check({PAGE: markdown})]


def test_readme_and_docs_match_the_code() -> None:
    pages = doc_pages(doccheck.ROOT)
    found = check(pages) + undocumented_metrics(doccheck.ROOT, pages)
    found += undocumented_flags(doccheck.ROOT, pages)
    assert not found, "stale docs (fix the page, or the code):\n" + "\n".join(map(str, found))


def test_a_wrong_flag_name_is_one_line_with_page_line_command_and_the_parsers_error() -> None:
    page = "# Page\n\nStart it:\n\n```sh\npyllmd sim --model m --prot 8000\n```\n"
    assert problems(page) == [f"{PAGE}:6: pyllmd sim --model m --prot 8000: unknown flag: --prot"]


@pytest.mark.parametrize(
    "line",
    [
        "pyllmd sim --model m --no-such-flag",
        "llm-d-inference-sim --model m --no-such-flag",
        ".venv/bin/pyllmd epp --static-endpoints=127.0.0.1:8000 --no-such-flag",
        "python -m pyllmd autoscaler --no-such-flag",
        "pyllmd up --no-such-flag",
        "pyllmd pd-sidecar --no-such-flag",
        "pyllmd dataset --model m --input-file x.jsonl --no-such-flag",
    ],
)
def test_every_command_is_parsed_by_its_own_flags(line: str) -> None:
    assert problems(f"```\n{line}\n```\n") == [f"{PAGE}:2: {line}: unknown flag: --no-such-flag"]


def test_benchmark_command_lines_are_parsed_by_the_benchmarks_parser() -> None:
    assert problems("`python -m bench --only epp`, `python -m bench --help`") == []
    assert problems("`python -m bench --only epp --no-such-flag`") == [
        f"{PAGE}:1: python -m bench --only epp --no-such-flag: "
        "python -m bench: error: unrecognized arguments: --no-such-flag"
    ]


def test_validation_beyond_flag_names_runs_too() -> None:
    page = (
        "`pyllmd epp --static-endpoints=127.0.0.1:8000 --grpc-port 70000`\n\n"
        "`pyllmd up --stack config/local/missing.yaml`\n"
    )
    found = problems(page)
    assert len(found) == 2
    assert found[0].startswith(f"{PAGE}:1: ") and "--grpc-port" in found[0]
    assert found[1].startswith(f"{PAGE}:3: ") and "missing.yaml" in found[1]


def test_continuations_comments_env_prefixes_and_operators() -> None:
    good = (
        "```sh\n"
        "POD_IP=10.0.0.7 pyllmd sim --model m --enable-kvcache \\\n"
        "  --block-size 16 &   # POD_IP is required with --enable-kvcache\n"
        "make test && .venv/bin/pyllmd sim --model m --port 8001 2>&1 | tee log\n"
        "```\n"
    )
    assert problems(good) == []
    without_env = "```sh\npyllmd sim --model m --enable-kvcache\n```\n"
    assert len(problems(without_env)) == 1


def test_output_lines_and_command_names_are_not_command_lines() -> None:
    page = (
        "Errors read `pyllmd epp: error: --grpc-port: invalid port 70000`. Run `pyllmd epp`\n"
        "or `llm-d-inference-sim`, not `pyllmd emulate`.\n"
    )
    assert problems(page) == [f"{PAGE}:2: pyllmd emulate: no such command"]


def test_placeholders_are_skipped_only_when_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    line = "pyllmd sim --model m --zmq-endpoint tcp://<subscriber>:5557"
    page = f"```sh\n{line}\n```\n"
    assert problems(page) == [
        f"{PAGE}:2: {line}: placeholder: give a real value or list it in PLACEHOLDER_SKIPS with why"
    ]
    monkeypatch.setitem(doccheck.PLACEHOLDER_SKIPS, (PAGE, line), "the subscriber is yours")
    assert problems(page) == []


def test_runtime_files_are_stubbed_only_when_listed() -> None:
    assert problems("`pyllmd sim --config sim.yaml --port 8001`") == []
    found = problems("`pyllmd sim --config elsewhere.yaml --port 8001`")
    assert len(found) == 1 and "elsewhere.yaml" in found[0]


def test_make_targets_paths_and_links_must_exist() -> None:
    page = (
        "# Title\n\n"
        "Run `make test` and `make tset`; see `bench/run.py`, `src/pyllmd/nope.py`,\n"
        "`sim/engine/latency.py`, `sim/latent.py`, `tools/acceptance_checks*.json`,\n"
        "`tests/unit/sim/test_latency.py::test_nothing_here`.\n\n"
        "[ok](epp.md#tls), [bad anchor](epp.md#no-such-heading), [gone](nowhere.md),\n"
        "[here](#title), [web](https://example.com/x.md).\n"
    )
    assert problems(page) == [
        f"{PAGE}:3: make tset: no such target",
        f"{PAGE}:3: `src/pyllmd/nope.py`: no such path",
        f"{PAGE}:4: `sim/latent.py`: no such path (under src/pyllmd)",
        f"{PAGE}:5: `tests/unit/sim/test_latency.py::test_nothing_here`: "
        "no test_nothing_here in tests/unit/sim/test_latency.py",
        f"{PAGE}:7: link epp.md#no-such-heading: no heading #no-such-heading",
        f"{PAGE}:7: link nowhere.md: no such file",
    ]


def test_metric_names_must_exist() -> None:
    page = (
        '`vllm:num_requests_waiting`, `wva_desired_replicas{variant_name="a"}`,\n'
        "`vllm:e2e_request_latency_seconds_bucket`, `ghcr.io/pyllmd/pyllmd:0.1.0`,\n"
        "`vllm:num_requests_wating`.\n"
    )
    assert problems(page) == [f"{PAGE}:3: `vllm:num_requests_wating`: no such metric"]


def test_every_declared_metric_is_on_some_page(tmp_path: Path) -> None:
    package = tmp_path / "src" / "pyllmd" / "part"
    package.mkdir(parents=True)
    (package / "metrics.py").write_text(
        'A = "vllm:num_requests_waiting"\nB = ("pyllmd:secret_total", "gauge")\n'
    )
    pages = {"docs/metrics.md": "`vllm:num_requests_waiting` counts the waiting requests.\n"}
    assert [str(p) for p in undocumented_metrics(tmp_path, pages)] == [
        "src/pyllmd/part/metrics.py:2: `pyllmd:secret_total`: metric not documented"
    ]


def test_every_flag_of_a_hand_documented_command_is_on_its_page() -> None:
    page = "docs/user-guide/admin/datasets-and-tokenizers.md"
    text = (doccheck.ROOT / page).read_text(encoding="utf-8")
    assert undocumented_flags(doccheck.ROOT, {page: text}) == []
    gone = text.replace("--max-records", "--max-rows")
    assert [str(p) for p in undocumented_flags(doccheck.ROOT, {page: gone})] == [
        f"{page}:1: pyllmd dataset --max-records: flag not documented on this page"
    ]


def test_github_anchors() -> None:
    assert doccheck.slug("Envoy and the EPP as the gateway") == "envoy-and-the-epp-as-the-gateway"
    assert doccheck.slug("The routing sidecar: `pyllmd pd-sidecar`") == (
        "the-routing-sidecar-pyllmd-pd-sidecar"
    )
    assert doccheck.slug("Endpoint picker (EPP)") == "endpoint-picker-epp"
