"""`pyllmd simulate --sweep`: the sweep file, the grid, path edits, the Pareto front, the
tables of a real (tiny) sweep and one error line for every bad sweep file."""

from __future__ import annotations

import csv
import json
import socket
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from pyllmd.cli import main as cli_main
from pyllmd.core.errors import ConfigError
from pyllmd.simulate import sweep as sw

HERE = Path(__file__).parent / "workloads"
STACK = HERE / "stack.yaml"
DEFAULT_STACK = Path(sw.__file__).parents[1] / "stack" / "stack.yaml"
TINY_WORKLOAD = {
    "api": {"type": "completion", "streaming": True},
    "data": {
        "type": "random",
        "input_distribution": {"min": 50, "max": 200, "mean": 100, "std_dev": 40},
        "output_distribution": {"min": 5, "max": 30, "mean": 15, "std_dev": 5},
    },
    "server": {"type": "vllm", "ignore_eos": True},
    "load": {"type": "poisson", "stages": [{"rate": 8, "duration": 2}]},
}


def no_files(name: str) -> str:
    raise FileNotFoundError(2, "No such file or directory")


def parsed(parameters: list[Any], read: Any = no_files) -> sw.Sweep:
    return sw.parse_sweep(
        {"stack": "s.yaml", "workload": "w.yaml", "parameters": parameters}, "--sweep S", read
    )


def edited(doc: dict[str, Any], parameters: list[Any]) -> dict[str, Any]:
    sweep = parsed(parameters)
    (point,) = sw.expand(sweep)
    return sw.edit_documents({"stack": doc, "workload": {}}, point, sweep.parameters, "--sweep S")[
        "stack"
    ]


def test_the_grid_is_the_product_in_parameter_order_with_labelled_point_names() -> None:
    sweep = parsed(
        [
            {"name": "r", "path": "stack.variants[0].deployment.replicas", "values": [1, 2]},
            {"name": "epp", "path": "stack.eppConfig", "files": ["cfg/epp-a.yaml", "epp b.yaml"]},
            {
                "name": "mix",
                "values": [{"label": "small", "set": {"workload.load.type": "poisson"}}],
            },
        ],
        read=lambda name: f"text of {name}",
    )
    points = sw.expand(sweep)
    assert [p.name for p in points] == [
        "000-1-epp-a-small",
        "001-1-epp_b-small",
        "002-2-epp-a-small",
        "003-2-epp_b-small",
    ]
    assert points[1].labels(sweep.parameters) == {"r": "1", "epp": "epp b", "mix": "small"}
    assert points[1].choices[1].edits[0].value == "text of epp b.yaml"  # the file's text


def test_paths_select_by_index_and_by_name_and_create_the_last_key() -> None:
    stack = yaml.safe_load(DEFAULT_STACK.read_text(encoding="utf-8"))
    out = edited(
        stack,
        [
            {
                "name": "mix",
                "values": [
                    {
                        "label": "x",
                        "set": {
                            "stack.variants[name=sim-h100].deployment.replicas": 4,
                            "stack.variants[0].deployment.replicas": 3,
                            "stack.gateway": "envoy-epp",
                        },
                    }
                ],
            }
        ],
    )
    assert [v["deployment"]["replicas"] for v in out["variants"]] == [3, 4]
    assert out["gateway"] == "envoy-epp"
    assert [v["deployment"]["replicas"] for v in stack["variants"]] == [1, 1]  # base untouched


def test_a_path_through_a_string_edits_the_yaml_inside_it() -> None:
    stack = yaml.safe_load(DEFAULT_STACK.read_text(encoding="utf-8"))
    path = "stack.configMaps[name=wva-saturation-scaling-config].data.default.kvCacheThreshold"
    out = edited(stack, [{"name": "kv", "path": path, "values": [0.7]}])
    text = out["configMaps"][0]["data"]["default"]
    assert isinstance(text, str)
    assert yaml.safe_load(text) == {
        "kvCacheThreshold": 0.7,
        "queueLengthThreshold": 5,
        "kvSpareTrigger": 0.1,
        "queueSpareTrigger": 3,
    }


