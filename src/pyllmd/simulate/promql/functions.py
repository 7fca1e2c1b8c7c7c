"""PromQL's range functions (`rate`/`increase`/`delta` with Prometheus 2.x's extrapolation,
the `*_over_time` family), its aggregations, and `histogram_quantile`."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence

from pyllmd.simulate.promql.store import Labels
from pyllmd.simulate.promql.values import Point, Range, Vector

Buckets = list[tuple[float, float]]  # (upper bound, count), by upper bound


def extrapolated(r: Range, end: int, rng: int, name: str) -> float | None:
    """Prometheus 2.x's extrapolatedRate: the change over the samples, extrapolated to the
    range's edges (at most half an average interval past the samples, and not below zero for
    counters)."""
    return extrapolate(r.times, r.values, end, rng, name)


def extrapolate(
    times: Sequence[int], values: Sequence[float], end: int, rng: int, name: str
) -> float | None:
    """`extrapolated` over a series' samples in the range (no staleness marker among them)."""
    if len(values) < 2:
        return None
    counter = name != "delta"
    result = values[-1] - values[0]
    if counter:
        last = 0.0
        for v in values:
            if v < last:
                result += last
            last = v
    start = end - rng
    to_start = (times[0] - start) / 1000
    to_end = (end - times[-1]) / 1000
    sampled = (times[-1] - times[0]) / 1000
    average = sampled / (len(values) - 1)
    if counter and result > 0 and values[0] >= 0:
        to_zero = sampled * (values[0] / result)
        to_start = min(to_start, to_zero)
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    result *= interval / sampled
    if name == "rate":
        result /= rng / 1000
    return result


OVER_TIME: dict[str, Callable[[list[float]], float]] = {
    "max_over_time": max,
    "min_over_time": min,
    "sum_over_time": math.fsum,
    "avg_over_time": lambda xs: math.fsum(xs) / len(xs),
    "count_over_time": lambda xs: float(len(xs)),
    "last_over_time": lambda xs: xs[-1],
}

AGGREGATE: dict[str, Callable[[list[float]], float]] = {
    "sum": math.fsum,
    "max": max,
    "min": min,
    "avg": lambda xs: math.fsum(xs) / len(xs),
    "count": lambda xs: float(len(xs)),
}


def histogram_quantile(
    q: float, buckets: Vector, groups: Mapping[Labels, Buckets] | None = None
) -> Vector:
    """Prometheus' bucketQuantile over the `le` buckets of each series group (`groups`: the
    buckets' `bucket_groups`, when known)."""
    if groups is None:
        groups = bucket_groups(buckets)
    return [Point(key, _quantile(q, bs)) for key, bs in groups.items()]


def bucket_groups(buckets: Vector) -> dict[Labels, Buckets]:
    """The buckets of each series group by upper bound, counts made monotonic (what
    `histogram_quantile` reads, whatever the quantile)."""
    groups: dict[Labels, Buckets] = {}
    for p in buckets:
        le, key = _bucket_of(p.labels)
        if le is None:
            continue
        groups.setdefault(key, []).append((le, p.value))
    return {key: _monotonic(sorted(bs)) for key, bs in groups.items()}


@functools.lru_cache(maxsize=1 << 16)
def _bucket_of(labels: Labels) -> tuple[float | None, Labels]:
    """A bucket series' upper bound (None without an `le` label) and its group's labels
    (a dashboard asks the same buckets at every step: remembered)."""
    le = dict(labels).get("le")
    key = tuple(x for x in labels if x[0] not in ("le", "__name__"))
    return (float(le) if le is not None else None), key


def bucket_quantile(q: float, bs: Buckets) -> float:
    """The q-quantile of buckets sorted by upper bound."""
    return _quantile(q, _monotonic(bs))


def _monotonic(bs: Buckets) -> Buckets:
    """Counts made monotonic, as Prometheus does."""
    fixed: Buckets = []
    prev = -math.inf
    for le, c in bs:
        prev = max(prev, c)
        fixed.append((le, prev))
    return fixed


def _quantile(q: float, bs: Buckets) -> float:
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if len(bs) < 2 or not math.isinf(bs[-1][0]):
        return math.nan
    total = bs[-1][1]
    if total == 0:
        return math.nan
    rank = q * total
    b = next(i for i, (_, c) in enumerate(bs) if c >= rank)
    if b == len(bs) - 1:
        return bs[-2][0]
    if b == 0 and bs[0][0] <= 0:
        return bs[0][0]
    start = 0.0
    end, count = bs[b]
    if b > 0:
        start = bs[b - 1][0]
        count -= bs[b - 1][1]
        rank -= bs[b - 1][1]
    return start + (end - start) * (rank / count)
