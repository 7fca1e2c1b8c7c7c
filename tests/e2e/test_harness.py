"""Self-test of the e2e harness: processes stop, Prometheus scrapes and answers.

The scrape target here is a tiny in-test HTTP server in the classic text
format, so these checks hold whatever state the simulator is in.
"""

from __future__ import annotations

import http.server
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.harness import (
    LOOPBACK,
    ManagedProcess,
    PrometheusServer,
    free_port,
    sample_value,
)

pytestmark = pytest.mark.e2e

METRICS = (
    "# HELP vllm:num_requests_waiting Requests waiting.\n"
    "# TYPE vllm:num_requests_waiting gauge\n"
    'vllm:num_requests_waiting{model_name="m"} 3.0\n'
)


class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        body = METRICS.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Keep test output quiet."""


@pytest.fixture
def metrics_target() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), _MetricsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"{LOOPBACK}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind((LOOPBACK, port))


def test_stop_ends_a_process_that_ignores_nothing_within_bounds() -> None:
    sleeper = ManagedProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], None)
    assert sleeper.proc.poll() is None
    code = sleeper.stop()
    assert code is not None and code != 0
    assert sleeper.stop() == code  # idempotent


def test_process_exit_before_ready_reports_its_output() -> None:
    argv = [sys.executable, "-c", "import sys; print('boom happened'); sys.exit(3)"]
    with ManagedProcess("crasher", argv, None) as proc:
        with pytest.raises(RuntimeError, match="boom happened"):
            proc.wait_until(lambda: False, timeout=10, what="ready")


def test_prometheus_scrapes_and_keeps_vllm_names(
    prometheus: Callable[..., PrometheusServer], metrics_target: str
) -> None:
    prom = prometheus([metrics_target])
    result = prom.wait_for(
        'vllm:num_requests_waiting{model_name="m"}', lambda r: len(r) == 1, timeout=30
    )
    assert sample_value(result[0]) == 3.0
    up = prom.query("up")
    assert [sample_value(s) for s in up] == [1.0]
