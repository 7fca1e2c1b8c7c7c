"""`pyllmd up`'s live terminal dashboard: the Grafana dashboards' panels, read from the
stack's own Prometheus.

The panels (config/dashboards) as tables: per pod running, waiting, KV usage, TTFT
and ITL percentiles and completed requests; the endpoint picker's view per pod and
its flow-control queues (when the gateway is `envoy-epp`); desired against current
replicas per variant and the pool's saturation signals. `panels` turns query
results into plain rows (pure, unit-tested); `render` lays them out with rich and
`run_dashboard` refreshes a `rich.live.Live` each second until the stack stops.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pyllmd.autoscaler.collect.queries import PrometheusError, VectorSample

__all__ = [
    "EPP_QUERIES",
    "QUERIES",
    "Panels",
    "PodRow",
    "VariantRow",
    "panels",
    "queries_for",
    "render",
    "run_dashboard",
    "ui_enabled",
]

WINDOW = "30s"
RATE = f"[{WINDOW}]"


def _window_counts(series: str) -> str:
    """The observations a counter series gained within the last WINDOW, counting a series
    born inside the window from 0: the simulator (as upstream) creates a histogram's
    series at its first observation, so its first scraped value may already hold every
    observation of a burst, which `increase` alone (from the first sample on) never counts."""
    return f"({series} unless {series} offset {WINDOW}) or increase({series}{RATE})"


def _quantile(q: float, metric: str) -> str:
    """The `q` quantile of the last WINDOW's observations per pod; no sample (not NaN)
    when the window saw none, so the cell shows no data rather than a number."""
    counts = _window_counts(f"{metric}_bucket")
    return f"histogram_quantile({q}, sum by (pod, le) ({counts})) >= 0"


QUERIES: dict[str, str] = {
    "running": "sum by (pod) (vllm:num_requests_running)",
    "waiting": "sum by (pod) (vllm:num_requests_waiting)",
    "kv": "max by (pod) (vllm:kv_cache_usage_perc)",
    "done": "sum by (pod) (vllm:request_success_total)",
    "ttft_p50": _quantile(0.5, "vllm:time_to_first_token_seconds"),
    "ttft_p99": _quantile(0.99, "vllm:time_to_first_token_seconds"),
    "itl_p50": _quantile(0.5, "vllm:inter_token_latency_seconds"),
    "itl_p99": _quantile(0.99, "vllm:inter_token_latency_seconds"),
    "instances": "max by (pod, instance) (vllm:num_requests_running)",
    "desired": "max by (variant_name) (wva_desired_replicas)",
    "current": "max by (variant_name) (wva_current_replicas)",
    "ratio": "max by (variant_name) (wva_desired_ratio)",
}
"""The panels every stack has (model servers and autoscaler), by the name `panels` reads."""
POD_PANELS = ("running", "waiting", "kv", "done", "ttft_p50", "ttft_p99", "itl_p50", "itl_p99")

EPP_QUERIES: dict[str, str] = {
    "routed": f"sum by (pod) (rate(vllm:request_success_total{RATE}))",
    "epp_queue": "sum by (model_server_pod) (inference_pool_per_pod_queue_size)",
    "pool_kv": "max by (name) (inference_pool_average_kv_cache_utilization)",
    "pool_queue": "max by (name) (inference_pool_average_queue_size)",
    "pool_ready": "max by (name) (inference_pool_ready_pods)",
    "flow_queue": "sum by (priority) (inference_extension_flow_control_queue_size)",
}
"""The endpoint picker's panels (gateway `envoy-epp`)."""


def ui_enabled(no_ui: bool, stdout_is_terminal: bool) -> bool:
    """The dashboard is on by default only when stdout is a terminal; `--no-ui` turns it off."""
    return stdout_is_terminal and not no_ui


def queries_for(epp: bool) -> dict[str, str]:
    """The queries a dashboard of a stack runs (with the picker's when `epp`)."""
    return {**QUERIES, **(EPP_QUERIES if epp else {})}


