"""Child processes: start them owned by us, stop them politely, keep them running.

* `spawn` starts a child in its own session (a terminal's Ctrl-C reaches only the
  parent, which then stops its children in order), on Linux bound to die with the
  parent (`PR_SET_PDEATHSIG`), its output appended to a file; every live child is
  remembered so that `kill_all` can end them at once (a second Ctrl-C).
* `terminate` stops one: SIGTERM, then SIGKILL after a grace period.
* `spawn_ready` starts a child and waits until an HTTP probe of it answers 200
  (`http_ready`), so every "start it, poll until it serves" is written once.
* `Supervisor` keeps one child running: when it exits unexpectedly the death is
  logged with its exit status and last output lines, and the child is started
  again after a back-off (`Backoff`, a pure function of the failure history).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import resource
import signal
import ssl as ssl_
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

log = logging.getLogger(__name__)

Process = asyncio.subprocess.Process

_live: set[Process] = set()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


async def spawn(
    argv: Sequence[str],
    output: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Process:
    """Start `argv` as a child we own: own session, output appended to `output`
    (discarded when None), killed by the kernel if this process dies first (Linux)."""
    extra = {"preexec_fn": _die_with_parent} if sys.platform == "linux" else {}
    with contextlib.ExitStack() as files:
        out = files.enter_context(output.open("ab")) if output is not None else None
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out if out is not None else asyncio.subprocess.DEVNULL,
            stderr=out if out is not None else asyncio.subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            **extra,  # type: ignore[arg-type]
        )
    _live.add(proc)
    return proc


async def http_ready(
    process: Process,
    url: str,
    timeout: float,
    *,
    interval: float = 0.05,
    ssl: ssl_.SSLContext | None = None,
    session: aiohttp.ClientSession | None = None,
) -> bool:
    """Poll `url` until it answers 200 (True), or `process` exits or `timeout` seconds
    pass (False). Each probe may take up to 1 s; `session` is reused when given."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with contextlib.AsyncExitStack() as stack:
        if session is None:
            session = await stack.enter_async_context(
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1))
            )
        while loop.time() < deadline and process.returncode is None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url, ssl=ssl if ssl is not None else True) as r:
                    if r.status == 200:
                        return True
            await asyncio.sleep(interval)
    return False


async def spawn_ready(
    argv: Sequence[str],
    output: Path | None,
    url: str,
    timeout: float,
    failure: Callable[[], str],
    *,
    interval: float = 0.05,
    ssl: ssl_.SSLContext | None = None,
) -> Process:
    """`spawn` then `http_ready`; a child that does not become ready is terminated and
    `RuntimeError(failure())` raised (the caller words it: which child, which log)."""
    process = await spawn(argv, output)
    try:
        if not await http_ready(process, url, timeout, interval=interval, ssl=ssl):
            raise RuntimeError(failure())
    except BaseException:
        await terminate(process, grace=2.0)
        raise
    return process


def live_children() -> list[Process]:
    """Children started by `spawn` that have not been seen to exit."""
    for proc in [p for p in _live if p.returncode is not None]:
        _live.discard(proc)
    return list(_live)


def kill_all() -> None:
    """SIGKILL every live child started by `spawn` (the second Ctrl-C)."""
    for proc in live_children():
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


async def terminate(proc: Process | None, grace: float = 10.0) -> None:
    """Terminate `proc` (if still running), killing it when it outlives `grace` seconds."""
    if proc is None:
        return
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    _live.discard(proc)


def exit_text(returncode: int | None) -> str:
    """`exit status 3`, `killed by signal 9 (SIGKILL)` or `running`."""
    if returncode is None:
        return "running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            return f"killed by signal {-returncode}"
        return f"killed by signal {-returncode} ({name})"
    return f"exit status {returncode}"


def tail_lines(path: Path | None, count: int = 5, max_bytes: int = 16384) -> list[str]:
    """The last `count` non-empty lines of a log file (empty when it cannot be read)."""
    if path is None:
        return []
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    lines = [line for line in data.decode(errors="replace").splitlines() if line.strip()]
    return lines[-count:]


def raise_open_files_limit() -> None:
    """Raise the soft limit of open files to the hard one (as Go programs do at start):
    a proxy holds two sockets per request in flight."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass(frozen=True)
class Backoff:
    """Restart delays: `initial`, doubled after each quick failure up to `maximum`;
    a child that ran at least `reset_after` seconds starts again from `initial`."""

    initial: float = 1.0
    maximum: float = 30.0
    reset_after: float = 60.0

    def next_delay(self, previous: float, uptime: float) -> float:
        """The delay before the next start, given the last delay (0: none yet) and how
        long the child ran before it died."""
        if previous <= 0 or uptime >= self.reset_after:
            return self.initial
        return min(self.maximum, previous * 2)


class Supervisor:
    """Keeps one child running: `start()` starts it (awaiting `launch`, which spawns and
    waits until ready), a watcher restarts it after an unexpected exit; `stop()` ends both."""

    def __init__(
        self,
        name: str,
        launch: Callable[[], Awaitable[Process]],
        output: Path | None = None,
        backoff: Backoff = Backoff(),
    ) -> None:
        self.name = name
        self.launch = launch
        self.output = output
        self.backoff = backoff
        self.process: Process | None = None
        self.restarts = 0
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the child (errors propagate: a child that cannot start is a start-up
        error), then watch it."""
        await self.stop()
        self.process = await self.launch()
        log.info("started child=%s pid=%d", self.name, self.process.pid)
        self._watcher = asyncio.create_task(self._watch(), name=f"supervise {self.name}")

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.0
        started = loop.time()
        while True:
            assert self.process is not None
            code = await self.process.wait()
            _live.discard(self.process)
            delay = self.backoff.next_delay(delay, loop.time() - started)
            self._log_death(code, delay)
            while True:
                await asyncio.sleep(delay)
                started = loop.time()
                try:
                    self.process = await self.launch()
                    break
                except Exception as e:  # a failed restart is retried, never fatal
                    delay = self.backoff.next_delay(delay, 0.0)
                    log.error(
                        "restart failed child=%s error=%s; retrying in %s s",
                        self.name, e, _seconds(delay),
                    )  # fmt: skip
            self.restarts += 1
            log.warning("restarted child=%s pid=%d", self.name, self.process.pid)

    def _log_death(self, code: int, delay: float) -> None:
        where = f" (output: {self.output})" if self.output is not None else ""
        last = " | ".join(tail_lines(self.output, 3))
        log.warning(
            "child exited child=%s %s; restarting in %s s%s%s",
            self.name, exit_text(code), _seconds(delay), where,
            f"; last lines: {last}" if last else "",
        )  # fmt: skip

    async def stop(self, grace: float = 5.0) -> None:
        """Stop watching, then terminate the child; a later `start()` starts it again."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await terminate(self.process, grace)


def _seconds(value: float) -> str:
    return f"{value:g}"
