"""Bad flag values of `pyllmd sim`, `llm-d-inference-sim` and `pyllmd dataset` as real
processes: one line on stderr naming the flag, exit 1, never a traceback.

The property-based tests over every flag run in-process (tests/unit/sim/test_flag_values.py);
these check what a shell user sees, under both program names.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import LOOPBACK, free_port

pytestmark = pytest.mark.e2e

PYLLMD_SIM = (sys.executable, "-m", "pyllmd", "sim")
GO_NAME = (str(Path(sys.executable).with_name("llm-d-inference-sim")),)


def run(argv: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*argv, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("--port", "99999"), "--port: invalid port '99999'"),
        (
            ("--port", "65535", "--data-parallel-size", "2"),
            "--data-parallel-size: invalid port '65536' (rank 1 listens on --port + 1)",
        ),
        (
            ("--enable-kvcache", "--zmq-endpoint", "tcp://localhost:0"),
            "--zmq-endpoint: invalid port '0' in 'tcp://localhost:0'",
        ),
        (("--time-factor-under-load", "NaN"), "--time-factor-under-load: must be a finite"),
        (("--mode", "a\nb"), "--mode: invalid mode 'a\\nb', valid values are 'random' and 'echo'"),
        (("--max-num-seqs", "1e3"), 'invalid argument "1e3" for "--max-num-seqs" flag:'),
    ],
)
@pytest.mark.parametrize("prog", ["pyllmd sim", "llm-d-inference-sim"])
def test_bad_value_is_one_line_naming_the_flag(prog: str, args: tuple[str, ...], line: str) -> None:
    argv = PYLLMD_SIM if prog == "pyllmd sim" else GO_NAME
    result = run(argv, "--model", "m", *args)
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    assert result.stderr.startswith(f"{prog}: error: {line}"), result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("prog", ["pyllmd sim", "llm-d-inference-sim"])
def test_help_names_the_program_as_invoked(prog: str) -> None:
    result = run(PYLLMD_SIM if prog == "pyllmd sim" else GO_NAME, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"Usage of {prog}:\n")
    assert "--port int" in result.stdout


def test_listen_failures_name_the_flag_without_a_traceback() -> None:
    with socket.create_server((LOOPBACK, 0)) as taken:
        port = taken.getsockname()[1]
        busy = run(PYLLMD_SIM, "--model", "m", "--host", LOOPBACK, "--port", str(port))
    ipv6 = run(PYLLMD_SIM, "--model", "m", "--host", "::1", "--port", str(free_port()))
    for result, start in (
        (busy, f"pyllmd sim: error: --port: cannot listen on {LOOPBACK}:{port}: "),
        (ipv6, "pyllmd sim: error: --host: cannot listen on '::1': "),
    ):
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert result.stderr.splitlines()[-1].startswith(start), result.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("--max-records", "99999999999999999999"),
            'invalid argument "99999999999999999999" for "--max-records" flag:',
        ),
        (("--table-name", "sqlite_x"), "--table-name: cannot create table 'sqlite_x':"),
        (("--output-file", "x" * 300), "--output-file: "),
    ],
)
def test_dataset_tool_bad_value_is_one_line(
    tmp_path: Path, args: tuple[str, ...], line: str
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}\n'
    )
    result = run(
        (sys.executable, "-m", "pyllmd", "dataset"),
        "--model", "m", "--input-file", str(source), "--output-path", str(tmp_path / "out"), *args,
    )  # fmt: skip
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"pyllmd dataset: error: {line}"), result.stderr
