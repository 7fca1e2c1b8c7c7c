"""Which Prometheus series feed which endpoint metric, and reading them from one scrape.

The data layer's metric mapping (spec §4.1-4.2): metric specs (`name{label=value}`),
the built-in vLLM and SGLang mappings, and the pure extraction of `EndpointMetrics`
from parsed samples. The scraper (`datalayer/scrape.py`) fetches and parses the text;
the `model-server-protocol-metrics` plugin chooses a mapping per endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from pyllmd.epp.scheduling.types import EndpointMetrics

__all__ = [
    "DEFAULT_VLLM_MAPPING",
    "SGLANG_MAPPING",
    "VLLM_SPECS",
    "MetricMapping",
    "MetricSpec",
    "Sample",
    "extract_metrics",
    "parse_metric_spec",
    "sample_names",
]


class Sample(Protocol):
    """One parsed sample line (`core.promtext.Sample` has this shape)."""

    @property
    def name(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def value(self) -> float: ...


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A metric name with optional label constraints (`name{label=value,...}`)."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def matches(self, sample: Sample) -> bool:
        """True when the sample has this name and every constrained label value."""
        return sample.name == self.name and all(
            sample.labels.get(k) == v for k, v in self.labels.items()
        )


def parse_metric_spec(text: str) -> MetricSpec | None:
    """Parse `name` or `name{label=value,...}`; empty text means "not scraped" (None)."""
    if not text:
        return None
    text = text.strip()
    start, end = text.find("{"), text.find("}")
    if start == -1 and end == -1:
        return MetricSpec(text)
    if start == -1 or end == -1 or end <= start + 1:
        raise ValueError(
            f"invalid metric spec string {text!r}: needs both braces around label pairs"
        )
    labels: dict[str, str] = {}
    for pair in text[start + 1 : end].split(","):
        parts = pair.split("=")
        if len(parts) != 2:
            raise ValueError(f"invalid label pair: {pair}")
        key, value = parts[0].strip(), parts[1].strip()
        if not key or not value:
            raise ValueError(f"empty label name or value in pair: {pair}")
        labels[key] = value
    name = text[:start].strip()
    if not name:
        raise ValueError(f"empty metric name in spec {text!r}")
    return MetricSpec(name, labels)


@dataclass(frozen=True, slots=True)
class MetricMapping:
    """Which series feed which `EndpointMetrics` field (None = not scraped)."""

    queue: MetricSpec | None = None
    running: MetricSpec | None = None
    kv_usage: MetricSpec | None = None
    lora: MetricSpec | None = None
    cache_info: MetricSpec | None = None

    @classmethod
    def from_specs(
        cls, queue: str, running: str, kv_usage: str, lora: str = "", cache_info: str = ""
    ) -> MetricMapping:
        """Build from spec strings; raises ValueError naming the bad spec."""
        return cls(*(parse_metric_spec(s) for s in (queue, running, kv_usage, lora, cache_info)))


VLLM_SPECS = (
    "vllm:num_requests_waiting",
    "vllm:num_requests_running",
    "vllm:kv_cache_usage_perc",
    "vllm:lora_requests_info",
    "vllm:cache_config_info",
)
DEFAULT_VLLM_MAPPING = MetricMapping.from_specs(*VLLM_SPECS)
SGLANG_MAPPING = MetricMapping.from_specs(
    "sglang:num_queue_reqs", "sglang:num_running_reqs", "sglang:token_usage"
)


def sample_names(mapping: MetricMapping) -> frozenset[str]:
    """The sample names `extract_metrics` reads for `mapping` (narrows the parse)."""
    specs = (mapping.queue, mapping.running, mapping.kv_usage, mapping.lora, mapping.cache_info)
    return frozenset(s.name for s in specs if s is not None)


def _first(samples: Sequence[Sample], spec: MetricSpec | None) -> Sample | None:
    if spec is None:
        return None
    return next((s for s in samples if spec.matches(s)), None)


def _adapters(text: str) -> frozenset[str]:
    return frozenset(a.strip() for a in text.split(",") if a.strip())


def _int_label(sample: Sample, name: str, previous: int) -> int:
    try:
        return int(sample.labels.get(name, ""))
    except ValueError:
        return previous


def extract_metrics(
    samples: Sequence[Sample], mapping: MetricMapping, previous: EndpointMetrics, now: float
) -> EndpointMetrics:
    """New metrics from one scrape: each mapped field that is present is updated, the
    others keep their previous value; `update_time` becomes `now`. For LoRA info the
    series with the greatest value (a timestamp) wins; otherwise the first match."""
    out = replace(previous, update_time=now)
    if (s := _first(samples, mapping.queue)) is not None:
        out = replace(out, waiting_queue_size=int(s.value))
    if (s := _first(samples, mapping.running)) is not None:
        out = replace(out, running_requests_size=int(s.value))
    if (s := _first(samples, mapping.kv_usage)) is not None:
        out = replace(out, kv_cache_usage_percent=s.value)
    lora = mapping.lora
    if lora is not None:
        series = [s for s in samples if lora.matches(s)]
        if series:
            best = max(series, key=lambda s: s.value)  # first of equals, as max() keeps it
            out = replace(
                out,
                active_models=_adapters(best.labels.get("running_lora_adapters", "")),
                waiting_models=_adapters(best.labels.get("waiting_lora_adapters", "")),
                max_active_models=_int_label(best, "max_lora", out.max_active_models),
            )
    if (s := _first(samples, mapping.cache_info)) is not None:
        out = replace(
            out,
            cache_block_size=_int_label(s, "block_size", out.cache_block_size),
            cache_num_gpu_blocks=_int_label(s, "num_gpu_blocks", out.cache_num_gpu_blocks),
        )
    return out
