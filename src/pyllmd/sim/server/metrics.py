"""The simulator's `vllm:*` Prometheus metrics (spec §6), on a private registry.

Metrics live in `pyllmd.core.metricset` (lock-free, rendered like the Go
client); `metric_table` declares them (`metric_specs`, one table that the golden
test pins); this module wires the per-request calls of the HTTP shell to them, and
realises `--fake-metrics`.

Exposition choices, all to look like the Go simulator to a scraper:
- Always the classic text format (`CONTENT_TYPE`), whatever `Accept` says:
  OpenMetrics exposition would rewrite `vllm:` to `vllm_` (prometheus_client
  does), and Prometheus asks for OpenMetrics by default.
- No `_created` series (the Go client has none) and no HELP/TYPE lines for a
  metric without series; numbers as Go prints them (`1`, not `1.0`).
- Label names of each metric are declared in sorted order, the order the Go
  client prints them in.
- Histograms and the token counters get their only child (`model_name`) lazily
  on first use, so no series exists before the first observation; after that
  the bound child is cached, keeping the per-token path to one call.
- `vllm:request_success_total` is the exception: one series per finish reason
  (`FINISH_REASONS`) exists from start-up at 0, as vLLM pre-creates its
  `finished_reason` series. Upstream's simulator creates a series at its first
  success, already at 1, so `increase()` over a fresh pod missed the first
  requests.

Fake bucket counts are added to each bucket at once (upstream observes each
sample; the exposed result is the same).

Beyond upstream: `vllm:engine_sleep_state` (vLLM's own gauge, same labels and
values) says whether the engine sleeps; upstream's simulator has no such series.
`vllm:cache_config_info` keeps upstream's two labels: vLLM's series carries the
CacheConfig fields and `engine`, but no `model_name`.

Deliberate fix vs upstream: upstream writes the `request-generation-tokens`
fake counts into `vllm:request_params_max_tokens` and the
`request-params-max-tokens` counts into `vllm:request_generation_tokens`. Here
each key fills the histogram of its own name.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence

from pyllmd.core.metricset import (
    CONTENT_TYPE,
    CounterChild,
    Family,
    GaugeChild,
    HistogramChild,
    Registry,
)
from pyllmd.sim.config import FakeMetrics, SimConfig
from pyllmd.sim.engine.lora import LoraRuntime
from pyllmd.sim.engine.sleep import SLEEP_STATES, SleepState
from pyllmd.sim.engine.vocab import FINISH_REASONS
from pyllmd.sim.metric_table import (
    ENGINE,
    REQUEST_LATENCY_BUCKETS,
    TPOT_BUCKETS,
    TTFT_BUCKETS,
    LazyCounter,
    LazyHistogram,
    ReadGauge,
    build_125_buckets,
    estimate_token_total,
    fill_histogram,
    metric_specs,
)

# The series the hot paths update directly, taken from their wrappers at first use.
FirstSeries = tuple[HistogramChild, HistogramChild]
GapSeries = tuple[HistogramChild, HistogramChild, HistogramChild]
FinishSeries = tuple[
    tuple[HistogramChild, HistogramChild] | None,
    HistogramChild,
    HistogramChild,
    HistogramChild,
    CounterChild,
    CounterChild,
]


class SimMetrics:
    """All `vllm:*` metrics of one simulator instance; methods are called by the HTTP shell."""

    CONTENT_TYPE = CONTENT_TYPE

    def __init__(self, cfg: SimConfig, wall: Callable[[], float]) -> None:
        self._wall = wall
        self._model = cfg.display_model
        self._max_lora = str(cfg.max_loras)
        self._fake = cfg.fake_metrics
        self._frozen = cfg.fake_metrics is not None
        self.token_buckets: tuple[float, ...] = tuple(build_125_buckets(cfg.max_model_len))
        self.registry = Registry()
        m = {
            s.name: self.registry.add(Family(s.name, s.kind, s.help, s.labels, s.buckets))
            for s in metric_specs(cfg.max_model_len)
        }
        self._bind_series(m)
        self._success_family = m["vllm:request_success_total"]
        self._success: dict[str, CounterChild] = {}
        self._first_series: FirstSeries | None = None
        self._gap_series: GapSeries | None = None
        self._finish_series: FinishSeries | None = None
        for reason in FINISH_REASONS:  # every reason from start-up, at 0 (vLLM does the same)
            self._success_child(reason)
        m["vllm:cache_config_info"].gauge(str(cfg.block_size), str(cfg.kv_cache_size)).set(1)
        sleep = m["vllm:engine_sleep_state"]
        self._sleep_state = {s: sleep.gauge(ENGINE, self._model, s) for s in SLEEP_STATES}
        self.set_sleep_state(SleepState())
        self.lora_version = 0
        if self._fake is None or not self._fake.loras:
            self._set_lora_series("", "")
        if self._fake is not None:
            self._apply_fake(self._fake)

    def _bind_series(self, m: dict[str, Family]) -> None:
        """The gauges, and the lazily created histograms and token counters, of `model_name`."""
        model = self._model

        def hist(name: str) -> LazyHistogram:
            return LazyHistogram(m[name], model)

        def counter(name: str) -> LazyCounter:
            return LazyCounter(m[name], model)

        self._lora_info = m["vllm:lora_requests_info"]
        self._running_family = m["vllm:num_requests_running"]
        self._waiting_family = m["vllm:num_requests_waiting"]
        self._running: GaugeChild = self._running_family.gauge(model)
        self._waiting: GaugeChild = self._waiting_family.gauge(model)
        self._kv_usage: GaugeChild = m["vllm:kv_cache_usage_perc"].gauge(model)
        self._ttft = hist("vllm:time_to_first_token_seconds")
        self._tpot = hist("vllm:time_per_output_token_seconds")
        self._itl = hist("vllm:inter_token_latency_seconds")
        self._e2e = hist("vllm:e2e_request_latency_seconds")
        self._queue = hist("vllm:request_queue_time_seconds")
        self._inference = hist("vllm:request_inference_time_seconds")
        self._prefill = hist("vllm:request_prefill_time_seconds")
        self._decode = hist("vllm:request_decode_time_seconds")
        self._prompt_hist = hist("vllm:request_prompt_tokens")
        self._gen_hist = hist("vllm:request_generation_tokens")
        self._max_gen_hist = hist("vllm:max_num_generation_tokens")
        self._max_tokens_hist = hist("vllm:request_params_max_tokens")
        self._prompt_total = counter("vllm:prompt_tokens_total")
        self._gen_total = counter("vllm:generation_tokens_total")

    # -- gauges -------------------------------------------------------------

    def read_queue_gauges(self, running: Callable[[], int], waiting: Callable[[], int]) -> None:
        """Take the running and waiting gauges from these readers at every scrape, instead
        of `set_running` / `set_waiting` calls (no-op under --fake-metrics: they stay frozen)."""
        if self._frozen:
            return
        key = (self._model,)
        self._running = self._running_family.children[key] = ReadGauge(running)
        self._waiting = self._waiting_family.children[key] = ReadGauge(waiting)

    def set_running(self, n: int) -> None:
        """Requests being processed (frozen under --fake-metrics)."""
        if not self._frozen:
            self._running.value = n

    def set_waiting(self, n: int) -> None:
        """Waiting-queue length (frozen under --fake-metrics)."""
        if not self._frozen:
            self._waiting.value = n

    def set_kv_usage(self, v: float) -> None:
        """KV-cache usage fraction 0..1 (frozen under --fake-metrics)."""
        if not self._frozen:
            self._kv_usage.value = v

    def lora_info(self, running: Sequence[str], waiting: Sequence[str]) -> None:
        """Add/refresh the series for the current adapter sets, valued at the current time."""
        if not self._frozen:
            self._set_lora_series(",".join(running), ",".join(waiting))

    def publish_loras(self, loras: LoraRuntime) -> None:
        """Re-emit `vllm:lora_requests_info` if the adapters' requests changed since last call."""
        if loras.version != self.lora_version:
            self.lora_version = loras.version
            self.lora_info(loras.running, loras.waiting)

    def set_sleep_state(self, state: SleepState) -> None:
        """`vllm:engine_sleep_state` (real even under --fake-metrics, which has no sleep key)."""
        for name, value in state.gauge().items():
            self._sleep_state[name].value = value

    def _set_lora_series(self, running: str, waiting: str) -> None:
        now = float(int(self._wall()))  # whole seconds, as upstream
        self._lora_info.gauge(self._max_lora, running, waiting).set(now)

    # -- timing histograms (suppressed under --fake-metrics) ------------------

    def observe_ttft(self, s: float) -> None:
        """The computed time to first token of a request."""
        if not self._frozen:
            self._ttft.observe(s)

    def observe_itl(self, s: float) -> None:
        """One computed inter-token delay (TPOT and inter-token-latency histograms)."""
        if not self._frozen:
            self._tpot.observe(s)
            self._itl.observe(s)

    def observe_itl_many(self, s: float, n: int) -> None:
        """`n` equal inter-token delays at once."""
        if not self._frozen:
            self._tpot.observe_many(s, n)
            self._itl.observe_many(s, n)

    def observe_e2e(self, s: float) -> None:
        """Scheduler hand-off to response finished."""
        if not self._frozen:
            self._e2e.observe(s)

    def observe_queue_time(self, s: float) -> None:
        """Time a queued request spent waiting."""
        if not self._frozen:
            self._queue.observe(s)

    def observe_inference_time(self, s: float) -> None:
        """Worker start to response finished."""
        if not self._frozen:
            self._inference.observe(s)

    def observe_prefill_time(self, s: float) -> None:
        """Measured duration of the TTFT wait."""
        if not self._frozen:
            self._prefill.observe(s)

    def observe_decode_time(self, s: float) -> None:
        """Measured duration of the inter-token waits."""
        if not self._frozen:
            self._decode.observe(s)

    def observe_instant(self, ttft: float, completion_tokens: int) -> None:
        """The timing samples of a reply that waits for nothing (TTFT and every
        inter-token delay 0): what the waits would record, their durations being 0.

        The hot path: the series' counts are updated here, without method calls. A
        series is created by its first observation, as through `observe_ttft` & co.
        """
        if self._frozen:
            return
        first = self._first_series
        if first is None:
            first = self._first_series = (self._ttft(), self._prefill())
        ttft_h, prefill = first
        ttft_h.counts[bisect_left(ttft_h.bounds, ttft)] += 1
        ttft_h.sum += ttft
        prefill.counts[bisect_left(prefill.bounds, 0.0)] += 1
        if completion_tokens > 1:
            gaps = self._gap_series
            if gaps is None:
                gaps = self._gap_series = (self._tpot(), self._itl(), self._decode())
            tpot, itl, decode = gaps
            tpot.counts[bisect_left(tpot.bounds, 0.0)] += completion_tokens - 1
            itl.counts[bisect_left(itl.bounds, 0.0)] += completion_tokens - 1
            decode.counts[bisect_left(decode.bounds, 0.0)] += 1

    # -- per successful request (never suppressed, as upstream) ---------------

    def record_success(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        max_tokens: int | None,
        finish_reason: str,
    ) -> None:
        """Token histograms and counters of one successful request."""
        self._prompt_hist.observe(prompt_tokens)
        self._gen_hist.observe(completion_tokens)
        self._max_gen_hist.observe(completion_tokens)
        if max_tokens is not None:
            self._max_tokens_hist.observe(max_tokens)
        self._prompt_total.inc(prompt_tokens)
        self._gen_total.inc(completion_tokens)
        self._success_child(finish_reason).inc()

    def finish(
        self,
        e2e: float,
        inference: float,
        prompt_tokens: int,
        completion_tokens: int,
        max_tokens: int | None,
        finish_reason: str,
    ) -> None:
        """A successful request: `observe_e2e`, `observe_inference_time` and
        `record_success` in one call, the series updated without method calls (the
        hot path). The series are created at the first call, which observes them all."""
        series = self._finish_series
        if series is None:
            timing = None if self._frozen else (self._e2e(), self._inference())
            series = self._finish_series = (
                timing,
                self._prompt_hist(),
                self._gen_hist(),
                self._max_gen_hist(),
                self._prompt_total(),
                self._gen_total(),
            )
        timing, prompt, gen, max_gen, prompt_total, gen_total = series
        assert gen.bounds is max_gen.bounds or gen.bounds == max_gen.bounds
        if timing is not None:
            e2e_h, inference_h = timing
            e2e_h.counts[bisect_left(e2e_h.bounds, e2e)] += 1
            e2e_h.sum += e2e
            inference_h.counts[bisect_left(inference_h.bounds, inference)] += 1
            inference_h.sum += inference
        prompt.counts[bisect_left(prompt.bounds, prompt_tokens)] += 1
        prompt.sum += prompt_tokens
        index = bisect_left(gen.bounds, completion_tokens)  # both token-bucket series
        gen.counts[index] += 1
        gen.sum += completion_tokens
        max_gen.counts[index] += 1
        max_gen.sum += completion_tokens
        if max_tokens is not None:
            self._max_tokens_hist.observe(max_tokens)
        prompt_total.value += prompt_tokens
        gen_total.value += completion_tokens
        (self._success.get(finish_reason) or self._success_child(finish_reason)).value += 1

    def _success_child(self, reason: str) -> CounterChild:
        child = self._success.get(reason)
        if child is None:
            child = self._success[reason] = self._success_family.counter(reason, self._model)
        return child

    # -- exposition -----------------------------------------------------------

    def render(self) -> bytes:
        """The `/metrics` body, in the classic text format (`CONTENT_TYPE`)."""
        return self.registry.render()

    # -- --fake-metrics -------------------------------------------------------

    def _apply_fake(self, fake: FakeMetrics) -> None:
        """Set the reported values of spec §6.4 once, at start."""
        self._running.set(fake.running_requests)
        self._waiting.set(fake.waiting_requests)
        self._kv_usage.set(fake.kv_cache_usage)
        for lora in fake.loras:
            self._lora_info.gauge(self._max_lora, lora.running, lora.waiting).set(lora.timestamp)
        lat, tok = REQUEST_LATENCY_BUCKETS, self.token_buckets
        fills = (
            (fake.ttft_buckets_values, self._ttft, TTFT_BUCKETS),
            (fake.tpot_buckets_values, self._tpot, TPOT_BUCKETS),
            (fake.tpot_buckets_values, self._itl, TPOT_BUCKETS),
            (fake.e2erl_buckets_values, self._e2e, lat),
            (fake.queue_time_buckets_values, self._queue, lat),
            (fake.inf_time_buckets_values, self._inference, lat),
            (fake.prefill_time_buckets_values, self._prefill, lat),
            (fake.decode_time_buckets_values, self._decode, lat),
            (fake.request_prompt_tokens, self._prompt_hist, tok),
            (fake.request_generation_tokens, self._gen_hist, tok),
            (fake.request_params_max_tokens, self._max_tokens_hist, tok),
            (fake.request_max_generation_tokens, self._max_gen_hist, tok),
        )
        for counts, child, bounds in fills:
            if counts is not None:
                fill_histogram(child(), bounds, counts)
        # A token counter starts only with its histogram; default: estimate from the buckets.
        totals = (
            (fake.request_prompt_tokens, fake.total_prompt_tokens, self._prompt_total),
            (fake.request_generation_tokens, fake.total_generation_tokens, self._gen_total),
        )
        for counts, total, counter in totals:
            if counts is not None:
                counter().inc(estimate_token_total(counts, tok) if total is None else total)
        if fake.request_success_total is not None:
            given = fake.request_success_total
            for reason in (*FINISH_REASONS, *(r for r in given if r not in FINISH_REASONS)):
                self._success_child(reason).inc(given.get(reason, 0))
