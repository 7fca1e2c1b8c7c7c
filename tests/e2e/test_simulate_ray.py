"""`pyllmd simulate --sweep --ray-address`: the points as tasks on a local Ray instance give the
rows the local process pool gives. Needs the `pyllmd[ray]` extra: `make test-ray` installs it
and runs this file (marker `ray`, left out of `make test-e2e-smoke` and `make test-e2e-full`)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.harness import LOOPBACK, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.ray]

WORKLOADS = Path(__file__).parents[1] / "unit" / "simulate" / "workloads"
START_TIMEOUT = 120.0
# Ray replaces a loopback --node-ip-address by the host's address unless it believes it runs a
# single-machine cluster (its setting for macOS and Windows); with it, every Ray server listens
# on 127.0.0.1 only and the driver finds the node there.
RAY_ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@pytest.fixture
def ray_address(tmp_path: Path) -> Iterator[str]:
    """A one-CPU Ray head on loopback, stopped (its whole process group) at the end."""
    port = free_port()
    log = tmp_path / "ray-start.log"
    ray = Path(sys.executable).parent / "ray"
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            [str(ray), "start", "--head", "--node-ip-address", LOOPBACK, "--port", str(port),
             "--ray-client-server-port", str(free_port()), "--num-cpus", "1",
             "--include-dashboard=false", "--disable-usage-stats", "--block"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=RAY_ENV,
            start_new_session=True,  # its own process group: stopped by its id below
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "Ray runtime started" not in log.read_text(encoding="utf-8"):
            assert proc.poll() is None, log.read_text(encoding="utf-8")
            assert time.monotonic() < deadline, log.read_text(encoding="utf-8")
            time.sleep(0.5)
        yield f"{LOOPBACK}:{port}"
    finally:
        # the head's process group, by its id (GCS and the monitor ignore SIGTERM: then SIGKILL)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def sweep(tmp: Path, *flags: str) -> bytes:
    workload = yaml.safe_load((WORKLOADS / "random_poisson.yaml").read_text(encoding="utf-8"))
    workload["load"]["stages"] = [{"rate": 6, "duration": 2}]
    (tmp / "workload.yaml").write_text(yaml.safe_dump(workload), encoding="utf-8")
    doc = {
        "stack": str(WORKLOADS / "stack.yaml"),
        "workload": "workload.yaml",
        "parameters": [
            {"name": "replicas", "path": "stack.variants[0].deployment.replicas", "values": [1, 2]}
        ],
    }
    (tmp / "sweep.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    out = tmp / "out"
    done = subprocess.run(
        [sys.executable, "-m", "pyllmd", "simulate", "--sweep", str(tmp / "sweep.yaml"),
         "--output", str(out), "--seed", "2", "--slo-ttft", "50ms", *flags],
        capture_output=True,
        text=True,
        timeout=600,
        env=RAY_ENV,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "swept 2 points (0 failed)" in done.stdout
    return (out / "sweep.csv").read_bytes()


def test_a_sweep_on_ray_gives_the_rows_of_the_process_pool(
    tmp_path: Path, ray_address: str
) -> None:
    (tmp_path / "ray").mkdir()
    (tmp_path / "pool").mkdir()
    on_ray = sweep(tmp_path / "ray", "--ray-address", ray_address)
    on_pool = sweep(tmp_path / "pool", "--parallelism", "2")
    assert on_ray == on_pool
    assert on_ray.count(b"\n") == 3  # the header and two points
