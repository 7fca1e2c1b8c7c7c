"""`pyllmd autoscaler` as a process: a bad flag value is one line on stderr and exit status 1."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("flag", "value", "key"),
    [
        ("--metrics-bind-address", ":99999", "METRICS_BIND_ADDRESS"),
        ("--health-probe-bind-address", ":99999", "HEALTH_PROBE_BIND_ADDRESS"),
        ("--health-probe-bind-address", "[::1:8081", "HEALTH_PROBE_BIND_ADDRESS"),
        ("--rest-client-timeout", "\n", "--rest-client-timeout"),
    ],
)
def test_bad_flag_value_is_one_line_and_exit_1(flag: str, value: str, key: str) -> None:
    env = {**os.environ, "PROMETHEUS_BASE_URL": "https://127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "-m", "pyllmd", "autoscaler", flag, value],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done
    assert done.stdout == ""
    assert done.stderr.startswith("pyllmd autoscaler: error: ") and key in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
