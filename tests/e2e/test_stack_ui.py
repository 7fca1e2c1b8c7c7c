"""`pyllmd up`'s live terminal dashboard, read off a real terminal (tmux).

`pyllmd up` runs in a tmux pane (its own tmux server on a private socket) with a
`gateway: envoy-epp` stack: one simulator pod (one variant at its minimum, so the
autoscaler keeps it) behind a real Envoy and `pyllmd epp`.
A short load goes through the gateway; `tmux capture-pane -p` then shows, on the
pods' rows, the completed requests, TTFT and ITL percentiles and the picker's
routed rate, and the autoscaler's row per variant; the logs went to the file the
dashboard named, not to the screen. Ctrl-C stops it and names the log file again.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from tests.e2e.harness import free_port
from tests.e2e.stacks import envoy_epp_stack, up_argv

pytestmark = pytest.mark.e2e

MODEL = "ui-model"
STACK = envoy_epp_stack(MODEL, replicas=1, max_num_seqs=4)


class Pane:
    """One tmux server on a private socket with one 220x60 pane running a command."""

    def __init__(self, command: list[str]) -> None:
        self.socket = f"pyllmd-e2e-{uuid.uuid4().hex[:8]}"
        # The pane stays after the command ends, so a failed start can still be read.
        # pytest sets COLUMNS and LINES (80x24); the pane's own size must count.
        shell = (
            f"env -u COLUMNS -u LINES {shlex.join(command)}; echo pyllmd-up-exited=$?; sleep 300"
        )
        self.tmux("new-session", "-d", "-s", "ui", "-x", "220", "-y", "60", shell)
        self.socket_path = Path(self.tmux("display-message", "-p", "#{socket_path}").strip())

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )
        assert done.returncode == 0, f"tmux {args[0]}: {done.stderr}"
        return done.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "ui")

    def wait_for(self, what: str, check: Callable[[str], bool], timeout: float = 60) -> str:
        """Read the screen twice a second until `check` holds (bounded)."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if check(screen):
                return screen
            time.sleep(0.5)
        raise AssertionError(f"the screen never showed {what}:\n{screen}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)
        self.socket_path.unlink(missing_ok=True)  # tmux may leave it behind


@pytest.fixture
def pane_factory() -> Iterator[Callable[[list[str]], Pane]]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed: run `make e2e-deps`")
    panes: list[Pane] = []

    def make(command: list[str]) -> Pane:
        panes.append(Pane(command))
        return panes[-1]

    yield make
    for pane in panes:
        pane.close()


def pod_rows(screen: str) -> dict[str, list[str]]:
    """The cells of the model servers' table, by pod name."""
    rows = {}
    for line in screen.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 10 and cells[1].startswith("sim-a100-"):
            rows[cells[1]] = cells[2:-1]
    return rows


def variant_rows(screen: str) -> dict[str, list[str]]:
    """The cells (desired, current, ratio) of the autoscaler's table, by variant."""
    rows = {}
    for line in screen.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == 6 and cells[1] == "sim-a100":
            rows[cells[1]] = cells[2:-1]
    return rows


def _ms(cell: str) -> int:
    """A duration cell's milliseconds; -1 while it shows no data."""
    return int(cell.removesuffix(" ms")) if cell.endswith(" ms") else -1


def test_the_dashboard_shows_live_numbers_during_a_load(
    tmp_path: Path, pane_factory: Callable[[list[str]], Pane]
) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text(STACK)
    port = free_port()
    workdir = tmp_path / "work"
    argv = up_argv(stack, workdir, "--port", str(port), "--interval", "2s")
    pane = pane_factory(argv)
    log_file = workdir / "pyllmd-up.log"
    pane.wait_for("where the logs go", lambda s: f"logs go to {log_file}" in s, 30)
    pane.wait_for(
        "the pod and the variant",
        lambda s: len(pod_rows(s)) == 1 and variant_rows(s).get("sim-a100", ["", ""])[1] == "1",
        90,
    )

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=2)
    for i in range(12):
        reply = client.completions.create(model=MODEL, prompt=f"hello {i}", max_tokens=5)
        assert reply.choices[0].text

    def served(screen: str) -> bool:
        # TTFT and ITL percentiles come from Prometheus samples: each shows "-" until
        # its histogram has been scraped, which may be one scrape apart
        rows = pod_rows(screen)
        return any(r[3] == "12" and _ms(r[5]) >= 40 and _ms(r[6]) >= 0 for r in rows.values())

    screen = pane.wait_for("12 completed requests with their TTFT and ITL", served, 90)
    print(screen)  # shown when the test fails
    rows = pod_rows(screen)
    header = next(line for line in screen.splitlines() if "│ pod " in line or "┃ pod " in line)
    assert [c.strip() for c in re.split("[┃│]", header)][1:-1] == [
        "pod", "running", "waiting", "KV usage", "done", "TTFT p50", "TTFT p99",
        "ITL p50", "ITL p99", "routed/s", "EPP queue",
    ]  # fmt: skip
    ((pod, row),) = rows.items()
    assert row[3] == "12"  # done
    assert int(row[5].removesuffix(" ms")) >= 40  # TTFT p99: the simulator's TTFT is 50 ms
    assert _ms(row[6]) >= 5  # ITL p50: its ITL is 10 ms (all in the first bucket, 0-10 ms)
    assert float(row[8]) > 0  # the picker routed requests to it lately
    assert row[9] == "0"  # the picker sees the pod's queue (by the pod's name), empty now
    assert "│ 127-" not in screen  # no endpoint left under the picker's address name
    assert variant_rows(screen)["sim-a100"][:2] == ["1", "1"]  # desired, current
    lines = screen.splitlines()
    title = next(i for i, line in enumerate(lines) if "Endpoint picker: pool and flow" in line)
    pool = [c.strip() for c in lines[title + 4].split("│")]  # title, 3 header lines, the row
    assert pool[4] == "1"  # the ready pods the picker counts in its pool
    assert "flow-control queues: priority 0: 0" in screen  # the picker's queue, drained
    assert "level=INFO" not in screen  # the logs go to the file
    assert "pod started" in log_file.read_text()

    pane.tmux("send-keys", "-t", "ui", "C-c")
    pane.wait_for(
        "a clean stop naming the log file",
        lambda s: f"the logs are in {log_file}" in s and "pyllmd-up-exited=0" in s,
        30,
    )


def test_no_ui_keeps_the_plain_output_and_the_logs_on_the_terminal(
    tmp_path: Path, pane_factory: Callable[[list[str]], Pane]
) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text(STACK)
    workdir = tmp_path / "work"
    pane = pane_factory(up_argv(stack, workdir, "--no-ui", "--v", "2"))
    screen = pane.wait_for(
        "the stack's URLs", lambda s: "Ctrl-C stops everything" in s.replace("\n", ""), 90
    )
    assert "level=INFO" in screen  # the logs stay on the terminal (stderr)
    assert "logs go to" not in screen and "Model servers (per pod)" not in screen
    assert not (workdir / "pyllmd-up.log").exists()
    pane.tmux("send-keys", "-t", "ui", "C-c")
    screen = pane.wait_for("a clean stop", lambda s: "pyllmd-up-exited=0" in s, 30)
    assert "Model servers (per pod)" not in screen
