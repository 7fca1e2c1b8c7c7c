"""Replica metrics from Prometheus (spec §4.2, §4.3), with freshness classified.

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

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from pyllmd.autoscaler.collect.prometheus import PrometheusError, VectorSample
from pyllmd.autoscaler.decide.configmaps import format_retention
from pyllmd.autoscaler.decide.model import ModelGroup, ReplicaMetrics, VariantState
from pyllmd.autoscaler.interfaces import CollectionError, MetricsSource

log = logging.getLogger(__name__)

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

_REPLICA_QUERIES = (
    KV_CACHE_USAGE,
    QUEUE_LENGTH,
    CACHE_CONFIG_INFO,
    AVG_OUTPUT_TOKENS,
    AVG_INPUT_TOKENS,
    PREFIX_CACHE_HIT_RATE,
    KV_LAST_SAMPLE,
)
_REQUIRED = (KV_CACHE_USAGE, QUEUE_LENGTH)
_PLACEHOLDER = re.compile(r"\{(ns|model|retention|window)\}")

CollectionStatus = Literal["ok", "missing", "stale", "error"]
CONDITION_REASONS: Mapping[CollectionStatus, str] = {
    "ok": "MetricsFound",
    "missing": "MetricsMissing",
    "stale": "MetricsStale",
    "error": "PrometheusError",
}
"""`MetricsAvailable` condition reason for each collection status."""


def escape_label_value(value: str) -> str:
    """A value safe inside a double-quoted PromQL string (`\\` → `\\\\`, `"` → `\\"`)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def render_query(name: str, namespace: str = "", model_id: str = "", **extra: str) -> str:
    """Template `name` with escaped namespace/model and raw `retention`/`window` durations."""
    values = {"ns": escape_label_value(namespace), "model": escape_label_value(model_id), **extra}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], QUERY_TEMPLATES[name])


class QueryClient(Protocol):
    """What the source needs of a Prometheus client (PrometheusClient, or a fake)."""

    async def query(self, promql: str) -> list[VectorSample]:
        """Instant query at now."""
        ...


@dataclass(frozen=True)
class CollectionResult:
    """Replica metrics of one model group, and whether they can be trusted."""

    replicas: tuple[ReplicaMetrics, ...]
    status: CollectionStatus
    detail: str = ""

    @property
    def reason(self) -> str:
        """The `MetricsAvailable` reason matching `status`."""
        return CONDITION_REASONS[self.status]


PodResolver = Callable[[ModelGroup], Awaitable[Mapping[str, str]]]
"""Pod name → VA name for a group's pods (the caller resolves Pod → Deployment → VA)."""


class PrometheusMetricsSource:
    """`MetricsSource` over Prometheus: the queries of §4.2, built into `ReplicaMetrics`."""

    def __init__(
        self,
        client: QueryClient,
        resolve_pods: PodResolver | None = None,
        *,
        fresh_threshold: float = 60.0,
        stale_window: float = 300.0,
    ) -> None:
        self._client = client
        self._resolve_pods = resolve_pods
        self.fresh_threshold = fresh_threshold
        self.stale_window = stale_window

    async def collect(
        self, group: ModelGroup, pod_variants: Mapping[str, str] | None = None
    ) -> CollectionResult:
        """Run the group's queries concurrently and classify the outcome.

        `pod_variants` maps pod name → VA name; without it the resolver given at
        construction is asked.
        """
        if pod_variants is None:
            if self._resolve_pods is None:
                raise ValueError("no pod → variant mapping given and no resolver configured")
            pod_variants = await self._resolve_pods(group)
        window = format_retention(self.stale_window)
        queries = [
            render_query(name, group.namespace, group.model_id, window=window)
            for name in _REPLICA_QUERIES
        ]
        answers = await asyncio.gather(
            *(self._client.query(q) for q in queries), return_exceptions=True
        )
        results: dict[str, list[VectorSample]] = {}
        for name, answer in zip(_REPLICA_QUERIES, answers, strict=True):
            if isinstance(answer, PrometheusError):
                if name in _REQUIRED:
                    return CollectionResult((), "error", f"{name} query failed: {answer}")
                log.info("ignoring failed %s query for %s: %s", name, group.key, answer)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                results[name] = answer
        return classify(group, results, pod_variants, self.fresh_threshold)

    async def replica_metrics(self, group: ModelGroup) -> tuple[ReplicaMetrics, ...]:
        """The `MetricsSource` protocol: replicas, or CollectionError on a Prometheus error."""
        result = await self.collect(group)
        if result.status == "error":
            raise CollectionError(result.detail)
        return result.replicas

    async def request_count(
        self, namespace: str, model_id: str, retention_seconds: float
    ) -> float | None:
        """Successful requests over the retention window; None on error or without series."""
        retention = format_retention(retention_seconds)
        promql = render_query(MODEL_REQUEST_COUNT, namespace, model_id, retention=retention)
        try:
            samples = await self._client.query(promql)
        except PrometheusError as err:
            log.info("request count of %s/%s unknown: %s", namespace, model_id, err)
            return None
        return sum(s.value for s in samples) if samples else None

    async def recent_success(
        self, namespace: str, model_id: str, retention_seconds: float
    ) -> bool | None:
        """Whether a successful request was first seen within the window; None on error.

        pyllmd's guard next to `request_count` (see `MODEL_RECENT_SUCCESS`).
        """
        retention = format_retention(retention_seconds)
        promql = render_query(MODEL_RECENT_SUCCESS, namespace, model_id, retention=retention)
        try:
            samples = await self._client.query(promql)
        except PrometheusError as err:
            log.info("recent successes of %s/%s unknown: %s", namespace, model_id, err)
            return None
        return any(s.value > 0 for s in samples)

    async def scheduler_queue(self, model_id: str) -> tuple[float, float]:
        """EPP flow-control queue (size, bytes) of a model; 0 for an unknown or failed query."""
        names = (SCHEDULER_QUEUE_SIZE, SCHEDULER_QUEUE_BYTES)
        answers = await asyncio.gather(
            *(self._client.query(render_query(n, model_id=model_id)) for n in names),
            return_exceptions=True,
        )
        totals: list[float] = []
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, PrometheusError):
                log.info("%s of %s unknown: %s", name, model_id, answer)
                totals.append(0.0)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                totals.append(sum(s.value for s in answer))
        return totals[0], totals[1]


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
        seen = {pod_of(s) for n in _REQUIRED for s in results.get(n, ())}
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
    per_query = {name: _by_pod(results.get(name, ())) for name in _REPLICA_QUERIES}
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


_PROTOCOL_CHECK: type[MetricsSource] = PrometheusMetricsSource
