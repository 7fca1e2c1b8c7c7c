"""`pyllmd up` as a user runs it: from any directory, its gateway, its children, Ctrl-C.

* The packaged default stack starts from a directory without any stack file; the
  gateway lists the model, answers an unknown model with 404 at once, and serves.
* Ctrl-C with streams in flight stops everything within a few seconds, ending those
  streams with an error, and leaves no simulator behind.
* Every child is supervised: Prometheus, a simulator pod, and with
  `gateway: envoy-epp` Envoy and the EPP are restarted after they are killed, and
  the death is logged with its exit status (a pod's output is kept in the work
  directory).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from tests.e2e.harness import ManagedProcess, http_get
from tests.e2e.stacks import SATURATION_CONFIG_MAP, up_argv

pytestmark = pytest.mark.e2e

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
UP_TIMEOUT = 60


class Up:
    """A running `pyllmd up` and what it printed."""

    def __init__(self, proc: ManagedProcess, workdir: Path) -> None:
        self.proc = proc
        self.workdir = workdir
        proc.wait_until(lambda: "Ctrl-C stops everything" in proc.output, UP_TIMEOUT, "up")
        out = proc.output
        self.urls: dict[str, str] = {}
        for key, pattern in (
            ("gateway", r"OpenAI API \(gateway\):\s+(\S+)"),
            ("admin", r"autoscaler metrics:\s+(http://\S+)/metrics"),
            ("prometheus", r"Prometheus \(HTTPS\):\s+(\S+)"),
        ):
            found = re.search(pattern, out)
            assert found is not None, f"{key} not printed:\n{proc.describe(60)}"
            self.urls[key] = found.group(1)
        self.ca = str(workdir / "prometheus" / "tls.crt")

    def client(self, timeout: float = 60) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.urls["gateway"], api_key="x", max_retries=0, timeout=timeout
        )

    def pod_ports(self) -> list[int]:
        groups = json.loads((self.workdir / "pods.json").read_text())
        return [int(g["targets"][0].rsplit(":", 1)[1]) for g in groups]

    def wait_log(self, pattern: str, what: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.proc.output)
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n{self.proc.describe(60)}")


@pytest.fixture
def start_up(tmp_path: Path) -> Iterator[Callable[..., Up]]:
    procs: list[ManagedProcess] = []

    def start(stack: str | None, *flags: str) -> Up:
        stack_file = None
        if stack is not None:
            stack_file = tmp_path / "stack.yaml"
            stack_file.write_text(stack)
        workdir = tmp_path / "work"
        argv = up_argv(stack_file, workdir, *flags)
        # from a directory without any stack file: the default one ships in the package
        proc = ManagedProcess("pyllmd-up", ["env", f"--chdir={tmp_path}", *argv], None)
        procs.append(proc)
        return Up(proc, workdir)

    yield start
    for proc in procs:
        proc.stop()


def _closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.timeout(180)
def test_default_stack_from_anywhere_then_ctrl_c_with_streams_in_flight(
    start_up: Callable[..., Up],
) -> None:
    up = start_up(None)
    assert "stack.yaml" in up.proc.output  # the packaged file, printed at start-up
    client = up.client()
    assert [m.id for m in client.models.list().data] == [DEFAULT_MODEL]
    with pytest.raises(openai.NotFoundError) as unknown:
        client.completions.create(model="not-served", prompt="hi")
    assert unknown.value.status_code == 404
    reply = client.completions.create(model=DEFAULT_MODEL, prompt="hi", max_tokens=3)
    assert reply.choices[0].text
    pods = up.pod_ports()
    assert len(pods) == 2

    chunks_seen: list[int] = []
    lock = threading.Lock()

    def stream(_: int) -> str:
        try:
            chunks = client.completions.create(
                model=DEFAULT_MODEL, prompt="hi", max_tokens=500, stream=True,
                extra_body={"ignore_eos": True},
            )  # fmt: skip
            for _chunk in chunks:
                with lock:
                    chunks_seen.append(1)
            return "completed"
        except Exception as e:  # the openai client or its HTTP library: an error either way
            return type(e).__name__

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = [pool.submit(stream, i) for i in range(12)]
        deadline = time.monotonic() + 30
        while len(chunks_seen) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(chunks_seen) >= 20, "no stream started"
        up.proc.proc.send_signal(signal.SIGINT)
        # within a few seconds (500 tokens take 10 s per stream, more for queued ones)
        assert up.proc.proc.wait(timeout=8) == 0, up.proc.describe(40)
        outcomes = [r.result(timeout=30) for r in results]
    assert "completed" not in outcomes, outcomes  # ended with an error, none hung
    assert all(_closed(port) for port in pods)
    assert "stopping the local stack" in up.proc.output


STACK = f"""
namespace: llm
variants:
  - variantAutoscaling:
      metadata: {{name: solo, labels: {{inference.optimization/acceleratorName: A100}}}}
      spec: {{scaleTargetRef: {{kind: Deployment, name: solo}}, modelID: m}}
    deployment: {{replicas: 1, args: [--model, m]}}