def test_null_removes_a_list_item_or_a_key_and_quoted_keys_may_hold_dots() -> None:
    doc = {
        "variants": [{"deployment": {"name": "a"}}, {"deployment": {"name": "b"}}],
        "data": {"config.yaml": "x: 1\n", "keep": 1},
    }
    out = edited(
        doc,
        [
            {
                "name": "m",
                "values": [
                    {
                        "label": "x",
                        "set": {
                            "stack.variants[name=a]": None,
                            "stack.data.keep": None,
                            'stack.data["config.yaml"].x': 2,
                        },
                    }
                ],
            }
        ],
    )
    assert out == {"variants": [{"deployment": {"name": "b"}}], "data": {"config.yaml": "x: 2\n"}}


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        (
            "stack.variants[name=nope].deployment.replicas",
            "path stack.variants[name=nope].deployment.replicas: stack.variants[name=nope]: "
            "selects nothing (name, metadata.name or deployment.name)",
        ),
        (
            "stack.variants[5].deployment.replicas",
            "path stack.variants[5].deployment.replicas: stack.variants[5]: selects nothing "
            "(the list has 1 items)",
        ),
        (
            "stack.variants[0].nothere.replicas",
            "path stack.variants[0].nothere.replicas: stack.variants[0].nothere: selects nothing "
            "(no key 'nothere')",
        ),
        (
            "stack.variants.name",
            "path stack.variants.name: stack.variants.name: stack.variants is not a map",
        ),
        (
            "stack.variants[0].deployment.name.x",
            "path stack.variants[0].deployment.name.x: stack.variants[0].deployment.name is a "
            "string, not YAML holding a map or a list",
        ),
    ],
)
def test_a_path_that_selects_nothing_names_the_parameter_and_the_rule(path: str, rule: str) -> None:
    doc = yaml.safe_load(STACK.read_text(encoding="utf-8"))
    with pytest.raises(ConfigError) as e:
        edited(doc, [{"name": "p", "path": path, "values": [1]}])
    assert str(e.value) == f"--sweep S: parameters[0] (p): value '1': {rule}"


def test_the_pareto_front_is_every_point_no_other_beats() -> None:
    points: list[tuple[float, float] | None] = [
        (10.0, 0.5),  # cheapest
        (12.0, 0.5),  # as good as the cheapest, dearer: dominated
        (20.0, 0.9),
        (20.0, 0.9),  # a tie is on the front twice
        (30.0, 0.8),  # dearer and worse than (20, 0.9)
        None,  # failed
        (40.0, 1.0),
    ]
    assert sw.pareto(points) == [True, False, True, True, False, False, True]


# --- through the command line -------------------------------------------------------------


