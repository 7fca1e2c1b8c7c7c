"""Harness for end-to-end tests: real processes on loopback.

Every e2e test starts what it needs through the fixtures of conftest.py, built
on the classes here, so that all of them pick free ports, wait boundedly for
readiness, show the process output when something goes wrong, and never leave
a process behind.

Fixtures (tests/e2e/conftest.py):
  * ``start_sim(*args, env=None)`` -> :class:`SimProcess` (started and healthy).
    Runs ``python -m pyllmd sim --port <free> *args``; stopped at test end, or
    earlier when used as a context manager.
  * ``run_sim`` -> runs ``pyllmd sim *args`` expecting it to exit (startup errors).
  * ``prometheus(targets, scrape_interval="1s", tls=False, target_labels=None)``
    -> :class:`PrometheusServer` scraping ``targets`` ("127.0.0.1:PORT" strings),
    with ``query`` and ``wait_for`` helpers. ``tls=True`` serves the API over
    https with a self-signed certificate (``ca_file``); ``target_labels`` maps a
    target to labels attached to its series (as Kubernetes discovery would add
    ``namespace`` and ``pod``).

Prometheus is Debian's ``prometheus`` binary (``make test-e2e-smoke`` installs
it); ``PROMETHEUS_BIN`` overrides the path. HTTP calls use the standard library
so the harness adds no dependency.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import pytest

LOOPBACK = "127.0.0.1"
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
Sample = dict[str, Any]


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def two_free_ports() -> int:
    """A port p such that p and p + 1 were both free a moment ago (data-parallel ranks)."""
    for _ in range(50):
        base = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base
    raise AssertionError("no two consecutive free ports")


def http_get(
    url: str, timeout: float = 2.0, context: ssl.SSLContext | None = None
) -> tuple[int, bytes]:
    """GET returning (status, body); HTTP error statuses are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class ManagedProcess:
    """A child process in its own session, with its output in a temp file.

    Output goes to a file rather than a pipe so a chatty process can never block
    on a full pipe; the own session lets ``stop`` end any children it spawned.
    """

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None) -> None:
        self.name = name
        self.argv = list(argv)
        self._log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )

    @property
    def output(self) -> str:
        """Everything the process printed so far (stdout and stderr)."""
        if not self._log.closed:  # stop() closes it; the file stays readable
            self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def describe(self, tail: int = 60) -> str:
        """The command, exit status and last lines of output, for failure messages."""
        lines = self.output.splitlines()[-tail:]
        status = self.proc.poll()
        return (
            f"{self.name}: {' '.join(self.argv)}\n"
            f"exit status: {'running' if status is None else status}\n"
            + "\n".join(f"  | {line}" for line in lines)
        )

    def wait_until(self, probe: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``probe`` until true; fail with the process output on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited before {what}\n{self.describe()}")
            try:
                if probe():
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{self.name} not {what} after {timeout} s\n{self.describe()}")
            time.sleep(0.05)

    def stop(self) -> int | None:
        """SIGTERM the process group, SIGKILL after a bounded wait; idempotent."""
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT)
        self._log.close()
        return self.proc.returncode

    def _signal(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port_from_args(args: Sequence[str]) -> int | None:
    for i, arg in enumerate(args):
        if arg == "--port" and i + 1 < len(args):
            return int(args[i + 1])
        if arg.startswith("--port="):
            return int(arg.split("=", 1)[1])
    return None


class SimProcess(ManagedProcess):
    """A running simulator; contact it only through ``base_url`` (loopback)."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        given = _port_from_args(args)
        self.port = given if given is not None else free_port()
        port_args = [] if given is not None else ["--port", str(self.port)]
        host_args = [] if any(a.startswith("--host") for a in args) else ["--host", LOOPBACK]
        argv = [sys.executable, "-m", "pyllmd", "sim", *host_args, *port_args, *args]
        super().__init__("pyllmd-sim", argv, env)
        self.base_url = f"http://{LOOPBACK}:{self.port}"

    def wait_healthy(self, timeout: float = READY_TIMEOUT) -> None:
        """Block until ``GET /health`` answers 200."""
        self.wait_until(lambda: http_get(f"{self.base_url}/health")[0] == 200, timeout, "healthy")

    def metrics(self) -> str:
        """The current ``/metrics`` text."""
        status, body = http_get(f"{self.base_url}/metrics")
        assert status == 200, f"/metrics answered {status}"
        return body.decode()


class PrometheusServer(ManagedProcess):
    """Debian's prometheus scraping fixed targets, with a temp TSDB; optionally over https."""

    def __init__(
        self,
        binary: str,
        targets: Sequence[str],
        scrape_interval: str,
        tls: bool = False,
        target_labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="prom-"))
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://{LOOPBACK}:{self.port}"
        self.ca_file: Path | None = None
        self._context: ssl.SSLContext | None = None
        static: list[dict[str, Any]] = [{"targets": list(targets)}]
        if target_labels:
            static = [{"targets": [t], "labels": dict(target_labels.get(t, {}))} for t in targets]
        config = {  # JSON is valid YAML, so no YAML writer is needed
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [{"job_name": "e2e", "static_configs": static}],
        }
        config_file = self.workdir / "prometheus.yml"
        config_file.write_text(json.dumps(config, indent=2))
        argv = [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
        ]
        if tls:
            argv.append(f"--web.config.file={self._write_tls_config()}")
        super().__init__("prometheus", argv, None)

    def _write_tls_config(self) -> Path:
        from tests.tlsutil import write_self_signed

        cert, key = write_self_signed(self.workdir)
        self.ca_file = cert
        self._context = ssl.create_default_context(cafile=str(cert))
        web = {"tls_server_config": {"cert_file": str(cert), "key_file": str(key)}}
        web_file = self.workdir / "web.yml"
        web_file.write_text(json.dumps(web))
        return web_file

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Block until ``/-/ready`` answers 200."""
        ready = f"{self.url}/-/ready"
        self.wait_until(lambda: http_get(ready, context=self._context)[0] == 200, timeout, "ready")

    def query(self, promql: str) -> list[Sample]:
        """Instant query; returns the ``result`` list (vector samples)."""
        qs = urllib.parse.urlencode({"query": promql})
        url = f"{self.url}/api/v1/query?{qs}"
        status, body = http_get(url, timeout=5.0, context=self._context)
        reply = json.loads(body)
        if status != 200 or reply.get("status") != "success":
            raise AssertionError(f"query {promql!r} failed ({status}): {body[:500]!r}")
        result: list[Sample] = reply["data"]["result"]
        return result

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[list[Sample]], bool] = bool,
        timeout: float = 20.0,
    ) -> list[Sample]:
        """Poll ``query`` until ``predicate(result)`` holds; fail with the last result.

        The first scrape is queryable only several seconds after start, so tests
        poll here instead of sleeping.
        """
        deadline = time.monotonic() + timeout
        result: list[Sample] = []
        while time.monotonic() < deadline:
            result = self.query(promql)
            if predicate(result):
                return result
            time.sleep(0.25)
        raise AssertionError(
            f"{promql!r} did not satisfy the condition within {timeout} s; last: {result}"
        )

    def stop(self) -> int | None:
        code = super().stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return code


def sample_value(sample: Sample) -> float:
    """The float value of one instant-vector sample."""
    return float(sample["value"][1])


def prometheus_binary() -> str:
    """Path of the prometheus binary; fails (never skips) when it is missing."""
    found = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")
    if not found:
        pytest.fail(
            "prometheus binary not found: run the e2e tests through `make test-e2e-smoke` "
            "(it installs Debian's prometheus) or set PROMETHEUS_BIN"
        )
    return found


@contextlib.contextmanager
def backfilled_prometheus(workdir: Path, openmetrics: str) -> Iterator[str]:
    """A Prometheus (its URL) serving only the samples of `openmetrics` (text ending in
    `# EOF`), turned into TSDB blocks by `promtool tsdb create-blocks-from openmetrics`.

    Queries must name a `time`: the samples are wherever their timestamps put them (keep them
    within the TSDB retention, e.g. a few hours ago)."""
    source = workdir / "samples.om"
    source.write_text(openmetrics, encoding="utf-8")
    promtool = shutil.which("promtool") or str(Path(prometheus_binary()).with_name("promtool"))
    data = workdir / "data"
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    config = workdir / "prometheus.yml"
    config.write_text("global: {}\n", encoding="utf-8")
    port = free_port()
    argv = [
        prometheus_binary(),
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    url = f"http://127.0.0.1:{port}"
    with ManagedProcess("prometheus", argv, None) as prom:
        prom.wait_until(lambda: http_get(f"{url}/-/ready")[0] == 200, 60, "ready")
        yield url
