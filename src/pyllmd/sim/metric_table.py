"""The table of the simulator's `vllm:*` metrics and the series helpers of `metrics`.

`metric_specs` declares every family (name, type, labels, help, buckets) in
registration order; a golden test pins it. The helpers create a series on its first
observation (`LazyHistogram`, `LazyCounter`), read a gauge at scrape time
(`ReadGauge`), and compute what `--fake-metrics` reports (`estimate_token_total`,
`fill_histogram`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyllmd.core.metricset import CounterChild, Family, GaugeChild, HistogramChild

TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
TPOT_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
    50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip

MODEL = ("model_name",)
# vLLM's engine index label of vllm:engine_sleep_state; every rank here is one engine.
ENGINE = "0"


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric: exposed name, Prometheus type, label names, buckets."""

    name: str
    kind: str  # "gauge" | "counter" | "histogram"
    labels: tuple[str, ...]
    help: str
    buckets: tuple[float, ...] = ()


def build_125_buckets(max_value: int) -> list[float]:
    """1, 2, 5, 10, 20, 50, ... up to and including `max_value` (vLLM's token buckets)."""
    buckets: list[float] = []
    scale = 1
    while max_value > 0:
        for mantissa in (1, 2, 5):
            if mantissa * scale > max_value:
                return buckets
            buckets.append(float(mantissa * scale))
        scale *= 10
    return buckets


def metric_specs(max_model_len: int) -> tuple[MetricSpec, ...]:
    """Every metric of spec §6, in registration order: gauges, histograms, counters."""
    tokens = tuple(build_125_buckets(max_model_len))
    c = "counter"
    return (
        *_gauge_specs(),
        *_histogram_specs(tokens),
        MetricSpec("vllm:prompt_tokens_total", c, MODEL, "Prompt tokens processed."),
        MetricSpec("vllm:generation_tokens_total", c, MODEL, "Tokens generated."),
        MetricSpec(
            "vllm:request_success_total",
            c,
            ("finish_reason", "model_name"),
            "Successfully processed requests.",
        ),
    )


def _gauge_specs() -> tuple[MetricSpec, ...]:
    g = "gauge"
    return (
        MetricSpec(
            "vllm:lora_requests_info",
            g,
            ("max_lora", "running_lora_adapters", "waiting_lora_adapters"),
            "LoRA adapters with running / waiting requests; value is the update time.",
        ),
        MetricSpec("vllm:num_requests_running", g, MODEL, "Requests being processed now."),
        MetricSpec("vllm:num_requests_waiting", g, MODEL, "Requests in the waiting queue."),
        MetricSpec("vllm:kv_cache_usage_perc", g, MODEL, "Fraction of KV-cache blocks in use."),
        MetricSpec(
            "vllm:cache_config_info",
            g,
            ("block_size", "num_gpu_blocks"),
            "KV-cache configuration; value is always 1.",
        ),
        MetricSpec(
            "vllm:engine_sleep_state",
            g,
            ("engine", "model_name", "sleep_state"),
            "Whether the engine sleeps: awake is 1 when awake, weights_offloaded is 1 "
            "after a level-1 sleep, discard_all is 1 after a level-2 sleep.",
        ),
    )


