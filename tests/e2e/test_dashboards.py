"""Every panel of the Grafana dashboards (config/dashboards) shows data on a real stack.

`pyllmd up` runs a stack with `gateway: envoy-epp` (a real Envoy, `pyllmd epp`
with flow control, a simulator pod, the autoscaler). A Prometheus of the test
scrapes the stack's parts with the target labels the ServiceMonitors and
PodMonitors of config/ give them in a cluster: `namespace` and `pod` on every
target, so the autoscaler's own `namespace` label becomes `exported_namespace`
as it does there. After a short load through the gateway, every query of every
panel, with the dashboard variables set to the stack's namespace and model,
returns at least one series, and the variables' own queries list the stack's
namespace and model.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.harness import PrometheusServer, http_get
from tests.e2e.stacks import Stack, envoy_epp_stack, running_stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "config" / "dashboards").glob("*.json"))
NAMESPACE = "llm-d"
MODEL = "llama-8b"
AUTOSCALER_NAMESPACE = "workload-variant-autoscaler-system"
# one pod: an idle variant at 1 is at its minimum, so no cycle stops a pod the test scrapes
STACK = envoy_epp_stack(MODEL, replicas=1, max_num_seqs=2, namespace=NAMESPACE)
# What Grafana puts in place of the variables and macros.
VARIABLES = {
    "$namespace": NAMESPACE,
    "$model": MODEL,
    "$__rate_interval": "1m",
    "$__range": "5m",
}


def _panels() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, query) of every target of every dashboard."""
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                found.append((path.name, panel["title"], target["expr"]))
    return found


def _concrete(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a variable the test does not set: {expr}"
    return expr


def _hostport(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


@pytest.fixture
def scraped_stack(
    tmp_path: Path, prometheus: Callable[..., PrometheusServer]
) -> Iterator[tuple[Stack, PrometheusServer]]:
    with running_stack(tmp_path, STACK) as stack:
        out = stack.proc.output
        epp = re.search(r"queue metrics:\s+(\S+)", out)
        assert epp is not None, stack.proc.describe(60)
        pods_file = tmp_path / "work" / "pods.json"
        stack.proc.wait_until(
            lambda: pods_file.exists() and len(json.loads(pods_file.read_text())) == 1,
            60,
            "the simulator pod",
        )
        labels: dict[str, dict[str, str]] = {}
        for group in json.loads(pods_file.read_text()):
            for target in group["targets"]:
                labels[target] = {"namespace": NAMESPACE, "pod": group["labels"]["pod"]}
        labels[_hostport(epp.group(1))] = {"namespace": NAMESPACE, "pod": "llama-8b-epp-0"}
        labels[_hostport(stack.urls["admin"])] = {
            "namespace": AUTOSCALER_NAMESPACE,
            "pod": "workload-variant-autoscaler-controller-manager-0",
        }
        yield stack, prometheus(list(labels), "1s", target_labels=labels)


def _load(gateway: str) -> None:
    """40 chat completions, 8 at a time, half of them streamed, through the gateway."""
    client = openai.OpenAI(base_url=gateway, api_key="x", max_retries=0, timeout=60)

    def one(i: int) -> str:
        messages: Any = [{"role": "user", "content": f"Tell me about request {i}"}]
        if i % 2:
            chunks = client.chat.completions.create(
                model=MODEL, messages=messages, max_tokens=12, stream=True
            )
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        reply = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12)
        return reply.choices[0].message.content or ""

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(one, range(40)))
    assert all(texts), "a completion came back empty"


@pytest.mark.timeout(300)
def test_every_dashboard_query_and_variable_returns_data_on_the_stack(
    scraped_stack: tuple[Stack, PrometheusServer],
) -> None:
    stack, prom = scraped_stack
    prom.wait_for('up{job="e2e"} == 1', lambda r: len(r) == 3, timeout=30)
    _load(stack.urls["gateway"])
    panels = _panels()
    assert len(panels) >= 20 and {p[0] for p in panels} == {
        "autoscaler.json", "endpoint-picker.json", "model-servers.json"
    }  # fmt: skip
    empty = []
    for dashboard, title, expr in panels:
        try:
            prom.wait_for(_concrete(expr), bool, timeout=20)
        except AssertionError as err:
            empty.append(f"{dashboard} / {title}: {err}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
    _check_variables(prom)


def _check_variables(prom: PrometheusServer) -> None:
    """Each dashboard's namespace and model variables list the stack's values."""
    for path in DASHBOARDS:
        variables = {v["name"]: v for v in json.loads(path.read_text())["templating"]["list"]}
        assert variables["datasource"]["query"] == "prometheus"
        for name, wanted in (("namespace", NAMESPACE), ("model", MODEL)):
            query = variables[name]["query"]["query"]
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
            assert match is not None, query
            series, label = _concrete(match.group(1)), match.group(2)
            url = f"{prom.url}/api/v1/label/{label}/values?" + urllib.parse.urlencode(
                {"match[]": series}
            )

            def listed(url: str = url, wanted: str = wanted) -> bool:
                status, body = http_get(url)
                return status == 200 and wanted in json.loads(body)["data"]

            prom.wait_until(lambda: listed(), 30, f"{path.name} ${name} to list {wanted}")
