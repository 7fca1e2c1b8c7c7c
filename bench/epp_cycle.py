"""Figure (e): one EPP scheduling decision for 100 endpoints and 8k-token prompts.

The cycle is the one `pyllmd epp` runs per request: `PluginScheduler.schedule`
of `pyllmd.epp.extproc.adapters` (fresh-metrics filter, profile handler, scorers,
picker, PreRequest plugins, the scheduler/plugin/prefix metrics), over the
default config loaded by `load_config_text`. The 100 endpoints are a fixed
set (as `--static-endpoints` gives) whose synthetic metrics change every
`REFRESH_CYCLES` cycles, cycling through `SNAPSHOTS` pre-built snapshots, as
scrapes would change them (with one fixed snapshot every request would go to
the same endpoint); a `VirtualClock` keeps them all fresh. The
prompts are ~32 KB completions prompts: a shared 8 KB "system prompt" of one of
`FAMILIES` families followed by 24 KB unique to the request, so the prefix
index gains blocks on every cycle and lookups find partial matches. The
baseline is the same adapter over a config with only `random-picker`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

from bench.loadgen import percentile
from pyllmd.core.clock import VirtualClock
from pyllmd.core.promtext import parse_samples
from pyllmd.epp.config.loader import load_config_text
from pyllmd.epp.extproc.adapters import PluginScheduler
from pyllmd.epp.metrics import EppMetrics
from pyllmd.epp.scheduling.types import Endpoint, EndpointMetrics, LLMRequest

MODEL = "bench-model"
ENDPOINTS = 100
PROMPT_CHARS = 32_768  # 8,192 tokens at the scorer's 4 characters per token
SHARED_CHARS = 8_192
FAMILIES = 32
SNAPSHOTS = 16
REFRESH_CYCLES = 10
STALENESS = 2.0  # seconds, the `--metrics-staleness-threshold` default
RANDOM_ONLY_CONFIG = """\
plugins:
- type: random-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: random-picker
"""
PLUGIN_METRIC = "inference_extension_plugin_duration_seconds"


@dataclass(frozen=True)
class CycleTiming:
    """Durations of timed cycles of one config (ms), and what the cycles left behind."""

    label: str
    samples_ms: tuple[float, ...]
    plugin_mean_us: tuple[tuple[str, float], ...] = ()  # "point/type" → mean µs per call
    index_size: int = 0  # prefix-index entries after the run
    endpoints_used: int = 0  # distinct primary targets

    def p(self, q: float) -> float:
        return percentile(list(self.samples_ms), q)


@dataclass(frozen=True)
class CycleResults:
    """Figure (e): the default config and the random-picker baseline."""

    endpoints: int
    prompt_chars: int
    cycles: int
    warmup: int
    default: CycleTiming
    baseline: CycleTiming


def synthetic_endpoints(n: int, now: float, rng: random.Random) -> list[Endpoint]:
    """`n` endpoints with varied load, all scraped just before `now`."""
    out: list[Endpoint] = []
    for i in range(n):
        metrics = EndpointMetrics(
            waiting_queue_size=rng.randrange(0, 8),
            running_requests_size=rng.randrange(0, 64),
            kv_cache_usage_percent=round(rng.uniform(0.0, 0.9), 3),
            active_models=frozenset({MODEL}),
            max_active_models=4,
            cache_block_size=16,
            cache_num_gpu_blocks=16_384,
            update_time=now - rng.uniform(0.0, 0.05),
        )
        pod = f"vllm-{i:03d}"
        out.append(
            Endpoint(
                name=f"{pod}-rank-0",
                namespace="default",
                pod_name=pod,
                address=f"10.0.{i // 250}.{i % 250 + 1}",
                port=8000,
                metrics_host=f"10.0.{i // 250}.{i % 250 + 1}:8000",
                metrics=metrics,
            )
        )
    return out


def prompts(
    rng: random.Random, chars: int = PROMPT_CHARS, shared: int = SHARED_CHARS
) -> Iterator[str]:
    """Endless prompts of `chars` characters: a family's shared head, then unique text."""
    heads = [rng.randbytes(shared // 2).hex() for _ in range(FAMILIES)]
    while True:
        unique = rng.randbytes((chars - shared + 1) // 2).hex()
        yield (heads[rng.randrange(FAMILIES)] + unique)[:chars]


def request(n: int, prompt: str) -> LLMRequest:
    """A `/v1/completions` request as the servicer builds it."""
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 16}
    return LLMRequest(f"bench-{n}", MODEL, MODEL, "completions", body)


def plugin_means(metrics: EppMetrics) -> tuple[tuple[str, float], ...]:
    """Mean µs per call of each plugin, from the EPP's own plugin-duration histogram."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for s in parse_samples(metrics.render().decode()):
        if not s.name.startswith(PLUGIN_METRIC):
            continue
        key = f"{s.labels.get('extension_point', '')}/{s.labels.get('plugin_type', '')}"
        if s.name.endswith("_sum"):
            sums[key] = sums.get(key, 0.0) + s.value
        elif s.name.endswith("_count"):
            counts[key] = counts.get(key, 0.0) + s.value
    return tuple((k, sums[k] / counts[k] * 1e6) for k in sums if counts.get(k))


def measure(label: str, config_text: str | None, cycles: int, warmup: int) -> CycleTiming:
    """Time `PluginScheduler.schedule` one cycle at a time; requests are built untimed."""
    clock = VirtualClock(start=1_000.0)
    rng = random.Random(1)
    snapshots = [synthetic_endpoints(ENDPOINTS, clock.now(), rng) for _ in range(SNAPSHOTS)]
    metrics = EppMetrics("bench", lambda: snapshots[0])
    config = load_config_text(config_text)
    scheduler = PluginScheduler(config, clock, random.Random(2), metrics, STALENESS)
    source = prompts(random.Random(3))
    samples: list[float] = []
    targets: set[str] = set()
    for n in range(warmup + cycles):
        req = request(n, next(source))
        endpoints = snapshots[n // REFRESH_CYCLES % SNAPSHOTS]
        start = time.perf_counter()
        result = scheduler.schedule(req, endpoints)
        elapsed = time.perf_counter() - start
        if n >= warmup:
            samples.append(elapsed * 1000)
        targets.add(result.targets[0].namespaced_name)
    index = getattr(config.plugins.get("prefix-cache-scorer"), "index", None)
    size = index.size() if index is not None else 0
    return CycleTiming(label, tuple(samples), plugin_means(metrics), size, len(targets))


def run(cycles: int = 2_000, warmup: int = 200) -> CycleResults:
    """Figure (e), printing each row as it is measured."""
    rows: list[CycleTiming] = []
    for label, text in (("default config", None), ("random-picker only", RANDOM_ONLY_CONFIG)):
        row = measure(label, text, cycles, warmup)
        print(
            f"  {label}: p50 {row.p(0.5):.3f} ms, p99 {row.p(0.99):.3f} ms, "
            f"index {row.index_size:,} entries, {row.endpoints_used} endpoints picked"
        )
        rows.append(row)
    return CycleResults(ENDPOINTS, PROMPT_CHARS, cycles, warmup, rows[0], rows[1])
