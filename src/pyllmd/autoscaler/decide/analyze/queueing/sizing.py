"""Sizing with the queueing model (spec §5.3): the highest rate a replica sustains
within latency targets, and the replicas a load needs.

TTFT and ITL grow with the arrival rate, so the highest rate meeting a target is
found by bisection over the model's stable range `[μ(1)·ε, μ(N)·(1 − ε)]`. A target
of 0 is not considered. A token-throughput (TPS) target caps the rate at 90 % of the
maximum (upstream's stability margin) and sets the load to `TPS / O` requests/s.

SLO targets are often percentiles. With `percentile` given, the queueing wait is
taken as exponential, so its p-th percentile is `−ln(1 − p)` times its mean
(`SLO_MARGIN` ≈ 3.0 for p = 0.95) and the TTFT check uses `margin·wait + prefill +
first token`; prefill and decode times are treated as deterministic. Without it the
targets bound the means, as upstream's current allocation does.

Library only: as upstream, no controller path calls it. Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from pyllmd.autoscaler.decide.analyze.queueing.model import QueueMetrics, QueueModel

SLO_PERCENTILE = 0.95
SLO_MARGIN = -math.log(1 - SLO_PERCENTILE)
"""Multiplier from the mean of an exponential distribution to its 95th percentile."""
ACCEL_PENALTY_FACTOR = 0.1
"""Share of both allocations' cost charged for moving a server to another accelerator."""
STABILITY_SAFETY_FRACTION = 0.1
"""Under a TPS target a replica runs this fraction below its maximum rate."""
SEARCH_REL_TOL = 1e-6


class InfeasibleTarget(ValueError):
    """Even the lowest rate misses the target (e.g. ITL below the single-request time)."""


@dataclass(frozen=True)
class Targets:
    """Performance targets; 0 = not considered."""

    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    tps: float = 0.0
    """Tokens per second the server must generate in total."""

    def check(self) -> None:
        if min(self.ttft_ms, self.itl_ms, self.tps) < 0:
            raise ValueError(f"invalid targets {self}: must be >= 0")


@dataclass(frozen=True)
class RateLimits:
    """Highest per-replica rates (req/s) meeting each target, and the binding one."""

    ttft: float
    itl: float
    tps: float
    rate: float
    """min(ttft, itl, tps)."""
    metrics: QueueMetrics
    """The model at `rate`."""


@dataclass(frozen=True)
class Sizing:
    """Replicas for a load and what each replica then sees."""

    replicas: int
    total_rate: float
    """Request rate the replicas share (req/s)."""
    limits: RateLimits
    metrics: QueueMetrics | None
    """One replica at `total_rate / replicas`; None without load or replicas."""


def slo_margin(percentile: float) -> float:
    """`−ln(1 − p)`: the p-th percentile of an exponential distribution over its mean."""
    if not 0 < percentile < 1:
        raise ValueError(f"percentile must be within (0, 1), got {percentile}")
    return -math.log(1 - percentile)


def ttft_at(metrics: QueueMetrics, wait_margin: float = 1.0) -> float:
    """TTFT with the queueing wait scaled by `wait_margin` (1 = the mean TTFT)."""
    return wait_margin * metrics.avg_wait_time + metrics.avg_prefill_time + metrics.avg_token_time


def max_under(f: Callable[[float], float], lo: float, hi: float, target: float) -> float:
    """Largest x in [lo, hi] with `f(x) <= target`, for non-decreasing f, by bisection
    to a relative width of `SEARCH_REL_TOL`. Raises `InfeasibleTarget` if `f(lo)`
    already exceeds the target; returns `hi` when `f(hi)` meets it."""
    if f(lo) > target:
        raise InfeasibleTarget(f"target {target:g} missed at the lowest rate ({f(lo):g})")
    if f(hi) <= target:
        return hi
    while hi - lo > SEARCH_REL_TOL * hi:
        mid = (lo + hi) / 2
        if f(mid) <= target:
            lo = mid
        else:
            hi = mid
    return lo


def max_rate(model: QueueModel, targets: Targets, percentile: float | None = None) -> RateLimits:
    """Highest rate (req/s) one replica takes while meeting every non-zero target."""
    targets.check()
    margin = 1.0 if percentile is None else slo_margin(percentile)
    lo, hi = model.min_rate, model.max_rate
    by_ttft = by_itl = by_tps = hi
    if targets.ttft_ms > 0:
        by_ttft = max_under(lambda r: ttft_at(model.analyze(r), margin), lo, hi, targets.ttft_ms)
    if targets.itl_ms > 0:
        by_itl = max_under(lambda r: model.analyze(r).itl, lo, hi, targets.itl_ms)
    if targets.tps > 0:
        by_tps = hi * (1 - STABILITY_SAFETY_FRACTION)
    rate = min(by_ttft, by_itl, by_tps)
    return RateLimits(by_ttft, by_itl, by_tps, rate, model.analyze(rate))


def replicas_needed(total_rate: float, rate_per_replica: float, min_replicas: int = 0) -> int:
    """`ceil(total / per-replica)`, at least `min_replicas`; 0 load needs `min_replicas`."""
    if total_rate < 0 or rate_per_replica <= 0 or min_replicas < 0:
        raise ValueError("need total_rate >= 0, rate_per_replica > 0, min_replicas >= 0")
    if total_rate == 0:
        return min_replicas
    # Rounding guard: 3 × (r/3) must not come out as 4 replicas.
    needed = math.ceil(total_rate / rate_per_replica * (1 - 1e-12))
    return max(needed, min_replicas)


def size(
    model: QueueModel,
    targets: Targets,
    arrival_rate: float,
    *,
    min_replicas: int = 0,
    percentile: float | None = None,
) -> Sizing:
    """Replicas for `arrival_rate` (req/s), or for `targets.tps / O` when a TPS target
    is set (upstream sizes throughput targets by token demand, not by arrivals)."""
    if arrival_rate < 0:
        raise ValueError(f"arrival rate must be >= 0, got {arrival_rate}")
    limits = max_rate(model, targets, percentile)
    total = targets.tps / model.request.output_tokens if targets.tps > 0 else arrival_rate
    replicas = replicas_needed(total, limits.rate, min_replicas)
    metrics = model.analyze(total / replicas) if total > 0 and replicas > 0 else None
    return Sizing(replicas, total, limits, metrics)


@dataclass(frozen=True)
class Placement:
    """A server's allocation: accelerator, replica count and its total cost."""

    accelerator: str
    replicas: int
    cost: float


def transition_penalty(current: Placement, new: Placement) -> float:
    """Cost of moving from `current` to `new`: nothing when unchanged, the cost
    difference on the same accelerator, plus `ACCEL_PENALTY_FACTOR` × both costs
    when the accelerator changes (so a switch must save more than it disrupts)."""
    if current.accelerator == new.accelerator:
        return 0.0 if current.replicas == new.replicas else new.cost - current.cost
    return ACCEL_PENALTY_FACTOR * (current.cost + new.cost) + (new.cost - current.cost)
