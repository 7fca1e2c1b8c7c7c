"""PromQL of the replica metrics (spec §4.2, §4.3): rendering, answer parsing, classification.

Pure functions; the HTTP client and the async source that runs the queries are
in `prometheus.py`.

The PromQL templates are upstream's, character for character, so dashboards
and recording rules written for upstream see the same queries.

Beyond upstream, a collection says *why* it has no usable data, so the
controller can set `MetricsAvailable` to `MetricsMissing`, `MetricsStale` or
`PrometheusError` (upstream defines the last two but never sets them):

* `error`: the `kv_cache_usage` or `queue_length` query failed (other
  queries' errors are ignored, as upstream does).
* `stale`: a pod that still belongs to one of the group's variants has a last
  KV-cache sample older than `fresh_threshold` (default 1 m, upstream's
  `PROMETHEUS_METRICS_CACHE_FRESH_THRESHOLD`). Detected with one extra query,
  `kv_last_sample`: the newest sample time per pod. A live series answers
  `timestamp(x)` exactly; a series Prometheus has marked stale (a failed
  scrape does so at once) no longer answers it, so the query falls back
  (`or`) to a subquery of `timestamp()` over `stale_window` (default 5 m,
  `..._UNAVAILABLE_THRESHOLD`), which still sees the samples before the
  marker, to within its 10 s step (erring towards older).
  Pods no longer in the caller's pod → variant map (deleted pods) are ignored,
  so a scale-down does not read as staleness. Stale pods are left out of
  `replicas`; pods whose data stopped longer than `stale_window` ago count as
  gone.
* `missing`: no pod of the group's variants has KV or queue data.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pyllmd.autoscaler.collect.collector import CollectionResult
from pyllmd.autoscaler.decide.model import ModelGroup, ReplicaMetrics, VariantState

KV_CACHE_USAGE = "kv_cache_usage"
QUEUE_LENGTH = "queue_length"
CACHE_CONFIG_INFO = "cache_config_info"
AVG_OUTPUT_TOKENS = "avg_output_tokens"
AVG_INPUT_TOKENS = "avg_input_tokens"
PREFIX_CACHE_HIT_RATE = "prefix_cache_hit_rate"
SCHEDULER_QUEUE_SIZE = "scheduler_queue_size"
SCHEDULER_QUEUE_BYTES = "scheduler_queue_bytes"
MODEL_REQUEST_COUNT = "model_request_count"
KV_LAST_SAMPLE = "kv_last_sample"
"""pyllmd's freshness query (not upstream's): newest KV sample time per pod."""
MODEL_RECENT_SUCCESS = "model_recent_success"
"""pyllmd's scale-to-zero guard (not upstream's): a success first seen within the window.

