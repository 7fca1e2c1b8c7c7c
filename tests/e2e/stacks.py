"""The local stack (`pyllmd up`) as the e2e tests run it: command lines, a running stack."""

from __future__ import annotations

import contextlib
import json
import re
import ssl
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.e2e.harness import ManagedProcess, free_port

SATURATION_CONFIG_MAP = """\
  - metadata:
      name: wva-saturation-scaling-config
      namespace: workload-variant-autoscaler-system
    data:
      default: |
        kvCacheThreshold: 0.80
        queueLengthThreshold: 5
        kvSpareTrigger: 0.1
        queueSpareTrigger: 3
"""
"""The shipped default saturation thresholds, as a `configMaps` list entry."""


def envoy_epp_stack(model: str, replicas: int, max_num_seqs: int, namespace: str = "llm-d") -> str:
    """A stack file: one A100 variant of `model` behind Envoy + `pyllmd epp`, simulators with
    50 ms TTFT, 10 ms ITL and a small KV cache, and the saturation ConfigMap."""
    return f"""
namespace: {namespace}
gateway: envoy-epp
variants:
  - variantAutoscaling:
      metadata: {{name: sim-a100, labels: {{inference.optimization/acceleratorName: A100}}}}
      spec: {{scaleTargetRef: {{kind: Deployment, name: sim-a100}}, modelID: {model}}}
    deployment:
      replicas: {replicas}
      labels: {{app: sim}}
      args: [--model, {model}, --max-num-seqs, "{max_num_seqs}", --time-to-first-token, 50ms,
             --inter-token-latency, 10ms, --enable-kvcache, --kv-cache-size, "256",
             --block-size, "16"]
configMaps:
{SATURATION_CONFIG_MAP}"""


def up_argv(stack_file: Path | None, workdir: Path, *flags: str) -> list[str]:
    """`python -m pyllmd up` on free ports (gateway, admin, Prometheus), the given stack
    (None: the packaged one) and work directory, plus `flags`."""
    argv = [sys.executable, "-m", "pyllmd", "up", "--workdir", str(workdir)]
    if stack_file is not None:
        argv += ["--stack", str(stack_file)]
    for flag in ("--port", "--admin-port", "--prometheus-port"):
        if flag not in flags:
            argv += [flag, str(free_port())]
    return argv + list(flags)


class Stack:
    """A running `pyllmd up` and readers for what it shows."""

    def __init__(self, proc: ManagedProcess, urls: dict[str, str]) -> None:
        self.proc = proc
        self.urls = urls
        self.timeline: list[tuple[float, dict[str, int]]] = []

    def desired(self) -> dict[str, int]:
        """`wva_desired_replicas` by variant, from the controller's /metrics."""
        text = urllib.request.urlopen(self.urls["admin"] + "/metrics", timeout=5).read().decode()
        found = re.findall(r'wva_desired_replicas\{[^}]*variant_name="([\w-]+)"\} (\d+)', text)
        return {name: int(value) for name, value in found}

    def vas(self) -> dict[str, Any]:
        """The VariantAutoscalings with their status, by name."""
        url = self.urls["admin"] + "/apis/llmd.ai/v1alpha1/variantautoscalings"
        items = json.loads(urllib.request.urlopen(url, timeout=5).read())["items"]
        return {va["metadata"]["name"]: va for va in items}

    def prometheus(self, promql: str) -> list[Any]:
        """An instant query to the stack's Prometheus (HTTPS, its own CA)."""
        ctx = ssl.create_default_context(cafile=self.urls["ca"])
        url = self.urls["prometheus"] + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        body = json.loads(urllib.request.urlopen(url, timeout=5, context=ctx).read())
        result: list[Any] = body["data"]["result"]
        return result

    def record(self) -> dict[str, int]:
        """The desired replicas now, added to the timeline when they changed."""
        now = self.desired()
        if not self.timeline or self.timeline[-1][1] != now:
            self.timeline.append((time.monotonic(), now))
        return now

    def wait_for(self, what: str, check: Callable[[dict[str, int]], bool], timeout: float) -> None:
        """Poll the desired replicas each second until `check` holds; fail with the timeline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check(self.record()):
                return
            time.sleep(1)
        raise AssertionError(f"timed out waiting for {what}; timeline: {self.timeline}\n"
                             + self.proc.describe(tail=40))  # fmt: skip


@contextlib.contextmanager
def running_stack(tmp_path: Path, stack_text: str, *flags: str) -> Iterator[Stack]:
    """`pyllmd up` on `stack_text` with `--interval 2s` (unless `flags` set it), until exit."""
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(stack_text)
    if "--interval" not in flags:
        flags = ("--interval", "2s", *flags)
    argv = up_argv(stack_file, tmp_path / "work", *flags)
    proc = ManagedProcess("pyllmd-up", argv, None)
    try:
        urls: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "admin" not in urls:
            if m := re.search(r"autoscaler metrics:\s+(http://\S+)/metrics", proc.output):
                urls["admin"] = m.group(1)
            time.sleep(0.2)
        out = proc.output
        assert urls, "pyllmd up did not start:\n" + proc.describe(tail=60)
        gw = re.search(r"OpenAI API \(gateway\):\s+(\S+)", out)
        assert gw is not None
        urls["gateway"] = gw.group(1)
        m = re.search(r"Prometheus \(HTTPS\):\s+(\S+)\s+\(CA: (\S+)\)", out)
        assert m is not None
        urls["prometheus"], urls["ca"] = m.group(1), m.group(2)
        yield Stack(proc, urls)
    finally:
        proc.stop()
