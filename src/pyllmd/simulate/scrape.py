"""What Prometheus would scrape from the simulated pods, on the virtual clock.

Each pod's `/metrics` is rebuilt from its engine (the gauges) and from the requests it has
finished (the counters and histograms), with the live simulator's metric names, labels and
buckets (`sim/metric_table.py`), and the target labels a cluster's scrape adds (`namespace`,
`pod`). `scrape` appends one scrape of every pod to a `promql.SeriesStore`, with Prometheus'
staleness markers for the series of a pod that is gone, so the autoscaler's own PromQL runs
over them (`promql.Evaluator`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from pyllmd.core.metricset import Registry, go_float
from pyllmd.sim.batch.scheduler import Engine, Request
from pyllmd.sim.metric_table import (
    REQUEST_LATENCY_BUCKETS,
    TPOT_BUCKETS,
    TTFT_BUCKETS,
    build_125_buckets,
)
from pyllmd.simulate.promql.store import Labels, SeriesStore, labels_of, to_ms

SCRAPE_INTERVAL = 15.0  # Prometheus' (and a ServiceMonitor's) default


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.total += value
        self.n += 1

    def observe_all(self, values: np.ndarray) -> None:
        """Many observations at once (a request's inter-token gaps are one per token)."""
        if not len(values):
            return
        where = np.searchsorted(np.asarray(self.buckets), values, side="left")
        per_bucket = np.bincount(where, minlength=len(self.buckets) + 1)
        for i in range(len(self.counts)):
            self.counts[i] += int(per_bucket[i])
        self.total += float(values.sum())
        self.n += len(values)

    def samples(self, name: str, labels: Mapping[str, str]) -> Iterable[tuple[Labels, float]]:
        running = 0
        for le, c in zip(self.buckets, self.counts, strict=True):
            running += c
            yield labels_of(f"{name}_bucket", {**labels, "le": go_float(le)}), float(running)
        yield labels_of(f"{name}_bucket", {**labels, "le": "+Inf"}), float(self.n)
        yield labels_of(f"{name}_sum", labels), self.total
        yield labels_of(f"{name}_count", labels), float(self.n)


class PodMetrics:
    """One pod's counters and histograms, from the requests it finished."""

    def __init__(self, model: str, max_model_len: int) -> None:
        tokens = tuple(build_125_buckets(max_model_len))
        self.model = model
        self.prompt_tokens = 0.0
        self.generation_tokens = 0.0
        self.success: dict[str, float] = {}
        self.hist = {
            "vllm:time_to_first_token_seconds": Histogram(tuple(TTFT_BUCKETS)),
            "vllm:inter_token_latency_seconds": Histogram(tuple(TPOT_BUCKETS)),
            "vllm:e2e_request_latency_seconds": Histogram(tuple(REQUEST_LATENCY_BUCKETS)),
            "vllm:request_queue_time_seconds": Histogram(tuple(REQUEST_LATENCY_BUCKETS)),
            "vllm:request_prompt_tokens": Histogram(tokens),
            "vllm:request_generation_tokens": Histogram(tokens),
        }
        self.gaps: list[np.ndarray] = []  # inter-token gaps not yet counted (at the scrape)

    def finished(self, req: Request, received: float, done: float, reason: str = "length") -> None:
        """A request ended: received by the server at `received`, its last token at `done`
        (both on the virtual clock; the engine's own times are in `req`)."""
        self.prompt_tokens += req.prompt_len
        self.generation_tokens += req.output_len
        self.success[reason] = self.success.get(reason, 0.0) + 1
        h = self.hist
        if req.first_token is not None:
            h["vllm:time_to_first_token_seconds"].observe(req.first_token - received)
        times = req.token_times
        if times is not None and len(times) > 1:
            self.gaps.append(np.diff(np.asarray(times)))
        h["vllm:e2e_request_latency_seconds"].observe(done - received)
        if req.admitted is not None:
            h["vllm:request_queue_time_seconds"].observe(max(0.0, req.admitted - req.arrival))
        h["vllm:request_prompt_tokens"].observe(req.prompt_len)
        h["vllm:request_generation_tokens"].observe(req.output_len)

    def samples(self, engine: Engine) -> list[tuple[Labels, float]]:
        """The pod's `/metrics` now: the engine's gauges, then the counters and histograms."""
        if self.gaps:
            self.hist["vllm:inter_token_latency_seconds"].observe_all(np.concatenate(self.gaps))
            self.gaps = []
        m = {"model_name": self.model}
        kv = engine.kv
        out = [
            (labels_of("vllm:num_requests_running", m), float(len(engine.running))),
            (
                labels_of("vllm:num_requests_waiting", m),
                float(len(engine.waiting) + len(engine.loading)),
            ),
            (labels_of("vllm:kv_cache_usage_perc", m), kv.used / kv.size if kv.size else 0.0),
            (
                labels_of(
                    "vllm:cache_config_info",
                    {"block_size": str(engine.cfg.block_size), "num_gpu_blocks": str(kv.size)},
                ),
                1.0,
            ),
            (labels_of("vllm:prompt_tokens_total", m), self.prompt_tokens),
            (labels_of("vllm:generation_tokens_total", m), self.generation_tokens),
        ]
        for reason, count in sorted(self.success.items()):
            out.append(
                (labels_of("vllm:request_success_total", {**m, "finish_reason": reason}), count)
            )
        for name, hist in self.hist.items():
            out.extend(hist.samples(name, m))
        return out


def scrape(
    store: SeriesStore,
    t: float,
    namespace: str,
    pods: Mapping[str, tuple[PodMetrics, Engine]],
    seen: dict[str, set[Labels]],
) -> None:
    """One scrape of every pod at `t`; the series of pods no longer in `pods` (and series a
    pod stopped exposing) get staleness markers. `seen` keeps each pod's last series."""
    t_ms = to_ms(t)
    for pod, (metrics, engine) in pods.items():
        target = {"namespace": namespace, "pod": pod}
        seen[pod] = store.scrape(target, metrics.samples(engine), t_ms, seen.get(pod, set()))
    for gone in [p for p in seen if p not in pods]:
        for labels in seen.pop(gone):
            store.mark_stale(labels, t_ms)


def scrape_registry(
    store: SeriesStore, registry: Registry, t: float, target: Mapping[str, str],
    seen: set[Labels],
) -> set[Labels]:  # fmt: skip
    """One scrape of a server's own registry (the autoscaler's, the endpoint picker's) at `t`:
    its `namespace` label kept as `exported_namespace`, as Prometheus does when the target has
    one. Returns the series seen (pass them back next time, for the staleness markers)."""
    samples: list[tuple[Labels, float]] = []
    for name, labels, value in registry.samples():
        if "namespace" in labels:
            labels["exported_namespace"] = labels.pop("namespace")
        samples.append((labels_of(name, labels), value))
    return store.scrape(target, samples, to_ms(t), seen)


class Scraper:
    """Prometheus scraping the pods of a replay every `interval` seconds of virtual time into
    `store`; the pods' counters grow as the replay reports their finished requests."""

    def __init__(
        self, namespace: str, model: str, max_model_len: int, interval: float = SCRAPE_INTERVAL
    ) -> None:
        self.namespace, self.model, self.max_model_len = namespace, model, max_model_len
        self.interval = interval
        self.store = SeriesStore()
        self.next_time = 0.0
        self.metrics: dict[str, PodMetrics] = {}
        self.seen: dict[str, set[Labels]] = {}
        self.also: list[Callable[[float], None]] = []  # other targets scraped at the same ticks

    def _pod(self, pod: str) -> PodMetrics:
        m = self.metrics.get(pod)
        if m is None:
            m = self.metrics[pod] = PodMetrics(self.model, self.max_model_len)
        return m

    def finished(self, pod: str, req: Request, received: float, done: float) -> None:
        self._pod(pod).finished(req, received, done)

    def scrape(self, t: float, engines: Mapping[str, Engine]) -> None:
        pods = {p: (self._pod(p), e) for p, e in engines.items()}
        scrape(self.store, t, self.namespace, pods, self.seen)
        for other in self.also:
            other(t)
        self.next_time = t + self.interval
