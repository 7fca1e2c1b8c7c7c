"""Child processes: spawning them owned by us, stopping them, keeping them running."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pyllmd.core.listen import LOOPBACK, free_port
from pyllmd.core.process import (
    Backoff,
    Process,
    Supervisor,
    exit_text,
    kill_all,
    live_children,
    spawn,
    spawn_ready,
    tail_lines,
    terminate,
)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def test_backoff_doubles_on_quick_failures_and_resets_after_a_good_run() -> None:
    b = Backoff(initial=1.0, maximum=8.0, reset_after=60.0)
    delays = [b.next_delay(0.0, 5.0)]
    for _ in range(5):
        delays.append(b.next_delay(delays[-1], 5.0))
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert b.next_delay(8.0, 60.0) == 1.0  # it ran a minute: a fresh failure


def test_exit_text() -> None:
    assert exit_text(3) == "exit status 3"
    assert exit_text(0) == "exit status 0"
    assert exit_text(-9) == "killed by signal 9 (SIGKILL)"
    assert exit_text(None) == "running"


def test_tail_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("one\n\ntwo\nthree\nfour\n")
    assert tail_lines(log, 2) == ["three", "four"]
    assert tail_lines(tmp_path / "missing.log") == []
    assert tail_lines(None) == []


async def test_spawned_children_have_their_own_session_and_output_file(tmp_path: Path) -> None:
    out = tmp_path / "child.log"
    proc = await spawn([sys.executable, "-c", "print('hello')"], out)
    assert await proc.wait() == 0
    assert out.read_text() == "hello\n"
    sleeper = await spawn(SLEEPER)
    try:
        # its own session: a Ctrl-C at the terminal reaches only the parent
        assert os.getsid(sleeper.pid) == sleeper.pid != os.getsid(0)
        assert sleeper in live_children()
    finally:
        await terminate(sleeper, grace=1.0)
    assert sleeper.returncode == -signal.SIGTERM
    assert sleeper not in live_children()


async def test_spawn_ready_returns_a_child_once_it_serves(tmp_path: Path) -> None:
    port = free_port()
    server = [sys.executable, "-m", "http.server", "--bind", LOOPBACK, str(port)]
    proc = await spawn_ready(
        server, tmp_path / "http.log", f"http://{LOOPBACK}:{port}/", 30.0, lambda: "not ready"
    )
    try:
        assert proc.returncode is None
        assert proc in live_children()
    finally:
        await terminate(proc, grace=1.0)


async def test_spawn_ready_names_a_child_that_exits_before_serving(tmp_path: Path) -> None:
    out = tmp_path / "bad.log"
    crash = [sys.executable, "-c", "import sys; print('bad config'); sys.exit(3)"]
    url = f"http://{LOOPBACK}:{free_port()}/"
    with pytest.raises(RuntimeError, match=r"^child failed: bad config$"):
        await spawn_ready(crash, out, url, 30.0, lambda: "child failed: " + tail_lines(out)[-1])
    assert not live_children()


async def test_kill_all_kills_every_live_child() -> None:
    procs = [await spawn(SLEEPER) for _ in range(2)]
    kill_all()
    assert [await asyncio.wait_for(p.wait(), 10) for p in procs] == [-9, -9]


async def test_supervisor_logs_a_death_and_restarts_the_child(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    out = tmp_path / "child.log"
    launches: list[Process] = []

    async def launch() -> Process:
        code = "print('about to fail'); raise SystemExit(3)" if not launches else "0"
        argv = [sys.executable, "-c", code] if not launches else SLEEPER
        launches.append(await spawn(argv, out))
        return launches[-1]

    sup = Supervisor("worker", launch, out, Backoff(initial=0.05))
    await sup.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while sup.restarts < 1 and loop.time() < deadline:
        await asyncio.sleep(0.02)
    assert sup.restarts == 1 and sup.process is launches[1]
    text = caplog.text
    assert "child exited child=worker exit status 3; restarting in 0.05 s" in text
    assert f"(output: {out}); last lines: about to fail" in text
    assert f"restarted child=worker pid={launches[1].pid}" in text
    await sup.stop(grace=1.0)  # a deliberate stop is not a death: no restart
    assert launches[1].returncode == -signal.SIGTERM
    await asyncio.sleep(0.2)
    assert len(launches) == 2


async def test_supervisor_retries_a_failed_restart(caplog: pytest.LogCaptureFixture) -> None:
    attempts = 0

    async def launch() -> Process:
        nonlocal attempts
        attempts += 1
        if attempts == 2:
            raise RuntimeError("port taken")
        return await spawn(SLEEPER if attempts > 2 else [sys.executable, "-c", "0"])

    sup = Supervisor("flaky", launch, None, Backoff(initial=0.02))
    await sup.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while sup.restarts < 1 and loop.time() < deadline:
        await asyncio.sleep(0.02)
    assert attempts == 3 and sup.restarts == 1
    assert "restart failed child=flaky error=port taken; retrying in 0.04 s" in caplog.text
    await sup.stop(grace=1.0)


SLOW_SHUTDOWN = textwrap.dedent(
    """
    import asyncio, sys
    from pyllmd.cli import _run_until_signal
    from pyllmd.core.process import spawn

    async def main(stop):
        child = await spawn([sys.executable, "-c", "import time; time.sleep(600)"])
        print(child.pid, flush=True)
        await stop.wait()
        print("stopping", flush=True)
        await asyncio.sleep(600)  # a shutdown that would take ten minutes

    sys.exit(_run_until_signal(main, "slow"))
    """
)


def test_a_second_ctrl_c_kills_the_children_and_exits_at_once() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SHUTDOWN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline() == "stopping\n"  # the first: an orderly stop begins
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 128 + signal.SIGINT
        assert "SIGINT again: killed the child processes" in (
            proc.stderr.read() if proc.stderr else ""
        )
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        proc.kill()
        proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


ORPHAN_MAKER = textwrap.dedent(
    """
    import asyncio, sys, uvloop
    from pyllmd.core.process import spawn

    async def main():
        child = await spawn([sys.executable, "-c", "import time; time.sleep(600)"])
        print(child.pid, flush=True)
        await asyncio.sleep(600)

    uvloop.run(main())
    """
)


def test_children_die_with_a_killed_parent() -> None:
    # the parent cannot clean up after SIGKILL; the kernel ends its children (Linux)
    proc = subprocess.Popen([sys.executable, "-c", ORPHAN_MAKER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        assert _alive(child)
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        proc.kill()
        proc.wait()
