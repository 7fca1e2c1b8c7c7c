"""Server processes for the benchmark: start, wait for health, pin, stop.

The servers run in their own processes (and, with two or more cores, on their
own core) so that the load generator never competes with them inside one
interpreter.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Self

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def pin(pid: int, cpu: int) -> None:
    """Pin a process to one core when the machine has more than one."""
    cpus = os.cpu_count() or 1
    if cpus >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(pid, {cpu % cpus})


def pinned(argv: Sequence[str], cpu: int) -> list[str]:
    """``argv`` under ``taskset`` when pinning applies, so threads started before
    `pin` could run (Envoy's workers) are on the core too."""
    cpus = os.cpu_count() or 1
    if cpus >= 2 and shutil.which("taskset") is not None:
        return ["taskset", "-c", str(cpu % cpus), *argv]
    return list(argv)


class Server:
    """A server child process; ``base_url`` is on loopback, pinned to core ``cpu``.

    ``health_path`` is polled on ``port`` until it answers 200.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        *,
        cpu: int = 0,
        health_path: str = "/health",
    ) -> None:
        self.name = name
        self.port = port
        self.health_path = health_path
        self.base_url = f"http://{LOOPBACK}:{port}"
        self._log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log")
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        pin(self.proc.pid, cpu)

    def wait_healthy(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.base_url + self.health_path, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        tail = Path(self._log.name).read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"{self.name} did not become healthy:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> Self:
        self.wait_healthy()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stat_cpu_ticks(stat: str) -> int:
    """utime + stime (clock ticks, all threads) from the text of ``/proc/<pid>/stat``."""
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far; NaN where ``/proc`` is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    return stat_cpu_ticks(stat) / os.sysconf("SC_CLK_TCK")