configMaps:
{SATURATION_CONFIG_MAP}"""


@pytest.mark.timeout(180)
def test_prometheus_and_pods_are_restarted_and_their_deaths_logged(
    start_up: Callable[..., Up],
) -> None:
    up = start_up(STACK, "--interval", "60s")
    pid = int(up.wait_log(r"started child=prometheus pid=(\d+)", "prometheus").group(1))
    ctx = ssl.create_default_context(cafile=up.ca)
    ready = up.urls["prometheus"] + "/-/ready"
    assert http_get(ready, context=ctx)[0] == 200

    os.kill(pid, signal.SIGKILL)
    up.wait_log(
        r"child exited child=prometheus killed by signal 9 \(SIGKILL\); restarting in 1 s",
        "the death of prometheus to be logged",
    )
    up.wait_log(r"restarted child=prometheus pid=\d+", "prometheus to be restarted")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if http_get(ready, context=ctx)[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.2)
    assert http_get(ready, context=ctx)[0] == 200  # the same URL answers again

    pod = up.wait_log(r"pod started pod=(\S+) port=\d+ pid=(\d+)", "the pod")
    name, pod_pid = pod.group(1), int(pod.group(2))
    os.kill(pod_pid, signal.SIGKILL)
    log_file = up.workdir / "pods" / f"{name}.log"
    up.wait_log(
        rf"pod exited pod={re.escape(name)} killed by signal 9 \(SIGKILL\); replacing it in 1 s "
        rf"\(output: {re.escape(str(log_file))}\); last lines: ",
        "the death of the pod to be logged",
    )
    assert "listening" in log_file.read_text()  # the simulator's own lines are kept
    up.wait_log(r"pod started pod=(?!" + re.escape(name) + r")\S+", "a replacement pod")
    reply = up.client().completions.create(model="m", prompt="hi", max_tokens=2)
    assert reply.choices[0].text


ENVOY_STACK = STACK.replace("namespace: llm\n", "namespace: llm\ngateway: envoy-epp\n").replace(
    "args: [--model, m]", "labels: {app: sim}, args: [--model, m]"
)


@pytest.mark.timeout(180)
def test_envoy_and_the_epp_are_restarted_after_they_die(start_up: Callable[..., Up]) -> None:
    up = start_up(ENVOY_STACK, "--interval", "60s")
    client = up.client(timeout=30)
    assert client.completions.create(model="m", prompt="hi", max_tokens=2).choices[0].text
    for child in ("epp", "envoy"):
        pid = int(up.wait_log(rf"started child={child} pid=(\d+)", child).group(1))
        os.kill(pid, signal.SIGKILL)
        up.wait_log(
            rf"child exited child={child} killed by signal 9 \(SIGKILL\); restarting in 1 s",
            f"the death of {child} to be logged",
        )
        up.wait_log(rf"restarted child={child} pid=\d+", f"{child} to be restarted")
        deadline = time.monotonic() + 30
        while True:  # served again through the restarted child
            try:
                reply = client.completions.create(model="m", prompt="hi", max_tokens=2)
                break
            except openai.APIError:
                assert time.monotonic() < deadline, up.proc.describe(40)
                time.sleep(0.2)
        assert reply.choices[0].text
