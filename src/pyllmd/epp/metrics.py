# ruff: noqa: E501
"""The EPP's own Prometheus metrics (spec §9), on `core.metricset`.

Names, types, labels and buckets are the GIE ones (dashboards and alerts keep
working); every help text starts with `[ALPHA] ` as the Go registry prints it.
The server calls the `record_*` methods per request; the per-pod queue gauge is
computed from the datastore when `/metrics` is rendered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pyllmd.core.clock import Clock
from pyllmd.core.metricset import CONTENT_TYPE, CollectorFamily, Family, Registry
from pyllmd.epp.scheduling.types import Endpoint, EndpointMetrics

__all__ = [
    "CONTENT_TYPE",
    "EppMetrics",
    "PoolGauges",
    "is_stale",
    "pool_gauge_loop",
    "pool_gauges",
]

ALPHA = "[ALPHA] "
MODEL = ("model_name", "target_model_name")

# fmt: off
DURATION_BUCKETS = (
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20,
    30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600,
)
TPOT_BUCKETS = (
    0.0005, 0.00205, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.125, 0.15, 0.2, 0.3, 0.4, 0.5,
    0.6, 0.8, 1, 1.5, 2, 3, 4.5, 6, 12, 18, 24, 30, 36, 48, 60, 90, 120, 180, 270, 360,
)
PREDICTION_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)
REQUEST_SIZE_BUCKETS = tuple(float(2**i) for i in range(6, 31))  # 64 B .. 1 GiB
# Upstream's 32778 (not 32768) is kept: bucket bounds are part of the series names.
RESPONSE_SIZE_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536)
INPUT_TOKEN_BUCKETS = (*RESPONSE_SIZE_BUCKETS, 131072, 262144, 524288, 1048576)
OUTPUT_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
NTPOT_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)
SCHEDULER_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
HIT_RATIO_BUCKETS = tuple(i / 10 for i in range(11))
HIT_BYTES_BUCKETS = (0, *(2**i for i in range(4, 17)))

# name, type, help (without the stability prefix), labels, buckets
_SPECS: tuple[tuple[str, str, str, tuple[str, ...], Sequence[float]], ...] = (
    ("inference_objective_request_total", "counter", "Requests per model and target model.", MODEL, ()),
    ("inference_objective_request_error_total", "counter", "Request errors per model, target model and error code.", (*MODEL, "error_code"), ()),
    ("inference_objective_request_duration_seconds", "histogram", "Request latency in seconds per model and target model.", MODEL, DURATION_BUCKETS),
    ("inference_objective_request_sizes", "histogram", "Request body sizes in bytes per model and target model.", MODEL, REQUEST_SIZE_BUCKETS),
    ("inference_objective_response_sizes", "histogram", "Response body sizes in bytes per model and target model.", MODEL, RESPONSE_SIZE_BUCKETS),
    ("inference_objective_input_tokens", "histogram", "Prompt tokens per request, per model and target model.", MODEL, INPUT_TOKEN_BUCKETS),
    ("inference_objective_output_tokens", "histogram", "Generated tokens per request, per model and target model.", MODEL, OUTPUT_TOKEN_BUCKETS),
    ("inference_objective_prompt_cached_tokens", "histogram", "Prompt tokens served from the prefix cache, per model and target model.", MODEL, INPUT_TOKEN_BUCKETS),
    ("inference_objective_running_requests", "gauge", "Requests in flight per model.", ("model_name",), ()),
    ("inference_objective_normalized_time_per_output_token_seconds", "histogram", "Request latency divided by output tokens, in seconds.", MODEL, NTPOT_BUCKETS),
    ("inference_objective_request_ttft_seconds", "histogram", "Time to first token in seconds.", MODEL, DURATION_BUCKETS),
    ("inference_objective_request_predicted_ttft_seconds", "histogram", "Predicted time to first token in seconds.", MODEL, DURATION_BUCKETS),
    ("inference_objective_request_tpot_seconds", "histogram", "Time per output token in seconds.", MODEL, TPOT_BUCKETS),
    ("inference_objective_request_predicted_tpot_seconds", "histogram", "Predicted time per output token in seconds.", MODEL, TPOT_BUCKETS),
    ("inference_objective_request_ttft_prediction_duration_seconds", "histogram", "Time spent predicting TTFT, in seconds.", MODEL, PREDICTION_BUCKETS),
    ("inference_objective_request_tpot_prediction_duration_seconds", "histogram", "Time spent predicting TPOT, in seconds.", MODEL, PREDICTION_BUCKETS),
    ("inference_objective_inference_request_metric", "gauge", "Latest per-request latency and SLO values by type.", (*MODEL, "type"), ()),
    ("inference_objective_request_slo_violation_total", "counter", "SLO violations by type.", (*MODEL, "type"), ()),
    ("inference_pool_average_kv_cache_utilization", "gauge", "Average KV-cache utilisation of the pool's endpoints with fresh metrics.", ("name",), ()),
    ("inference_pool_average_queue_size", "gauge", "Average waiting-queue length of the pool's endpoints with fresh metrics.", ("name",), ()),
    ("inference_pool_ready_pods", "gauge", "Endpoints of the pool with fresh metrics.", ("name",), ()),
    ("inference_extension_scheduler_e2e_duration_seconds", "histogram", "Scheduling latency in seconds.", (), SCHEDULER_BUCKETS),
    ("inference_extension_scheduler_attempts_total", "counter", "Scheduling attempts by outcome.", ("status",), ()),
    ("inference_extension_plugin_duration_seconds", "histogram", "Plugin latency in seconds per extension point, plugin type and name.", ("extension_point", "plugin_type", "plugin_name"), SCHEDULER_BUCKETS),
    ("inference_extension_prefix_indexer_size", "gauge", "Entries in the approximate prefix index.", (), ()),
    ("inference_extension_prefix_indexer_hit_ratio", "histogram", "Matched share of the prompt's prefix blocks per lookup.", (), HIT_RATIO_BUCKETS),
    ("inference_extension_prefix_indexer_hit_bytes", "histogram", "Matched prefix length in bytes per lookup.", (), HIT_BYTES_BUCKETS),
    ("inference_extension_info", "gauge", "Build information of the endpoint picker.", ("commit", "build_ref"), ()),
    ("inference_extension_model_rewrite_decisions_total", "counter", "Model rewrite decisions per rewrite, model and target.", ("model_rewrite_name", "model_name", "target_model"), ()),
    ("llm_d_inference_scheduler_pd_decision_total", "counter", "Prefill/decode decisions per model and decision type.", ("model_name", "decision_type"), ()),
)
# fmt: on


def is_stale(metrics: EndpointMetrics, now: float, threshold: float) -> bool:
    """The one staleness rule: no successful scrape within `threshold` seconds."""
    return now - metrics.update_time > threshold


@dataclass(frozen=True, slots=True)
class PoolGauges:
    """The `inference_pool_*` values (spec §4.3)."""

    average_kv_cache_utilization: float
    average_queue_size: float
    ready_pods: int


def pool_gauges(endpoints: Iterable[Endpoint], now: float, staleness: float) -> PoolGauges:
    """Averages over endpoints with fresh metrics; the ready count is of those too."""
    fresh = [e.metrics for e in endpoints if not is_stale(e.metrics, now, staleness)]
    if not fresh:
        return PoolGauges(0.0, 0.0, 0)
    n = len(fresh)
    return PoolGauges(
        sum(m.kv_cache_usage_percent for m in fresh) / n,
        sum(m.waiting_queue_size for m in fresh) / n,
        n,
    )


class EppMetrics:
    """The EPP registry and the calls that update it."""

    def __init__(
        self,
        pool_name: str,
        endpoints: Callable[[], Iterable[Endpoint]] = tuple,
        commit: str = "",
        build_ref: str = "",
    ) -> None:
        self.pool_name = pool_name
        self.registry = Registry()
        self.f: dict[str, Family] = {}
        for name, kind, help_text, labels, buckets in _SPECS:
            self.f[name] = self.registry.add(Family(name, kind, ALPHA + help_text, labels, buckets))
        self._endpoints = endpoints
        self.registry.add(
            CollectorFamily(
                "inference_pool_per_pod_queue_size",
                "gauge",
                ALPHA + "Waiting-queue length of each model-server endpoint of the pool.",
                ("name", "model_server_pod"),
                self._per_pod_queue,
            )
        )
        self.f["inference_extension_info"].gauge(commit, build_ref).set(1)
        self.set_pool_gauges(PoolGauges(0.0, 0.0, 0))  # present from the first scrape on

    def _per_pod_queue(self) -> list[tuple[tuple[str, ...], float]]:
        return [((self.pool_name, e.name), e.metrics.waiting_queue_size) for e in self._endpoints()]

    def render(self) -> bytes:
        """The `/metrics` body (content type `CONTENT_TYPE`)."""
        return self.registry.render()

    # ------------------------------------------------------------ per request

    def record_request(self, model: str, target: str, request_bytes: int) -> None:
        """A request was scheduled: count it and its size."""
        self.f["inference_objective_request_total"].counter(model, target).inc()
        self.f["inference_objective_request_sizes"].histogram(model, target).observe(request_bytes)

    def record_error(self, model: str, target: str, error_code: str) -> None:
        """A request failed with this error code (e.g. `BadRequest`, `ServiceUnavailable`)."""
        self.f["inference_objective_request_error_total"].counter(model, target, error_code).inc()

    def running_delta(self, model: str, delta: int) -> None:
        """A request started (+1) or finished (−1)."""
        gauge = self.f["inference_objective_running_requests"].gauge(model)
        gauge.set(gauge.value + delta)

    def record_response(
        self,
        model: str,
        target: str,
        duration: float,
        response_bytes: int,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_tokens: int = 0,
    ) -> None:
        """A response completed: latency, size and usage (tokens only when reported)."""
        f = self.f
        f["inference_objective_request_duration_seconds"].histogram(model, target).observe(duration)
        f["inference_objective_response_sizes"].histogram(model, target).observe(response_bytes)
        if input_tokens > 0:
            f["inference_objective_input_tokens"].histogram(model, target).observe(input_tokens)
        if output_tokens > 0:
            f["inference_objective_output_tokens"].histogram(model, target).observe(output_tokens)
            self.record_ntpot(model, target, duration, output_tokens)
        if cached_tokens > 0:
            cached = f["inference_objective_prompt_cached_tokens"]
            cached.histogram(model, target).observe(cached_tokens)

    def record_ntpot(self, model: str, target: str, duration: float, output_tokens: int) -> None:
        """Normalized time per output token: whole request latency / output tokens.

        As upstream, only for a positive latency and at least one output token.
        """
        if output_tokens > 0 and duration > 0:
            ntpot = self.f["inference_objective_normalized_time_per_output_token_seconds"]
            ntpot.histogram(model, target).observe(duration / output_tokens)

    # ------------------------------------------------------------ scheduler

    def record_scheduling(self, duration: float, success: bool) -> None:
        """One scheduling cycle: its latency and outcome."""
        self.f["inference_extension_scheduler_e2e_duration_seconds"].histogram().observe(duration)
        status = "success" if success else "failure"
        self.f["inference_extension_scheduler_attempts_total"].counter(status).inc()

    def record_plugin(
        self, extension_point: str, plugin_type: str, plugin_name: str, duration: float
    ) -> None:
        """One plugin call at an extension point (`Filter`, `Scorer`, `PreRequest`, ...)."""
        family = self.f["inference_extension_plugin_duration_seconds"]
        family.histogram(extension_point, plugin_type, plugin_name).observe(duration)

    def record_prefix_lookup(self, hit_ratio: float, hit_bytes: int, index_size: int) -> None:
        """One approximate-prefix lookup and the index size after it."""
        self.f["inference_extension_prefix_indexer_hit_ratio"].histogram().observe(hit_ratio)
        self.f["inference_extension_prefix_indexer_hit_bytes"].histogram().observe(hit_bytes)
        self.f["inference_extension_prefix_indexer_size"].gauge().set(index_size)

    def record_model_rewrite(self, rewrite_name: str, model: str, target: str) -> None:
        """An InferenceModelRewrite decision."""
        family = self.f["inference_extension_model_rewrite_decisions_total"]
        family.counter(rewrite_name, model, target).inc()

    def record_pd_decision(self, model: str, decision_type: str) -> None:
        """A prefill/decode decision (`unknown` model when empty)."""
        family = self.f["llm_d_inference_scheduler_pd_decision_total"]
        family.counter(model or "unknown", decision_type).inc()

    # ------------------------------------------------------------ pool

    def set_pool_gauges(self, gauges: PoolGauges) -> None:
        """The periodic pool summary (spec §4.3)."""
        name = self.pool_name
        f = self.f
        kv = gauges.average_kv_cache_utilization
        f["inference_pool_average_kv_cache_utilization"].gauge(name).set(kv)
        f["inference_pool_average_queue_size"].gauge(name).set(gauges.average_queue_size)
        f["inference_pool_ready_pods"].gauge(name).set(gauges.ready_pods)


async def pool_gauge_loop(
    metrics: EppMetrics,
    endpoints: Callable[[], Iterable[Endpoint]],
    clock: Clock,
    interval: float,
    staleness: float,
) -> None:
    """Every `--refresh-prometheus-metrics-interval`, refresh the pool gauges (until cancelled)."""
    while True:
        metrics.set_pool_gauges(pool_gauges(endpoints(), clock.now(), staleness))
        await clock.sleep(interval)