Upstream's `increase(x[R])` reads only the samples inside the window, so it misses
a counter that was born already above 0 (requests served before the pod's first
scrape) and an increase whose predecessor sample lies just outside the window
(zeroing up to one scrape interval early). This query has an answer above 0 when
some series of the model (a) has a sample inside the window above its last value
before the window, or (b) has no sample before the window and one above 0 inside it.
Either way a successful request was first seen by Prometheus less than R ago,
whatever the scrape interval.
"""

QUERY_TEMPLATES: Mapping[str, str] = {
    KV_CACHE_USAGE: 'max by (pod) (max_over_time(vllm:kv_cache_usage_perc{namespace="{ns}",model_name="{model}"}[1m]))',  # noqa: E501
    QUEUE_LENGTH: 'max by (pod) (max_over_time(vllm:num_requests_waiting{namespace="{ns}",model_name="{model}"}[1m]))',  # noqa: E501
    # No model_name matcher (upstream has one): vLLM's info series carries no model_name
    # label, so it would never match; pods are matched to the model by the other queries.
    CACHE_CONFIG_INFO: 'max by (pod, num_gpu_blocks, block_size) (vllm:cache_config_info{namespace="{ns}"})',  # noqa: E501
    AVG_OUTPUT_TOKENS: 'max by (pod) (rate(vllm:request_generation_tokens_sum{namespace="{ns}",model_name="{model}"}[5m]) / rate(vllm:request_generation_tokens_count{namespace="{ns}",model_name="{model}"}[5m]))',  # noqa: E501
    AVG_INPUT_TOKENS: 'max by (pod) (rate(vllm:request_prompt_tokens_sum{namespace="{ns}",model_name="{model}"}[5m]) / rate(vllm:request_prompt_tokens_count{namespace="{ns}",model_name="{model}"}[5m]))',  # noqa: E501
    PREFIX_CACHE_HIT_RATE: 'max by (pod) (rate(vllm:prefix_cache_hits{namespace="{ns}",model_name="{model}"}[5m]) / rate(vllm:prefix_cache_queries{namespace="{ns}",model_name="{model}"}[5m]))',  # noqa: E501
    SCHEDULER_QUEUE_SIZE: 'sum(inference_extension_flow_control_queue_size{target_model_name="{model}"}) or sum(inference_extension_flow_control_queue_size{model_name="{model}",target_model_name=""})',  # noqa: E501
    SCHEDULER_QUEUE_BYTES: 'sum(inference_extension_flow_control_queue_bytes{target_model_name="{model}"}) or sum(inference_extension_flow_control_queue_bytes{model_name="{model}",target_model_name=""})',  # noqa: E501
    MODEL_REQUEST_COUNT: 'sum(increase(vllm:request_success_total{namespace="{ns}",model_name="{model}"}[{retention}]))',  # noqa: E501
    MODEL_RECENT_SUCCESS: 'sum((max_over_time(vllm:request_success_total{namespace="{ns}",model_name="{model}"}[{retention}]) - vllm:request_success_total{namespace="{ns}",model_name="{model}"} offset {retention}) > 0) or sum(max_over_time(vllm:request_success_total{namespace="{ns}",model_name="{model}"}[{retention}]) > 0 unless vllm:request_success_total{namespace="{ns}",model_name="{model}"} offset {retention})',  # noqa: E501
    KV_LAST_SAMPLE: 'max by (pod) (timestamp(vllm:kv_cache_usage_perc{namespace="{ns}",model_name="{model}"})) or max by (pod) (max_over_time(timestamp(vllm:kv_cache_usage_perc{namespace="{ns}",model_name="{model}"})[{window}:10s]))',  # noqa: E501
}

REPLICA_QUERIES = (
    KV_CACHE_USAGE,
    QUEUE_LENGTH,
    CACHE_CONFIG_INFO,
    AVG_OUTPUT_TOKENS,
    AVG_INPUT_TOKENS,
    PREFIX_CACHE_HIT_RATE,
    KV_LAST_SAMPLE,
)
REQUIRED_QUERIES = (KV_CACHE_USAGE, QUEUE_LENGTH)
_PLACEHOLDER = re.compile(r"\{(ns|model|retention|window)\}")


ErrorKind = Literal["connection", "http", "api"]
_NO_RETRY_STATUS = frozenset({400, 422})


class PrometheusError(Exception):
    """A query failed: transport (`connection`), non-API HTTP answer (`http`), or API error."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        error_type: str = "",
        error: str = "",
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.status = status
        self.error_type = error_type
        self.error = error

    @property
    def retryable(self) -> bool:
        """False for answers that say the query itself is wrong."""
        return self.status not in _NO_RETRY_STATUS


@dataclass(frozen=True, slots=True)
class VectorSample:
    """One series of a query result: its labels, value and sample time (Unix seconds)."""

    labels: Mapping[str, str] = field(default_factory=dict)
    value: float = 0.0
    timestamp: float = 0.0


