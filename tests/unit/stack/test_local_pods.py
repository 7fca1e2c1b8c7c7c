"""The local cluster's pods as supervised processes: death, logs, back-off, scale-down.

The pods are a stand-in simulator (a few lines of Python serving `/health` on the
`--port` it is given) so that the tests exercise process supervision, not the
simulator.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pyllmd.autoscaler.decide.api import CrossVersionObjectReference
from pyllmd.core.process import Backoff
from pyllmd.stack.localcluster import LocalCluster, parse_local_spec

FAKE_SIM = textwrap.dedent(
    """
    import http.server, os, sys
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1])
    print("fake pod", os.environ["POD_NAME"], "serving", flush=True)
    if "--exit" in args:
        raise SystemExit(int(args[args.index("--exit") + 1]))

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *a):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
    """
)


def _spec(args: list[str], replicas: int = 1) -> dict[str, object]:
    return {
        "namespace": "llm",
        "variants": [
            {
                "variantAutoscaling": {
                    "metadata": {"name": "v"},
                    "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "v"}, "modelID": "m"},
                },
                "deployment": {"replicas": replicas, "args": args},
            }
        ],
    }


MakeCluster = Callable[..., LocalCluster]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[MakeCluster]:
    made: list[LocalCluster] = []

    def make(args: list[str] | None = None, replicas: int = 1, **kw: object) -> LocalCluster:
        c = LocalCluster(
            parse_local_spec(_spec(args or [], replicas)),
            targets_file=tmp_path / "pods.json",
            sim_command=(sys.executable, "-c", FAKE_SIM),
            log_dir=tmp_path / "pods",
            **kw,  # type: ignore[arg-type]
        )
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close(grace=1.0)


async def _until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_pod_that_dies_is_logged_with_its_status_and_output_then_replaced(
    cluster: MakeCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    c = cluster(backoff=Backoff(initial=0.05))
    await c.reconcile()
    (pod,) = c.deployments[("llm", "v")].pods
    assert pod.ready and c.ready_pods("m") == [pod]
    log_file = tmp_path / "pods" / f"{pod.name}.log"
    assert log_file.read_text() == f"fake pod {pod.name} serving\n"
    # its own session: a Ctrl-C at the terminal does not reach it, the stack stops it
    assert os.getsid(pod.process.pid) == pod.process.pid

    pod.process.send_signal(signal.SIGKILL)
    await pod.process.wait()
    assert c.ready_pods("m") == []  # a dead pod is never routed to
    await c.reconcile()
    assert (
        f"pod exited pod={pod.name} killed by signal 9 (SIGKILL); replacing it in 0.05 s "
        f"(output: {log_file}); last lines: fake pod {pod.name} serving"
    ) in caplog.text
    assert log_file.exists()  # kept: the last lines of a pod that died stay readable
    runner = asyncio.create_task(c.run())
    try:
        await _until(lambda: len(c.ready_pods("m")) == 1, "a replacement pod")
    finally:
        runner.cancel()
    assert c.ready_pods("m")[0].name != pod.name


async def test_a_crash_looping_pod_is_restarted_with_growing_delays(
    cluster: MakeCluster, caplog: pytest.LogCaptureFixture
) -> None:
    c = cluster(["--exit", "3"], backoff=Backoff(initial=0.05, maximum=0.2), ready_timeout=5.0)
    runner = asyncio.create_task(c.run())
    try:
        await c.reconcile()
        await _until(lambda: "replacing it in 0.2 s" in caplog.text, "the delay to reach 0.2 s")
    finally:
        runner.cancel()
    delays = [
        line.split("replacing it in ")[1].split(" s")[0]
        for line in caplog.text.splitlines()
        if "pod exited" in line
    ]
    assert delays[:3] == ["0.05", "0.1", "0.2"]
    assert "exit status 3" in caplog.text


async def test_scale_down_takes_a_pod_out_of_the_pool_before_stopping_it(
    cluster: MakeCluster, tmp_path: Path
) -> None:
    c = cluster(replicas=2, drain=2.0)
    await c.reconcile()
    dep = c.deployments[("llm", "v")]
    newest = dep.pods[-1]
    ref = CrossVersionObjectReference(kind="Deployment", name="v")
    assert await c.scale("llm", ref, 1)
    down = asyncio.create_task(c.reconcile())
    await _until(lambda: len(c.ready_pods("m")) == 1, "the pod to leave the ready set")
    assert newest not in c.ready_pods("m")
    assert newest.process.returncode is None  # still running: requests in flight can end
    await down
    assert newest.process.returncode == -signal.SIGTERM
    assert not (tmp_path / "pods" / f"{newest.name}.log").exists()  # stopped on purpose