@dataclass(frozen=True)
class PodRow:
    """One model-server pod: the model servers' dashboard row (None: no data yet)."""

    pod: str
    running: float | None
    waiting: float | None
    kv: float | None
    done: float | None
    ttft_p50: float | None
    ttft_p99: float | None
    itl_p50: float | None
    itl_p99: float | None
    routed: float | None = None  # requests/s the picker sent (envoy-epp only)
    epp_queue: float | None = None  # the waiting queue as the picker sees it


@dataclass(frozen=True)
class VariantRow:
    """One variant: desired against current replicas."""

    variant: str
    desired: float | None
    current: float | None
    ratio: float | None


@dataclass(frozen=True)
class Panels:
    """Everything the dashboard shows, as plain rows."""

    pods: tuple[PodRow, ...]
    variants: tuple[VariantRow, ...]
    pool: tuple[tuple[str, float | None, float | None, float | None], ...]  # name, kv, queue, ready
    flow_queues: tuple[tuple[str, float], ...]  # priority, queued requests
    epp: bool
    error: str = ""


def _by(samples: Sequence[VectorSample], label: str) -> dict[str, float]:
    """Values by one label; NaN (a quantile without data) left out."""
    return {
        s.labels.get(label, ""): s.value
        for s in samples
        if not math.isnan(s.value) and s.labels.get(label, "")
    }


def _endpoint_name(instance: str) -> str:
    """The name the picker gives a pod it knows by address (`127.0.0.1:8000` →
    `127-0-0-1-8000`), as `pyllmd epp` does for `--static-endpoints` and `--endpoints-file`."""
    return re.sub(r"[^a-z0-9]+", "-", instance.lower()).strip("-")


def _epp_by_pod(
    by_endpoint: Mapping[str, float], instances: Sequence[VectorSample]
) -> dict[str, float]:
    """The picker's per-endpoint values keyed by pod name where the pod's scrape address
    (`instance`) tells which pod an endpoint is (a rank suffix allowed); others kept."""
    names = {
        _endpoint_name(i.labels.get("instance", "")): i.labels.get("pod", "") for i in instances
    }
    out: dict[str, float] = {}
    for endpoint, value in by_endpoint.items():
        pod = names.get(endpoint) or next(
            (p for n, p in names.items() if n and endpoint.startswith(n + "-")), endpoint
        )
        out[pod or endpoint] = out.get(pod or endpoint, 0.0) + value
    return out


def panels(results: Mapping[str, Sequence[VectorSample]], epp: bool, error: str = "") -> Panels:
    """The dashboard's rows from the results of `queries_for(epp)` (missing: no data)."""
    if not epp:
        results = {name: answer for name, answer in results.items() if name in QUERIES}
    col = {name: _by(results.get(name, ()), "pod") for name in POD_PANELS}
    routed = _by(results.get("routed", ()), "pod")
    epp_queue = _epp_by_pod(
        _by(results.get("epp_queue", ()), "model_server_pod"), results.get("instances", ())
    )
    pod_names = sorted({p for c in col.values() for p in c} | set(epp_queue))
    pods = tuple(
        PodRow(
            pod=p,
            running=col["running"].get(p),
            waiting=col["waiting"].get(p),
            kv=col["kv"].get(p),
            done=col["done"].get(p),
            ttft_p50=col["ttft_p50"].get(p),
            ttft_p99=col["ttft_p99"].get(p),
            itl_p50=col["itl_p50"].get(p),
            itl_p99=col["itl_p99"].get(p),
            routed=routed.get(p),
            epp_queue=epp_queue.get(p),
        )
        for p in pod_names
    )
    var = {
        name: _by(results.get(name, ()), "variant_name") for name in ("desired", "current", "ratio")
    }
    variants = tuple(
        VariantRow(v, var["desired"].get(v), var["current"].get(v), var["ratio"].get(v))
        for v in sorted({v for c in var.values() for v in c})
    )
    pool_cols = {
        n: _by(results.get(n, ()), "name") for n in ("pool_kv", "pool_queue", "pool_ready")
    }
    pool = tuple(
        (
            n,
            pool_cols["pool_kv"].get(n),
            pool_cols["pool_queue"].get(n),
            pool_cols["pool_ready"].get(n),
        )
        for n in sorted({n for c in pool_cols.values() for n in c})
    )
    flow = tuple(sorted(_by(results.get("flow_queue", ()), "priority").items()))
    return Panels(pods, variants, pool, flow, epp, error)


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.0f} ms"


