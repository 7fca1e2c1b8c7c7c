"""`rate`, `increase` and `delta` of a range selector over all its series at once (numpy).

A dashboard asks the rate of every pod's histogram buckets at every scrape: thousands of
series per query. `Columns` lays a selector's series out one after another (each series'
samples in time order, keyed by series number and time so that one `searchsorted` finds every
series' window), and `extrapolated_all` repeats `functions.extrapolate` element by element, the
same IEEE operations in the same order, so every value is the one the per-series code gives.
Series with a staleness marker or a counter reset (a value below the one before) are left to
the per-series code: their sums depend on the order of the corrections.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pyllmd.simulate.promql.store import Series

SPAN = 1 << 40  # ms of one series' key range: 35 years from the store's first sample


@dataclass(frozen=True)
class Columns:
    series: Sequence[Series]
    keys: np.ndarray  # series number * SPAN + (time - origin), int64, increasing
    times: np.ndarray  # ms, int64
    values: np.ndarray  # float64
    base: np.ndarray  # series number * SPAN, per series
    plain: np.ndarray  # per series: no staleness marker and no decrease (the fast path)
    origin: int

    @staticmethod
    def of(series: Sequence[Series]) -> Columns | None:
        """The series' samples as columns; None when their times do not fit the keys."""
        lengths = np.fromiter((len(s.times) for s in series), np.int64, len(series))
        if not len(series) or not lengths.all():
            return None
        times = np.fromiter((t for s in series for t in s.times), np.int64, int(lengths.sum()))
        values = np.fromiter((v for s in series for v in s.values), np.float64, len(times))
        origin = int(times.min())
        if int(times.max()) - origin >= SPAN or len(series) >= 1 << 22:
            return None
        number = np.repeat(np.arange(len(series), dtype=np.int64), lengths)
        keys = number * SPAN + (times - origin)
        starts = np.cumsum(lengths) - lengths
        down = np.zeros(len(times), dtype=bool)
        down[1:] = values[1:] < values[:-1]
        down[starts] = False  # the first sample of a series follows another series' last
        drops = np.add.reduceat(down.astype(np.int64), starts)
        stale = np.fromiter((s.stale for s in series), np.int64, len(series))
        base = np.arange(len(series), dtype=np.int64) * SPAN
        return Columns(series, keys, times, values, base, (drops == 0) & (stale == 0), origin)

    def windows(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """Per series, where its samples with start <= t <= end begin and end (lo, hi)."""
        lo_key, hi_key = max(start - self.origin, 0), min(end - self.origin, SPAN - 1)
        lo = np.searchsorted(self.keys, self.base + min(lo_key, SPAN - 1), side="left")
        if hi_key < 0 or lo_key >= SPAN or lo_key > hi_key:
            return lo, lo
        hi = np.searchsorted(self.keys, self.base + hi_key, side="right")
        return lo, hi


def extrapolated_all(
    cols: Columns, lo: np.ndarray, hi: np.ndarray, end: int, rng: int, name: str
) -> np.ndarray:
    """`functions.extrapolate` of the windows [lo, hi) (each of two samples or more, no reset,
    no marker), element by element."""
    times, values = cols.times, cols.values
    first_t, last_t = times[lo], times[hi - 1]
    first_v, last_v = values[lo], values[hi - 1]
    counter = name != "delta"
    result = last_v - first_v
    start = end - rng
    to_start = (first_t - start) / 1000
    to_end = (end - last_t) / 1000
    sampled = (last_t - first_t) / 1000
    average = sampled / (hi - lo - 1)
    if counter:
        extrapolate_to_zero = (result > 0) & (first_v >= 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            to_zero = sampled * (first_v / result)
        # min(to_start, to_zero) as Python's min: the first unless the second is smaller
        to_start = np.where(extrapolate_to_zero & (to_zero < to_start), to_zero, to_start)
    threshold = average * 1.1
    half = average / 2
    interval = sampled + np.where(to_start < threshold, to_start, half)
    interval = interval + np.where(to_end < threshold, to_end, half)
    result = result * (interval / sampled)
    if name == "rate":
        result = result / (rng / 1000)
    return np.asarray(result, dtype=np.float64)
