"""`pyllmd epp` and `pyllmd pd-sidecar` as processes: a bad flag value is one line, exit 1.

The property tests (tests/unit/epp/test_options_flags.py,
tests/unit/stack/test_pdsidecar_flags.py) cover every flag in-process; these
run the real command for the kinds of failure, including those only start-up
sees (a port in use, a certificate directory, a kubeconfig that is not one).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import LOOPBACK

pytestmark = pytest.mark.e2e

EPP = ["epp", "--static-endpoints=127.0.0.1:8000", "--metrics-endpoint-auth=false",
       f"--bind-address={LOOPBACK}", "--grpc-port=0", "--grpc-health-port=0",
       "--metrics-port=0", "--secure-serving=false"]  # fmt: skip
SIDECAR = ["pd-sidecar", f"--bind-address={LOOPBACK}", "--secure-proxy=false"]


def run(*argv: str) -> tuple[int, list[str]]:
    """Run `python -m pyllmd *argv` to its exit: (status, stderr lines)."""
    done = subprocess.run(
        [sys.executable, "-m", "pyllmd", *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
        check=False,
    )
    return done.returncode, done.stderr.splitlines()


def refused(*argv: str) -> str:
    """The one stderr line of a command that must exit 1 at start-up."""
    code, lines = run(*argv)
    assert code == 1, lines
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another socket listens on for the test's duration."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("flag", "line"),
    [
        ("--grpc-port=70000", "--grpc-port: invalid port 70000 (0 to 65535; 0 picks a free port)"),
        (
            "--refresh-metrics-interval=0s",
            "--refresh-metrics-interval: must be positive, got 0s",
        ),
        (
            "--metrics-staleness-threshold=2",
            'invalid argument "2" for "--metrics-staleness-threshold" flag: '
            'time: missing unit in duration "2"',
        ),
        (
            "--pool-group=example.com",
            '--pool-group: unknown InferencePool group "example.com" '
            "(use inference.networking.k8s.io or inference.networking.x-k8s.io for v1alpha2)",
        ),
        (
            "--zap-time-encoding=unix",
            'invalid argument "unix" for "--zap-time-encoding" flag: '
            'invalid time-encoding value "unix"',
        ),
        (
            "--bind-address=not a host",
            "--bind-address: 'not a host' is not an IP address or host name",
        ),
    ],
)
def test_epp_bad_flag_value_is_one_line(flag: str, line: str) -> None:
    assert refused(*EPP, flag) == f"pyllmd epp: error: {line}"


def test_epp_failures_seen_at_start_up_are_one_line(busy_port: int, tmp_path: Path) -> None:
    line = refused(*EPP, f"--metrics-port={busy_port}")
    assert line == (
        f"pyllmd epp: error: --metrics-port: cannot listen on {LOOPBACK}:{busy_port}: "
        "address already in use"
    )
    line = refused(*EPP, f"--grpc-port={busy_port}")  # grpc would have shared it
    assert line.startswith("pyllmd epp: error: --grpc-port: cannot listen on")
    line = refused(*EPP, "--secure-serving=true", f"--cert-path={tmp_path}")
    assert (
        line
        == f"pyllmd epp: error: --cert-path: open {tmp_path}/tls.crt: no such file or directory"
    )
    not_a_kubeconfig = tmp_path / "kubeconfig"
    not_a_kubeconfig.write_text("just text\n")
    line = refused("epp", "--pool-name=p", f"--kubeconfig={not_a_kubeconfig}")
    assert line.startswith("pyllmd epp: error: unable to get kubeconfig: not a kubeconfig file")


def test_epp_without_a_pool_names_the_kubernetes_free_flags() -> None:
    assert refused("epp") == (
        "pyllmd epp: error: either pool-name or endpoint-selector must be set "
        "(or, without Kubernetes, --static-endpoints or --endpoints-file)"
    )


def test_epp_help_says_which_flags_have_no_effect() -> None:
    code, _ = run("epp", "--help")
    assert code == 0
    out = subprocess.run(
        [sys.executable, "-m", "pyllmd", "epp", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    ).stdout  # fmt: skip
    pprof = next(line for line in out.splitlines() if "--enable-pprof" in line)
    assert "Accepted for compatibility; no effect" in pprof and "(default true)" in pprof


@pytest.mark.parametrize(
    ("flag", "line"),
    [
        ("--port=70000", "--port: invalid port '70000'"),
        ("--connector=mooncake", "--connector must be one of: nixlv2, shared-storage, sglang"),
        (
            "-zap-encoder=xml",
            'invalid argument "xml" for "--zap-encoder" flag: invalid encoder value "xml"',
        ),
        (
            "--data-parallel-size=60000",
            "--data-parallel-size: 60000 ranks need --port 8000 to 67999, beyond port 65535",
        ),
    ],
)
def test_sidecar_bad_flag_value_is_one_line(flag: str, line: str) -> None:
    assert refused(*SIDECAR, flag) == f"pyllmd pd-sidecar: error: {line}"


def test_sidecar_failures_seen_at_start_up_are_one_line(busy_port: int, tmp_path: Path) -> None:
    line = refused(*SIDECAR, f"--port={busy_port}")
    assert line == (
        f"pyllmd pd-sidecar: error: --port: cannot listen on {LOOPBACK}:{busy_port}: "
        "address already in use"
    )
    line = refused("pd-sidecar", f"--bind-address={LOOPBACK}", f"--cert-path={tmp_path}")
    assert line == (
        f"pyllmd pd-sidecar: error: --cert-path: open {tmp_path}/tls.crt: no such file or directory"
    )
