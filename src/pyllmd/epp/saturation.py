"""Saturation detector and legacy admission (spec §7). Pure: `now` is passed in.

One staleness rule (`is_stale`) is shared with the shell, which may also
apply it to scorers' inputs (upstream treats stale metrics as full here but
scores them as if fresh; see spec §14).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyllmd.epp.scheduling.types import Endpoint

DEFAULT_QUEUE_DEPTH_THRESHOLD = 5
DEFAULT_KV_CACHE_UTIL_THRESHOLD = 0.8
DEFAULT_METRICS_STALENESS_THRESHOLD = 0.2  # seconds
SATURATED_MESSAGE = "system saturated, sheddable request dropped"


@dataclass(frozen=True)
class SaturationConfig:
    """Thresholds of the utilization detector; durations in seconds."""

    queue_depth_threshold: int = DEFAULT_QUEUE_DEPTH_THRESHOLD
    kv_cache_util_threshold: float = DEFAULT_KV_CACHE_UTIL_THRESHOLD
    metrics_staleness_threshold: float = DEFAULT_METRICS_STALENESS_THRESHOLD


def is_stale(endpoint: Endpoint, threshold: float, now: float) -> bool:
    """Never scraped, or the last successful scrape is older than `threshold`."""
    updated = endpoint.metrics.update_time
    return updated <= 0 or now - updated > threshold


def fresh_candidates(
    candidates: Sequence[Endpoint], now: float, threshold: float
) -> Sequence[Endpoint]:
    """Candidates with fresh metrics; all of them when none is fresh (start-up, outage)."""
    fresh = [e for e in candidates if not is_stale(e, threshold, now)]
    return fresh or candidates


def endpoint_saturation(endpoint: Endpoint, cfg: SaturationConfig, now: float) -> float:
    """max(queue/queueDepth, kv/kvThreshold); 1.0 for stale metrics."""
    if is_stale(endpoint, cfg.metrics_staleness_threshold, now):
        return 1.0
    m = endpoint.metrics
    return max(
        m.waiting_queue_size / cfg.queue_depth_threshold,
        m.kv_cache_usage_percent / cfg.kv_cache_util_threshold,
    )


def saturation(endpoints: Sequence[Endpoint], cfg: SaturationConfig, now: float) -> float:
    """Mean per-endpoint saturation; an empty set is saturated (1.0)."""
    if not endpoints:
        return 1.0
    return sum(endpoint_saturation(ep, cfg, now) for ep in endpoints) / len(endpoints)


def admit(
    priority: int, candidates: Sequence[Endpoint], cfg: SaturationConfig, now: float
) -> str | None:
    """None to admit; else the rejection message. Only sheddable (priority < 0) is checked."""
    if priority >= 0:
        return None
    if saturation(candidates, cfg, now) >= 1.0:
        return SATURATED_MESSAGE
    return None
