"""Digits that `str.isdigit` accepts but `int` refuses (superscripts) are refused in one line.

Hypothesis found `--vllm-port ²` crashing the pd-sidecar with a traceback; the same
check guarded ports and levels in the EPP and the autoscaler.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = [
    (
        ["autoscaler", "--zap-log-level", "²"],
        'pyllmd autoscaler: error: invalid argument "²" for "--zap-log-level" flag: '
        'invalid log level "²"',
    ),
    (
        ["epp", "--static-endpoints", "127.0.0.1:²"],
        'pyllmd epp: error: --static-endpoints: "127.0.0.1:²" is not ip:port[;label=value...]',
    ),
    (["pd-sidecar", "--port", "²"], "pyllmd pd-sidecar: error: --port: invalid port '²'"),
    (["pd-sidecar", "--vllm-port", "²"], "pyllmd pd-sidecar: error: --vllm-port: invalid port '²'"),
]


@pytest.mark.parametrize(("argv", "line"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_a_superscript_digit_is_refused_in_one_line(argv: list[str], line: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pyllmd", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [line]