def render(p: Panels, header: Sequence[str] = ()) -> RenderableType:
    """The panels as rich tables (thin: every number comes from `panels`)."""
    pods = Table(title="Model servers (per pod)", expand=True)
    columns = ["pod", "running", "waiting", "KV usage", "done", "TTFT p50", "TTFT p99"]
    columns += ["ITL p50", "ITL p99"] + (["routed/s", "EPP queue"] if p.epp else [])
    for name in columns:
        pods.add_column(name, justify="left" if name == "pod" else "right")
    for r in p.pods:
        cells = [r.pod, _num(r.running), _num(r.waiting), _pct(r.kv), _num(r.done)]
        cells += [_ms(r.ttft_p50), _ms(r.ttft_p99), _ms(r.itl_p50), _ms(r.itl_p99)]
        cells += [_num(r.routed, 2), _num(r.epp_queue)] if p.epp else []
        pods.add_row(*cells)
    variants = Table(title="Autoscaler (per variant)", expand=True)
    for name in ("variant", "desired", "current", "desired/current"):
        variants.add_column(name, justify="left" if name == "variant" else "right")
    for v in p.variants:
        variants.add_row(v.variant, _num(v.desired), _num(v.current), _num(v.ratio, 2))
    parts: list[RenderableType] = [Text(line) for line in header]
    parts += [pods, variants]
    if p.epp:
        pool = Table(title="Endpoint picker: pool and flow control", expand=True)
        for name in ("pool", "avg KV usage", "avg queue", "ready pods"):
            pool.add_column(name, justify="left" if name == "pool" else "right")
        for name, kv, queue, ready in p.pool:
            pool.add_row(name, _pct(kv), _num(queue, 1), _num(ready))
        flow = ", ".join(f"priority {prio}: {size:.0f}" for prio, size in p.flow_queues)
        parts += [pool, Text(f"flow-control queues: {flow or 'empty'}")]
    if p.error:
        parts.append(Text(f"Prometheus: {p.error}", style="red"))
    return Group(*parts)


Query = Callable[[str], Awaitable[list[VectorSample]]]


async def read_panels(query: Query, epp: bool) -> Panels:
    """Run every query once; a failing Prometheus shows as an error line, not an exit."""
    names = queries_for(epp)
    answers = await asyncio.gather(*(query(q) for q in names.values()), return_exceptions=True)
    results: dict[str, list[VectorSample]] = {}
    errors: list[str] = []
    for name, answer in zip(names, answers, strict=True):
        if isinstance(answer, PrometheusError | OSError | asyncio.TimeoutError):
            errors.append(str(answer))
        elif isinstance(answer, BaseException):
            raise answer
        else:
            results[name] = answer
    return panels(results, epp, errors[0] if errors else "")


async def run_dashboard(
    query: Query,
    epp: bool,
    header: Sequence[str],
    stop: asyncio.Event,
    console: Console | None = None,
    period: float = 1.0,
) -> None:
    """Refresh the dashboard every `period` seconds until `stop` is set."""
    with Live(
        render(panels({}, epp), header), console=console, auto_refresh=False, screen=False
    ) as live:
        while not stop.is_set():
            live.update(render(await read_panels(query, epp), header), refresh=True)
            try:
                await asyncio.wait_for(stop.wait(), timeout=period)
            except TimeoutError:
                pass