def _histogram_specs(tokens: tuple[float, ...]) -> tuple[MetricSpec, ...]:
    lat = REQUEST_LATENCY_BUCKETS
    h = "histogram"
    return (
        MetricSpec(
            "vllm:time_to_first_token_seconds", h, MODEL, "Time to first token.", TTFT_BUCKETS
        ),
        MetricSpec(
            "vllm:time_per_output_token_seconds", h, MODEL, "Delay per output token.", TPOT_BUCKETS
        ),
        MetricSpec(
            "vllm:inter_token_latency_seconds", h, MODEL, "Delay between tokens.", TPOT_BUCKETS
        ),
        MetricSpec(
            "vllm:e2e_request_latency_seconds", h, MODEL, "End-to-end request latency.", lat
        ),
        MetricSpec(
            "vllm:request_queue_time_seconds", h, MODEL, "Time spent waiting in queue.", lat
        ),
        MetricSpec("vllm:request_inference_time_seconds", h, MODEL, "Time spent running.", lat),
        MetricSpec("vllm:request_prefill_time_seconds", h, MODEL, "Time spent in prefill.", lat),
        MetricSpec("vllm:request_decode_time_seconds", h, MODEL, "Time spent in decode.", lat),
        MetricSpec("vllm:request_prompt_tokens", h, MODEL, "Prompt tokens per request.", tokens),
        MetricSpec(
            "vllm:request_generation_tokens", h, MODEL, "Generated tokens per request.", tokens
        ),
        MetricSpec(
            "vllm:max_num_generation_tokens", h, MODEL, "Most tokens of one choice.", tokens
        ),
        MetricSpec("vllm:request_params_max_tokens", h, MODEL, "The max_tokens parameter.", tokens),
    )


def estimate_token_total(counts: Sequence[int], buckets: Sequence[float]) -> int:
    """Upstream's default for a fake token counter: Σ count × bucket midpoint.

    The first bucket's lower bound is 0; past the last bound the upper bound is
    twice the lower one. Each bucket's product is truncated to an integer.
    """
    if not counts or not buckets:
        return 0
    total, lower = 0, 0.0
    for i, count in enumerate(counts):
        if count == 0:
            if i < len(buckets):
                lower = buckets[i]
            continue
        upper = buckets[i] if i < len(buckets) else lower * 2.0
        total += int(count * ((lower + upper) / 2.0))
        lower = upper
    return total


class LazyHistogram:
    """A histogram series created on its first observation (no series before it).

    `observe` / `observe_many` are instance slots: the first call creates the series
    and puts the series' own bound methods there, so later calls go straight to it.
    """

    __slots__ = ("_family", "_values", "_child", "observe", "observe_many")

    def __init__(self, family: Family, *values: str) -> None:
        self._family = family
        self._values = values
        self._child: HistogramChild | None = None
        self.observe: Callable[[float], None] = self._first_observe
        self.observe_many: Callable[[float, int], None] = self._first_observe_many

    def __call__(self) -> HistogramChild:
        child = self._child
        if child is None:
            child = self._child = self._family.histogram(*self._values)
            self.observe = child.observe
            self.observe_many = child.observe_many
        return child

    def _first_observe(self, value: float) -> None:
        self().observe(value)

    def _first_observe_many(self, value: float, n: int) -> None:
        self().observe_many(value, n)


class LazyCounter:
    """A counter series created on its first increment (no series before it); `inc`
    is rebound to the series' own method like `LazyHistogram.observe`."""

    __slots__ = ("_family", "_values", "_child", "inc")

    def __init__(self, family: Family, *values: str) -> None:
        self._family = family
        self._values = values
        self._child: CounterChild | None = None
        self.inc: Callable[[float], None] = self._first_inc

    def __call__(self) -> CounterChild:
        child = self._child
        if child is None:
            child = self._child = self._family.counter(*self._values)
            self.inc = child.inc
        return child

    def _first_inc(self, amount: float = 1.0) -> None:
        self().inc(amount)


class ReadGauge(GaugeChild):
    """A gauge series whose value is read from its source when rendered, so the hot
    path does not push it on every change."""

    __slots__ = ("read",)

    def __init__(self, read: Callable[[], float]) -> None:
        self.read = read

    @property
    def value(self) -> float:
        return float(self.read())

    @value.setter
    def value(self, value: float) -> None:
        self.read = lambda: value


def fill_histogram(hist: HistogramChild, bounds: Sequence[float], counts: Sequence[int]) -> None:
    """Add counts[i] samples at bucket i's upper bound (past the last: last bound + 1)."""
    if not bounds:
        return
    for i, count in enumerate(counts):
        hist.observe_many(bounds[i] if i < len(bounds) else bounds[-1] + 1, count)
