"""Fixtures of the e2e harness (see tests/e2e/harness.py for the classes).

``start_sim``, ``run_sim`` and ``prometheus`` are factories; every process they
start is stopped at the end of the test, and its output is printed when the
test failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence

import pytest

from tests.e2e.eppgateway import EppGateway
from tests.e2e.harness import ManagedProcess, PrometheusServer, SimProcess, prometheus_binary


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is None or bool(report.failed)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember the call-phase report so fixtures can show logs only on failure."""
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


class _Processes:
    """Processes started by one test; stopped (with logs on failure) at its end."""

    def __init__(self) -> None:
        self.items: list[ManagedProcess] = []

    def finish(self, show_logs: bool) -> None:
        for proc in reversed(self.items):
            proc.stop()
            if show_logs:
                print(proc.describe(tail=200))


@pytest.fixture
def _processes(request: pytest.FixtureRequest) -> Iterator[_Processes]:
    procs = _Processes()
    yield procs
    procs.finish(show_logs=_failed(request))


@pytest.fixture
def start_sim(_processes: _Processes) -> Callable[..., SimProcess]:
    """Factory: ``start_sim("--model", "m", env={...})`` returns a healthy simulator."""

    def start(*args: str, env: Mapping[str, str] | None = None) -> SimProcess:
        sim = SimProcess(args, env)
        _processes.items.append(sim)
        sim.wait_healthy()
        return sim

    return start


@pytest.fixture
async def epp_gateway(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., EppGateway]]:
    """Factory: ``epp_gateway(*epp_flags, env=...)`` starts `pyllmd epp` on loopback ports with
    a real Envoy ready to go in front (``await gw.start()``); both stop at test end."""
    started: list[EppGateway] = []

    def make(*args: str, env: Mapping[str, str] | None = None) -> EppGateway:
        gw = EppGateway(args, env=env)
        started.append(gw)
        return gw

    try:
        yield make
    finally:
        for gw in started:
            await gw.close(_failed(request))


@pytest.fixture
def run_sim() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Factory: run ``pyllmd sim *args`` to completion (for startup-error checks)."""

    def run(
        *args: str, env: Mapping[str, str] | None = None, timeout: float = 15.0
    ) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ)
        full_env.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "pyllmd", "sim", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture
def prometheus(_processes: _Processes) -> Callable[..., PrometheusServer]:
    """Factory: ``prometheus(["127.0.0.1:PORT"], tls=..., target_labels=...)``: a ready one."""
    binary = prometheus_binary()

    def start(
        targets: Sequence[str],
        scrape_interval: str = "1s",
        tls: bool = False,
        target_labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> PrometheusServer:
        prom = PrometheusServer(binary, targets, scrape_interval, tls, target_labels)
        _processes.items.append(prom)
        prom.wait_ready()
        return prom

    return start
