"""Minimal Prometheus metrics for single-threaded asyncio servers, exposed like the Go client.

Written by hand because `prometheus_client` did not fit the hot path: its
thread-safe values cost about 3 µs per observation (the simulator observes two
histograms per generated token), it cannot add n samples at once (fake
metrics), and its exposition prints Python floats (`1.0`) and `_created`
series, where the Go client prints `1` and none. Here a metric is a plain
object updated without locks; `render` writes the classic text format with
the Go client's ordering (families by name, series by label values) and
number formatting (`strconv.FormatFloat(v, 'g', -1, 64)`).
"""

from __future__ import annotations

import functools
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format, which keeps `:` in names (OpenMetrics would not)."""


@functools.lru_cache(maxsize=4096)  # bucket bounds and gauges repeat at every scrape
def go_float(value: float) -> str:
    """A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` prints it (`1`, `0.4`, `1e+06`)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign, digit_tuple, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    neg = "-" if sign else ""
    exp = len(digits) + exponent - 1  # power of ten of the first digit
    if exp < -4 or exp >= 6:  # Go uses %e for shortest 'g' outside this range
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{neg}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exponent >= 0:
        return neg + digits + "0" * exponent
    point = len(digits) + exponent
    if point > 0:
        return f"{neg}{digits[:point]}.{digits[point:]}"
    return f"{neg}0.{'0' * -point}{digits}"


def _escape_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _label_text(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape_value(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class GaugeChild:
    """One gauge series."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        """Set the current value."""
        self.value = value


class CounterChild:
    """One counter series."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add a non-negative amount."""
        self.value += amount


class HistogramChild:
    """One histogram series: per-bucket counts (not cumulative), sum and count."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Record one sample (bucket bounds are inclusive, as Prometheus' `le`)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_many(self, value: float, n: int) -> None:
        """Record `n` samples of the same value at once."""
        if n > 0:
            self.counts[bisect_left(self.bounds, value)] += n
            self.sum += value * n


Child = GaugeChild | CounterChild | HistogramChild


class Family:
    """A metric name with its type, help text, label names and series."""

    def __init__(
        self,
        name: str,
        kind: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = (),
    ) -> None:
        if kind not in ("gauge", "counter", "histogram"):
            raise ValueError(f"unknown metric type {kind!r}")
        self.name = name
        self.kind = kind
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self.buckets = tuple(float(b) for b in buckets)
        self.children: dict[tuple[str, ...], Child] = {}

    def labels(self, *values: str) -> Child:
        """The series for these label values, created on first use."""
        child = self.children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
            child = self._new_child()
            self.children[values] = child
        return child

    def remove(self, *values: str) -> bool:
        """Drop the series with these label values (gone from exposition); False if absent."""
        return self.children.pop(values, None) is not None

    def gauge(self, *values: str) -> GaugeChild:
        """The gauge series for these label values."""
        child = self.labels(*values)
        assert isinstance(child, GaugeChild), self.name
        return child

    def counter(self, *values: str) -> CounterChild:
        """The counter series for these label values."""
        child = self.labels(*values)
        assert isinstance(child, CounterChild), self.name
        return child

    def histogram(self, *values: str) -> HistogramChild:
        """The histogram series for these label values."""
        child = self.labels(*values)
        assert isinstance(child, HistogramChild), self.name
        return child

    def _new_child(self) -> Child:
        if self.kind == "gauge":
            return GaugeChild()
        if self.kind == "counter":
            return CounterChild()
        return HistogramChild(self.buckets)

    def render(self, out: list[str]) -> None:
        """Append this family's lines; nothing when it has no series (as the Go client)."""
        if not self.children:
            return
        out.append(f"# HELP {self.name} {self.help.replace(chr(92), chr(92) * 2)}")
        out.append(f"# TYPE {self.name} {self.kind}")
        names = self.labelnames
        for values in sorted(self.children):
            child = self.children[values]
            if isinstance(child, HistogramChild):
                self._render_histogram(out, values, child)
            else:
                out.append(f"{self.name}{_label_text(names, values)} {go_float(child.value)}")

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        """Every sample as (sample name, labels, value), as `render` writes them (for readers
        that take samples, not text: the scrapes of a virtual-time run)."""
        names = self.labelnames
        for values in sorted(self.children):
            child = self.children[values]
            labels = dict(zip(names, values, strict=True))
            if isinstance(child, HistogramChild):
                cumulative = 0
                for bound, count in zip((*child.bounds, math.inf), child.counts, strict=True):
                    cumulative += count
                    le = {**labels, "le": go_float(bound)}
                    yield f"{self.name}_bucket", le, float(cumulative)
                yield f"{self.name}_sum", labels, child.sum
                yield f"{self.name}_count", labels, float(cumulative)
            else:
                yield self.name, labels, child.value

    def _render_histogram(
        self, out: list[str], values: tuple[str, ...], child: HistogramChild
    ) -> None:
        names, cumulative = self.labelnames, 0
        for bound, count in zip((*child.bounds, math.inf), child.counts, strict=True):
            cumulative += count
            le = f'le="{go_float(bound)}"'
            out.append(f"{self.name}_bucket{_label_text(names, values, le)} {cumulative}")
        labels = _label_text(names, values)
        out.append(f"{self.name}_sum{labels} {go_float(child.sum)}")
        out.append(f"{self.name}_count{labels} {cumulative}")


class CollectorFamily(Family):
    """A gauge or counter family whose series are computed when rendered (a Go
    `prometheus.Collector`): `collect` returns (label values, value) pairs, so
    series of things that disappeared vanish without bookkeeping."""

    def __init__(
        self,
        name: str,
        kind: str,
        help_text: str,
        labelnames: Sequence[str],
        collect: Callable[[], Iterable[tuple[tuple[str, ...], float]]],
    ) -> None:
        if kind == "histogram":
            raise ValueError("a collector family is a gauge or a counter")
        super().__init__(name, kind, help_text, labelnames)
        self.collect = collect

    def render(self, out: list[str]) -> None:
        """Compute the series now, then render them like any family."""
        self._refresh()
        super().render(out)

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        self._refresh()
        return super().samples()

    def _refresh(self) -> None:
        children: dict[tuple[str, ...], Child] = {}
        for values, value in self.collect():
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
            child = self._new_child()
            assert isinstance(child, GaugeChild | CounterChild)
            child.value = float(value)
            children[tuple(values)] = child
        self.children = children


class Registry:
    """A set of families rendered together."""

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}

    def add(self, family: Family) -> Family:
        """Register a family; names are unique."""
        if family.name in self.families:
            raise ValueError(f"duplicate metric {family.name}")
        self.families[family.name] = family
        return family

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        """Every sample of every family, sorted by family name."""
        for name in sorted(self.families):
            yield from self.families[name].samples()

    def render(self) -> bytes:
        """The classic text exposition of every family with series, sorted by name."""
        out: list[str] = []
        for name in sorted(self.families):
            self.families[name].render(out)
        return ("\n".join(out) + "\n").encode() if out else b""