def write_sweep(tmp: Path, parameters: list[Any], **extra: Any) -> Path:
    (tmp / "workload.yaml").write_text(yaml.safe_dump(TINY_WORKLOAD), encoding="utf-8")
    doc = {"stack": str(STACK), "workload": "workload.yaml", "parameters": parameters, **extra}
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def sweep_rows(out: Path) -> list[dict[str, str]]:
    with (out / "sweep.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


REPLICAS = {"name": "replicas", "path": "stack.variants[0].deployment.replicas"}


def test_a_sweep_writes_one_row_per_point_and_a_failing_point_is_a_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = write_sweep(tmp_path, [{**REPLICAS, "values": [1, 2, 0]}])
    out = tmp_path / "out"
    argv = ["simulate", "--sweep", str(sweep), "--output", str(out), "--parallelism", "1"]
    assert cli_main([*argv, "--slo-ttft", "1s", "--seed", "4"]) == 0
    assert "swept 3 points (1 failed)" in capsys.readouterr().out
    rows = sweep_rows(out)
    assert [(r["point"], r["replicas"]) for r in rows] == [
        ("000-1", "1"),
        ("001-2", "2"),
        ("002-0", "0"),
    ]
    one, two, bad = rows
    assert one["error"] == two["error"] == ""
    assert int(one["requests"]) > 0 and one["successes"] == one["requests"]
    assert float(one["slo_attainment"]) == float(two["slo_attainment"]) == 1.0
    assert float(two["cost"]) > float(one["cost"])  # two replicas cost more
    assert (one["pareto"], two["pareto"], bad["pareto"]) == ("true", "false", "false")
    assert bad["error"] == (
        "--stack points/002-0/stack.yaml: variants[0]: deployment.replicas must be an integer >= 1"
    )
    # each point's documents and reports, to re-run it alone with plain `pyllmd simulate`
    point = out / "points" / "001-2"
    assert (
        yaml.safe_load((point / "stack.yaml").read_text())["variants"][0]["deployment"]["replicas"]
        == 2
    )
    slo = json.loads((point / "slo_and_cost.json").read_text())
    assert slo["cost"]["total"] == float(two["cost"])
    doc = json.loads((out / "sweep.json").read_text())
    assert [p["pareto"] for p in doc["points"]] == [True, False, False]
    md = (out / "sweep.md").read_text()
    assert "| 002-0 | 0 |" in md and "- 000-1: " in md
    assert (out / "pareto.png").read_bytes().startswith(b"\x89PNG")


def test_a_sweep_run_twice_gives_identical_tables(tmp_path: Path) -> None:
    sweep = write_sweep(
        tmp_path,
        [
            {**REPLICAS, "values": [1, 2]},
            {"name": "rate", "path": "workload.load.stages[0].rate", "values": [4, 8]},
        ],
    )
    for name in ("a", "b"):
        argv = ["simulate", "--sweep", str(sweep), "--output", str(tmp_path / name)]
        assert cli_main([*argv, "--parallelism", "1", "--seed", "9"]) == 0
    for name in ("sweep.csv", "sweep.md", "sweep.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert len(sweep_rows(tmp_path / "a")) == 4


def error_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert cli_main(["simulate", *argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("pyllmd simulate: error: ")
    return err.strip().removeprefix("pyllmd simulate: error: ")


P = "parameters[0] (p)"
R = "parameters[0] (replicas)"
BAD_SWEEPS: list[tuple[list[Any], dict[str, Any], str]] = [
    ([], {}, "parameters: declare at least one parameter (a list)"),
    (
        [{**REPLICAS, "values": [1]}],
        {"grid": 1},
        "unknown key 'grid' (known: stack, workload, parameters)",
    ),
    (
        [{"path": "stack.x", "values": [1]}],
        {},
        "parameters[0]: name: required, letters, digits, `_`, `.` or `-`",
    ),
    (
        [{**REPLICAS, "value": [1]}],
        {},
        f"{R}: unknown key 'value' (known: name, path, values, files)",
    ),
    ([{**REPLICAS, "values": [1], "files": ["a"]}], {}, f"{R}: give either values or files"),
    ([{**REPLICAS, "values": []}], {}, f"{R}: values: must be a non-empty list"),
    (
        [{**REPLICAS, "values": [1, "1"]}],
        {},
        f"{R}: two values have the label '1'; labels must differ",
    ),
    (
        [{**REPLICAS, "files": ["none.yaml"]}],
        {},
        f"{R}: files[0] none.yaml: No such file or directory",
    ),
    (
        [{"name": "p", "path": "deployment.replicas", "values": [1]}],
        {},
        f"{P}: path 'deployment.replicas': must start with `stack` or `workload`",
    ),
    (
        [{"name": "p", "path": "stack.variants[-1]", "values": [1]}],
        {},
        f"{P}: path 'stack.variants[-1]': expected `.key`, `[\"key\"]`, `[N]` or `[name=X]` "
        "at '[-1]'",
    ),
    (
        [{"name": "p", "values": [{"set": {"stack.x": 1}}]}],
        {},
        f"{P}: values[0]: without a path, each value is a map of label and set "
        "({PATH: VALUE, ...})",
    ),
    (
        [{**REPLICAS, "values": [1]}, {**REPLICAS, "values": [2]}],
        {},
        "parameters[1] (replicas): a parameter of that name exists",
    ),
    (
        [{"name": "p", "path": "stack.variants[name=x].deployment.replicas", "values": [1]}],
        {},
        f"{P}: value '1': path stack.variants[name=x].deployment.replicas: "
        "stack.variants[name=x]: selects nothing (name, metadata.name or deployment.name)",
    ),
]


@pytest.mark.parametrize(("parameters", "extra", "message"), BAD_SWEEPS)
def test_a_bad_sweep_file_is_one_line_naming_it_before_any_point_runs(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    parameters: list[Any],
    extra: dict[str, Any],
    message: str,
) -> None:
    sweep = write_sweep(tmp_path, parameters, **extra)
    out = tmp_path / "out"
    assert (
        error_of(capsys, "--sweep", str(sweep), "--output", str(out))
        == f"--sweep {sweep}: {message}"
    )
    assert not (out / "points").exists()


def test_sweep_flags_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = write_sweep(tmp_path, [{**REPLICAS, "values": [1]}])
    out = str(tmp_path / "out")
    stack = ("--stack", str(STACK), "--workload", str(HERE / "random_poisson.yaml"))
    assert error_of(capsys, *stack, "--output", out, "--parallelism", "2") == (
        "--parallelism: needs --sweep"
    )
    assert error_of(capsys, *stack, "--output", out, "--ray-address", "127.0.0.1:1") == (
        "--ray-address: needs --sweep"
    )
    assert error_of(capsys, "--sweep", str(sweep), "--output", out, "--parallelism", "-1") == (
        "--parallelism: must be 0 (the CPU count) or more, got -1"
    )
    assert error_of(capsys, "--sweep", str(sweep)) == "--output: required"
    assert error_of(capsys, "--output", out) == "--stack: required"
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump({"parameters": [{**REPLICAS, "values": [1]}]}))
    assert error_of(capsys, "--sweep", str(bare), "--output", out) == (
        f"--sweep {bare}: stack: required (or give --stack)"
    )


def test_ray_address_without_the_extra_says_how_to_install_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if pyllmd[ray] were not installed
    sweep = write_sweep(tmp_path, [{**REPLICAS, "values": [1]}])
    out = tmp_path / "out"
    argv = ("--sweep", str(sweep), "--output", str(out), "--ray-address", "127.0.0.1:6379")
    assert error_of(capsys, *argv) == (
        "--ray-address: Ray is not installed: pip install 'pyllmd[ray]'"
    )
    assert not out.exists()


def test_a_ray_address_that_does_not_answer_is_one_line_before_any_point_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))  # installed or not
    sweep = write_sweep(tmp_path, [{**REPLICAS, "values": [1]}])
    out = tmp_path / "out"
    with socket.socket() as sock:  # a port nobody listens on: bound, not listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        argv = ("--sweep", str(sweep), "--output", str(out), "--ray-address", f"127.0.0.1:{port}")
        assert error_of(capsys, *argv) == (
            f"--ray-address 127.0.0.1:{port}: cannot connect: Connection refused"
        )
    argv = ("--sweep", str(sweep), "--output", str(out), "--ray-address", "head-node")
    assert error_of(capsys, *argv) == (
        "--ray-address head-node: expected HOST:PORT, ray://HOST:PORT or auto"
    )
    assert not out.exists()


def test_a_point_that_hits_a_defect_is_a_row_saying_so_and_the_sweep_goes_on(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pyllmd.simulate import sweep_run

    real = sweep_run.simulate

    def flaky(config: Any, stream: Any = None) -> Any:
        if "001-2" in config.output:
            raise ZeroDivisionError("division by zero")
        return real(config, stream)

    monkeypatch.setattr(sweep_run, "simulate", flaky)
    sweep = write_sweep(tmp_path, [{**REPLICAS, "values": [1, 2]}])
    out = tmp_path / "out"
    argv = ["simulate", "--sweep", str(sweep), "--output", str(out), "--parallelism", "1"]
    assert cli_main(argv) == 0
    printed = capsys.readouterr()
    assert "swept 2 points (1 failed)" in printed.out
    ok, bad = sweep_rows(out)
    assert ok["error"] == "" and int(ok["successes"]) > 0
    assert bad["error"] == "internal error: ZeroDivisionError: division by zero"
    # the log keeps the traceback, to report the defect
    assert "failed" in printed.err and "ZeroDivisionError" in printed.err
