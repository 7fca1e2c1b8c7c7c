"""Samples of scraped series on a virtual clock, as Prometheus' TSDB would hold them.

Times are integer milliseconds, as Prometheus stores them, so that range boundaries fall
exactly where Prometheus puts them. A series that disappears from a scrape gets a staleness
marker (Prometheus' special NaN) at that scrape: an instant selector no longer returns it, and
range functions skip the marker. No library keeps an in-memory TSDB for Python: this one is a
dict of append-only lists per series.
"""

from __future__ import annotations

import bisect
import math
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs, `__name__` included

# Prometheus' staleness marker: a NaN with a payload of its own, told apart from other NaNs.
STALE_NAN: float = struct.unpack(">d", bytes.fromhex("7ff0000000000002"))[0]


def is_stale(value: float) -> bool:
    return math.isnan(value) and struct.pack(">d", value) == struct.pack(">d", STALE_NAN)


def labels_of(name: str, labels: Mapping[str, str]) -> Labels:
    """The sorted label pairs of a series (its name as `__name__`), empty values dropped."""
    pairs = {k: v for k, v in labels.items() if v != ""}
    pairs["__name__"] = name
    return tuple(sorted(pairs.items()))


def to_ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass
class Series:
    labels: Labels
    times: list[int] = field(default_factory=list)  # ms, increasing
    values: list[float] = field(default_factory=list)
    stale: int = 0  # staleness markers among `values` (most series have none)
    nameless: Labels = ()  # `labels` without `__name__`, what functions and operators return

    def __post_init__(self) -> None:
        self.nameless = tuple(p for p in self.labels if p[0] != "__name__")

    def window(self, mint: int, maxt: int) -> tuple[list[int], list[float]]:
        """The samples with mint <= t <= maxt (staleness markers included)."""
        lo = bisect.bisect_left(self.times, mint)
        hi = bisect.bisect_right(self.times, maxt)
        return self.times[lo:hi], self.values[lo:hi]

    def latest(self, mint: int, maxt: int) -> tuple[int, float] | None:
        """The newest sample with mint <= t <= maxt, None if none or if it is a stale marker."""
        i = bisect.bisect_right(self.times, maxt) - 1
        if i < 0 or self.times[i] < mint or is_stale(self.values[i]):
            return None
        return self.times[i], self.values[i]


Matcher = tuple[str, str, str]  # (label, op one of = != =~ !~, value)


def matches(labels: Mapping[str, str], matchers: Iterable[Matcher]) -> bool:
    for name, op, value in matchers:
        have = labels.get(name, "")
        if op == "=":
            ok = have == value
        elif op == "!=":
            ok = have != value
        elif op == "=~":
            ok = re.fullmatch(value, have) is not None
        else:
            ok = re.fullmatch(value, have) is None
        if not ok:
            return False
    return True


class SeriesStore:
    """Every series by its labels, and the series of each metric name."""

    def __init__(self) -> None:
        self.series: dict[Labels, Series] = {}
        self.by_name: dict[str, list[Series]] = {}
        # `select`'s answers while no series is added (the timeline asks the same queries at
        # every scrape time of a run)
        self._selected: dict[tuple[Matcher, ...], list[Series]] = {}
        self._selected_at = 0  # len(self.series) when `_selected` was filled
        self.version = 0  # samples added so far: what was computed at a version holds

    def add(self, labels: Labels, t_ms: int, value: float) -> None:
        """Append one sample (times of a series must not go backwards)."""
        s = self.series.get(labels)
        if s is None:
            s = self.series[labels] = Series(labels)
            self.by_name.setdefault(dict(labels)["__name__"], []).append(s)
        if s.times and t_ms < s.times[-1]:
            raise ValueError(f"sample at {t_ms} ms is older than the series' last one")
        self.version += 1
        stale = value != value and is_stale(value)  # NaN first: most values are numbers
        if s.times and t_ms == s.times[-1]:
            last = s.values[-1]
            s.stale += stale - (last != last and is_stale(last))
            s.values[-1] = value
            return
        s.stale += stale
        s.times.append(t_ms)
        s.values.append(value)

    def scrape(
        self,
        target: Mapping[str, str],
        samples: Iterable[tuple[Labels, float]],
        t_ms: int,
        previous: set[Labels],
    ) -> set[Labels]:
        """One scrape of a target: its samples at `t_ms`, and a staleness marker for each series
        of the previous scrape that is gone (as Prometheus does). Returns the series seen."""
        seen: set[Labels] = set()
        extra = tuple(target.items())
        for labels, value in samples:
            full = tuple(sorted({**dict(labels), **dict(extra)}.items())) if extra else labels
            self.add(full, t_ms, value)
            seen.add(full)
        for gone in previous - seen:
            self.add(gone, t_ms, STALE_NAN)
        return seen

    def mark_stale(self, labels: Labels, t_ms: int) -> None:
        self.add(labels, t_ms, STALE_NAN)

    def select(self, matchers: Iterable[Matcher]) -> list[Series]:
        """The series whose labels satisfy every matcher."""
        matchers = list(matchers)
        key = tuple(matchers)
        if self._selected_at != len(self.series):
            self._selected.clear()
            self._selected_at = len(self.series)
        found = self._selected.get(key)
        if found is None:
            name = next((v for n, op, v in matchers if n == "__name__" and op == "="), None)
            pool: Iterable[Series] = (
                self.by_name.get(name, []) if name is not None else self.series.values()
            )
            found = self._selected[key] = [s for s in pool if matches(dict(s.labels), matchers)]
        return list(found)