def escape_label_value(value: str) -> str:
    """A value safe inside a double-quoted PromQL string (`\\` → `\\\\`, `"` → `\\"`)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def render_query(name: str, namespace: str = "", model_id: str = "", **extra: str) -> str:
    """Template `name` with escaped namespace/model and raw `retention`/`window` durations."""
    values = {"ns": escape_label_value(namespace), "model": escape_label_value(model_id), **extra}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], QUERY_TEMPLATES[name])


def pod_of(sample: VectorSample) -> str:
    """The pod a series belongs to: label `pod`, else `pod_name`."""
    return sample.labels.get("pod") or sample.labels.get("pod_name", "")


def classify(
    group: ModelGroup,
    results: Mapping[str, Sequence[VectorSample]],
    pod_variants: Mapping[str, str],
    fresh_threshold: float,
) -> CollectionResult:
    """Replicas plus status from the answers of the replica queries (pure)."""
    variants = {v.name: v for v in group.variants}
    owned = {p: variants[v] for p, v in pod_variants.items() if v in variants}
    stale = {
        pod: s.timestamp - s.value
        for s in results.get(KV_LAST_SAMPLE, ())
        if (pod := pod_of(s)) in owned and s.timestamp - s.value > fresh_threshold
    }
    replicas = tuple(
        r for r in build_replicas(group.model_id, results, owned) if r.pod not in stale
    )
    if stale:
        ages = ", ".join(f"{p} ({age:.0f}s)" for p, age in sorted(stale.items()))
        detail = f"latest samples older than {fresh_threshold:g}s: {ages}"
        return CollectionResult(replicas, "stale", detail)
    if not replicas:
        seen = {pod_of(s) for n in REQUIRED_QUERIES for s in results.get(n, ())}
        detail = f"no KV-cache or queue series for model {group.model_id!r} in {group.namespace}"
        if seen:
            detail += f" from its variants' pods ({len(seen)} other pods seen)"
        return CollectionResult((), "missing", detail)
    return CollectionResult(replicas, "ok", f"{len(replicas)} pods")


def build_replicas(
    model_id: str,
    results: Mapping[str, Sequence[VectorSample]],
    owned: Mapping[str, VariantState],
) -> list[ReplicaMetrics]:
    """Per-pod metrics (§4.3): a pod appears if it has KV or queue data and maps to a variant."""
    per_query = {name: _by_pod(results.get(name, ())) for name in REPLICA_QUERIES}
    kv, queue = per_query[KV_CACHE_USAGE], per_query[QUEUE_LENGTH]
    blocks = _cache_config(results.get(CACHE_CONFIG_INFO, ()))
    out: list[ReplicaMetrics] = []
    for pod in sorted(kv.keys() | queue.keys()):
        variant = owned.get(pod)
        if variant is None:
            continue
        num_blocks, block_size = blocks.get(pod, (0, 0))
        hit_rate = per_query[PREFIX_CACHE_HIT_RATE].get(pod)
        out.append(
            ReplicaMetrics(
                pod=pod,
                variant=variant.name,
                namespace=variant.namespace,
                model_id=model_id,
                accelerator=variant.accelerator,
                cost=variant.cost,
                kv_usage=kv.get(pod, 0.0),
                queue_length=int(queue.get(pod, 0.0)),
                num_gpu_blocks=num_blocks,
                block_size=block_size,
                avg_input_tokens=per_query[AVG_INPUT_TOKENS].get(pod, 0.0),
                avg_output_tokens=per_query[AVG_OUTPUT_TOKENS].get(pod, 0.0),
                prefix_cache_hit_rate=hit_rate
                if hit_rate is not None and 0 <= hit_rate <= 1
                else None,
            )
        )
    return out


def _by_pod(samples: Sequence[VectorSample]) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in samples:
        pod = pod_of(s)
        if pod:
            out[pod] = max(out.get(pod, s.value), s.value)
    return out


def _cache_config(samples: Sequence[VectorSample]) -> dict[str, tuple[int, int]]:
    """Pod → (num_gpu_blocks, block_size); the largest capacity wins if a pod has several."""
    out: dict[str, tuple[int, int]] = {}
    for s in samples:
        pod = pod_of(s)
        try:
            entry = (int(float(s.labels["num_gpu_blocks"])), int(float(s.labels["block_size"])))
        except (KeyError, ValueError):
            continue
        if pod and entry[0] * entry[1] >= out.get(pod, (0, 0))[0] * out.get(pod, (0, 0))[1]:
            out[pod] = entry
    return out


def finite(value: float) -> float:
    """NaN and ±Inf as 0 (upstream's rule for sample values)."""
    return value if math.isfinite(value) else 0.0


def parse_result(data: Mapping[str, Any]) -> list[VectorSample]:
    """The `data` object of a query answer as samples; raises PrometheusError on odd shapes."""
    kind, result = data.get("resultType"), data.get("result") or []
    try:
        if kind == "vector":
            return [_sample(s["metric"], s["value"]) for s in result]
        if kind == "scalar":
            return [_sample({}, result)]
        if kind == "matrix":
            return [_sample(s["metric"], s["values"][-1]) for s in result if s["values"]]
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise PrometheusError("api", f"malformed {kind} result: {err}") from err
    raise PrometheusError("api", f"unsupported result type {kind!r}")


def _sample(metric: Mapping[str, str], point: Sequence[Any]) -> VectorSample:
    return VectorSample(dict(metric), finite(float(point[1])), float(point[0]))


def decode_answer(status: int, body: bytes) -> list[VectorSample]:
    """An HTTP answer as samples, or the matching PrometheusError."""
    try:
        reply = json.loads(body)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        text = body[:200].decode(errors="replace")
        raise PrometheusError("http", f"HTTP {status}: {text}", status=status)
    if reply.get("status") != "success":
        etype, error = str(reply.get("errorType", "")), str(reply.get("error", ""))
        raise PrometheusError(
            "api", f"{etype}: {error} (HTTP {status})", status=status, error_type=etype, error=error
        )
    if status >= 300:
        raise PrometheusError("http", f"HTTP {status} with a success body", status=status)
    data = reply.get("data")
    if not isinstance(data, dict):
        raise PrometheusError("api", "answer without data", status=status)
    return parse_result(data)
