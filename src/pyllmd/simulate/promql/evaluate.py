"""Instant PromQL queries over a `SeriesStore`, with Prometheus 2.x's semantics.

The parsing is `promql-parser`'s (a Rust parser with Python bindings); the evaluation is written
here because no Python library evaluates PromQL. It covers what the autoscaler's collector and
the dashboards' panels ask: selectors with the four matchers, `offset`, the 5-minute lookback
and staleness markers; range selectors and subqueries (closed ranges, steps aligned to absolute
time, as Prometheus 2.x); `rate`/`increase`/`delta` with Prometheus' extrapolation, the
`*_over_time` functions, `timestamp`, `histogram_quantile`, `time`, `vector`, `scalar`, `abs`,
`clamp_min`/`clamp_max`; `sum`/`min`/`max`/`avg`/`count` `by`/`without`; arithmetic and
comparisons (with `bool`) between vectors (`on`/`ignoring`, `group_left`/`group_right`) and
scalars; `and`/`or`/`unless`. Anything else raises `Unsupported`, naming it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import promql_parser as pp

from pyllmd.simulate.promql.store import Labels, Matcher, SeriesStore, is_stale, to_ms

LOOKBACK_MS = 300_000  # Prometheus' default --query.lookback-delta (5m)


class Unsupported(ValueError):
    """A PromQL construct this evaluator does not cover."""


@dataclass(frozen=True)
class Point:
    labels: Labels
    value: float
    t: int | None = None  # the sample's own time (ms), for timestamp()


@dataclass(frozen=True)
class Range:
    labels: Labels
    times: list[int]
    values: list[float]


Vector = list[Point]
Matrix = list[Range]
Value = float | str | Vector | Matrix

_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": lambda a, b: (
        a / b
        if b
        else (
            math.nan
            if a == 0 or math.isnan(a)
            else math.copysign(math.inf, a) * math.copysign(1, b)
        )
    ),
    "%": lambda a, b: math.fmod(a, b) if b else math.nan,
    "^": lambda a, b: a**b,
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}
_MATCH_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


def _ms(delta: timedelta | None) -> int:
    return round(delta.total_seconds() * 1000) if delta is not None else 0


def _drop_name(labels: Labels) -> Labels:
    return tuple(p for p in labels if p[0] != "__name__")


def _signature(labels: Labels, on: bool, names: Sequence[str]) -> Labels:
    if on:
        return tuple(p for p in labels if p[0] in names)
    return tuple(p for p in labels if p[0] not in names and p[0] != "__name__")


class Evaluator:
    """Evaluates instant queries at a time over `store`."""

    def __init__(self, store: SeriesStore, lookback_ms: int = LOOKBACK_MS) -> None:
        self.store = store
        self.lookback = lookback_ms
        self._parsed: dict[str, pp.Expr] = {}

    def instant(self, query: str, t: float) -> Value:
        """The value of `query` at `t` seconds."""
        expr = self._parsed.get(query)
        if expr is None:
            try:
                expr = self._parsed[query] = pp.parse(query)
            except Exception as err:  # the parser's own error type is not exported
                raise ValueError(f"bad PromQL {query!r}: {err}") from None
        return self.eval(expr, to_ms(t))

    def answer(self, query: str, t: float) -> dict[str, object]:
        """The `data` object of Prometheus' /api/v1/query answer."""
        value = self.instant(query, t)
        if isinstance(value, float):
            return {"resultType": "scalar", "result": [t, _text(value)]}
        if isinstance(value, str):
            return {"resultType": "string", "result": [t, value]}
        if value and isinstance(value[0], Range):
            return {
                "resultType": "matrix",
                "result": [
                    {
                        "metric": dict(r.labels),
                        "values": [
                            [x / 1000, _text(v)] for x, v in zip(r.times, r.values, strict=True)
                        ],
                    }
                    for r in value
                ],
            }
        return {
            "resultType": "vector",
            "result": [{"metric": dict(p.labels), "value": [t, _text(p.value)]} for p in value],  # type: ignore[union-attr]
        }

    # ---- nodes ---------------------------------------------------------------------------
    def eval(self, e: pp.Expr, t: int) -> Value:
        if isinstance(e, pp.NumberLiteral):
            return float(e.val)
        if isinstance(e, pp.StringLiteral):
            return str(e.val)
        if isinstance(e, pp.ParenExpr):
            return self.eval(e.expr, t)
        if isinstance(e, pp.UnaryExpr):
            v = self.eval(e.expr, t)
            if isinstance(v, float):
                return -v
            return [Point(_drop_name(p.labels), -p.value) for p in _vector(v)]
        if isinstance(e, pp.VectorSelector):
            return self._instant_selector(e, t)
        if isinstance(e, pp.MatrixSelector):
            return self._range_selector(e, t)
        if isinstance(e, pp.SubqueryExpr):
            return self._subquery(e, t)
        if isinstance(e, pp.Call):
            return self._call(e, t)
        if isinstance(e, pp.AggregateExpr):
            return self._aggregate(e, t)
        if isinstance(e, pp.BinaryExpr):
            return self._binary(e, t)
        raise Unsupported(f"unsupported PromQL expression {type(e).__name__}")

    def _matchers(self, vs: pp.VectorSelector) -> list[Matcher]:
        out: list[Matcher] = []
        if vs.name:
            out.append(("__name__", "=", vs.name))
        if vs.matchers.or_matchers:
            raise Unsupported("'or' inside a selector's braces")
        for m in vs.matchers.matchers:
            out.append((m.name, _MATCH_OPS[str(m.op).split(".")[-1]], m.value))
        return out

    def _instant_selector(self, vs: pp.VectorSelector, t: int) -> Vector:
        if vs.at is not None:
            raise Unsupported("the @ modifier")
        ref = t - _ms(vs.offset)
        out: Vector = []
        for s in self.store.select(self._matchers(vs)):
            hit = s.latest(ref - self.lookback, ref)
            if hit is not None:
                out.append(Point(s.labels, hit[1], hit[0]))
        return out

    def _range_selector(self, ms: pp.MatrixSelector, t: int) -> Matrix:
        vs = ms.vector_selector
        if vs.at is not None:
            raise Unsupported("the @ modifier")
        end = t - _ms(vs.offset)
        start = end - _ms(ms.range)
        out: Matrix = []
        for s in self.store.select(self._matchers(vs)):
            times, values = s.window(start, end)
            keep = [i for i, v in enumerate(values) if not is_stale(v)]
            if keep:
                out.append(Range(s.labels, [times[i] for i in keep], [values[i] for i in keep]))
        return out

    def _subquery(self, sq: pp.SubqueryExpr, t: int) -> Matrix:
        if sq.at is not None:
            raise Unsupported("the @ modifier")
        step = _ms(sq.step) or 60_000  # Prometheus' default evaluation interval
        end = t - _ms(sq.offset)
        start = end - _ms(sq.range)
        first = start - start % step
        if first < start:
            first += step
        rows: dict[Labels, Range] = {}
        for ts in range(first, end + 1, step):
            v = self.eval(sq.expr, ts)
            if isinstance(v, float):
                v = [Point((), v)]
            for p in _vector(v):
                r = rows.setdefault(p.labels, Range(p.labels, [], []))
                r.times.append(ts)
                r.values.append(p.value)
        return list(rows.values())

    # ---- functions -------------------------------------------------------------------------
    def _call(self, c: pp.Call, t: int) -> Value:
        name = c.func.name
        args = c.args
        if name == "time":
            return t / 1000
        if name in _OVER_TIME or name in ("rate", "increase", "delta"):
            m = self.eval(args[0], t)
            ranges = _matrix(m)
            rng = _range_ms(args[0])
            out: Vector = []
            for r in ranges:
                if name in _OVER_TIME:
                    value = _OVER_TIME[name](r.values)
                else:
                    got = _extrapolated(r, t - _offset_ms(args[0]), rng, name)
                    if got is None:
                        continue
                    value = got
                out.append(Point(_drop_name(r.labels), value))
            return out
        if name == "timestamp":
            v = self.eval(args[0], t)
            return [
                Point(_drop_name(p.labels), (p.t if p.t is not None else t) / 1000)
                for p in _vector(v)
            ]
        if name == "histogram_quantile":
            q = self.eval(args[0], t)
            return _histogram_quantile(float(q), _vector(self.eval(args[1], t)))  # type: ignore[arg-type]
        if name == "vector":
            return [Point((), float(self.eval(args[0], t)))]  # type: ignore[arg-type]
        if name == "scalar":
            v = _vector(self.eval(args[0], t))
            return v[0].value if len(v) == 1 else math.nan
        if name in ("abs", "clamp_min", "clamp_max", "ceil", "floor"):
            v = _vector(self.eval(args[0], t))
            bound = float(self.eval(args[1], t)) if len(args) > 1 else 0.0  # type: ignore[arg-type]
            fn: Callable[[float], float] = {
                "abs": abs,
                "ceil": lambda x: float(math.ceil(x)),
                "floor": lambda x: float(math.floor(x)),
                "clamp_min": lambda x: max(x, bound),
                "clamp_max": lambda x: min(x, bound),
            }[name]
            return [Point(_drop_name(p.labels), fn(p.value)) for p in v]
        raise Unsupported(f"unsupported PromQL function {name}()")

    # ---- aggregations ----------------------------------------------------------------------
    def _aggregate(self, a: pp.AggregateExpr, t: int) -> Vector:
        op = str(a.op)
        if op not in _AGGREGATE:
            raise Unsupported(f"unsupported PromQL aggregation {op}")
        v = _vector(self.eval(a.expr, t))
        mod = a.modifier
        by = mod is None or str(mod.type).endswith("By")
        names = list(mod.labels) if mod is not None else []
        groups: dict[Labels, list[float]] = {}
        for p in v:
            if by:
                key = tuple(x for x in p.labels if x[0] in names)
            else:
                key = tuple(x for x in p.labels if x[0] not in names and x[0] != "__name__")
            groups.setdefault(key, []).append(p.value)
        return [Point(k, _AGGREGATE[op](vals)) for k, vals in groups.items()]

    # ---- binary operators ------------------------------------------------------------------
    def _binary(self, b: pp.BinaryExpr, t: int) -> Value:
        op = str(b.op)
        lhs, rhs = self.eval(b.lhs, t), self.eval(b.rhs, t)
        mod = b.modifier
        return_bool = bool(mod is not None and mod.return_bool)
        on = False
        names: list[str] = []
        if mod is not None and mod.matching is not None:
            on = str(mod.matching.type).endswith("Include")
            names = list(mod.matching.labels)
        if op in ("and", "or", "unless"):
            return _set_op(op, _vector(lhs), _vector(rhs), on, names)
        if isinstance(lhs, float) and isinstance(rhs, float):
            if op in _COMPARE:
                if not return_bool:
                    raise Unsupported("comparison between scalars needs bool")
                return float(_COMPARE[op](lhs, rhs))
            return _ARITH[op](lhs, rhs)
        if isinstance(lhs, float) or isinstance(rhs, float):
            return _vector_scalar(op, lhs, rhs, return_bool)
        card = str(mod.card).split(".")[-1] if mod is not None else "OneToOne"
        group = list(mod.group_labels) if mod is not None and mod.group_labels else []
        return _vector_vector(op, _vector(lhs), _vector(rhs), on, names, card, group, return_bool)


def _text(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v) if v != int(v) or abs(v) >= 1e15 else str(int(v))


def _vector(v: Value) -> Vector:
    if isinstance(v, list) and (not v or isinstance(v[0], Point)):
        return v  # type: ignore[return-value]
    raise Unsupported("expected an instant vector")


def _matrix(v: Value) -> Matrix:
    if isinstance(v, list) and (not v or isinstance(v[0], Range)):
        return v  # type: ignore[return-value]
    raise Unsupported("expected a range vector")


def _range_ms(e: pp.Expr) -> int:
    if isinstance(e, pp.MatrixSelector | pp.SubqueryExpr):
        return _ms(e.range)
    raise Unsupported("expected a range selector or a subquery")


def _offset_ms(e: pp.Expr) -> int:
    inner = e.vector_selector if isinstance(e, pp.MatrixSelector) else e
    return _ms(getattr(inner, "offset", None))


def _extrapolated(r: Range, end: int, rng: int, name: str) -> float | None:
    """Prometheus 2.x's extrapolatedRate: the change over the samples, extrapolated to the
    range's edges (at most half an average interval past the samples, and not below zero for
    counters)."""
    times, values = r.times, r.values
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


_OVER_TIME: dict[str, Callable[[list[float]], float]] = {
    "max_over_time": max,
    "min_over_time": min,
    "sum_over_time": math.fsum,
    "avg_over_time": lambda xs: math.fsum(xs) / len(xs),
    "count_over_time": lambda xs: float(len(xs)),
    "last_over_time": lambda xs: xs[-1],
}

_AGGREGATE: dict[str, Callable[[list[float]], float]] = {
    "sum": math.fsum,
    "max": max,
    "min": min,
    "avg": lambda xs: math.fsum(xs) / len(xs),
    "count": lambda xs: float(len(xs)),
}


def _set_op(op: str, lhs: Vector, rhs: Vector, on: bool, names: list[str]) -> Vector:
    right = {_signature(p.labels, on, names) for p in rhs}
    if op == "and":
        return [p for p in lhs if _signature(p.labels, on, names) in right]
    if op == "unless":
        return [p for p in lhs if _signature(p.labels, on, names) not in right]
    left = {_signature(p.labels, on, names) for p in lhs}
    return lhs + [p for p in rhs if _signature(p.labels, on, names) not in left]


def _vector_scalar(op: str, lhs: Value, rhs: Value, return_bool: bool) -> Vector:
    scalar_left = isinstance(lhs, float)
    vec = _vector(rhs if scalar_left else lhs)
    s = float(lhs if scalar_left else rhs)  # type: ignore[arg-type]
    out: Vector = []
    for p in vec:
        a, b = (s, p.value) if scalar_left else (p.value, s)
        if op in _COMPARE:
            keep = _COMPARE[op](a, b)
            if return_bool:
                out.append(Point(_drop_name(p.labels), float(keep)))
            elif keep:
                out.append(Point(p.labels, p.value))
        else:
            out.append(Point(_drop_name(p.labels), _ARITH[op](a, b)))
    return out


def _vector_vector(
    op: str,
    lhs: Vector,
    rhs: Vector,
    on: bool,
    names: list[str],
    card: str,
    group: list[str],
    return_bool: bool,
) -> Vector:
    """One-to-one and many-to-one (group_left/right) matching, as Prometheus' VectorBinop."""
    if card == "OneToMany":  # group_right: swap sides, then swap the operands back
        many, one = rhs, lhs
    else:
        many, one = lhs, rhs
    index: dict[Labels, Point] = {}
    for p in one:
        sig = _signature(p.labels, on, names)
        if sig in index:
            raise ValueError("found duplicate series for the match group on the 'one' side")
        index[sig] = p
    out: Vector = []
    matched: set[Labels] = set()
    for p in many:
        sig = _signature(p.labels, on, names)
        other = index.get(sig)
        if other is None:
            continue
        if card == "OneToOne":
            if sig in matched:
                raise ValueError(
                    "multiple matches for labels: many-to-one matching must be explicit"
                )
            matched.add(sig)
        a, b = (other.value, p.value) if card == "OneToMany" else (p.value, other.value)
        compare = op in _COMPARE
        if compare:
            keep = _COMPARE[op](a, b)
            if not keep and not return_bool:
                continue
            value = float(keep) if return_bool else a
        else:
            value = _ARITH[op](a, b)
        out.append(
            Point(
                _result_labels(
                    p.labels, other.labels, compare and not return_bool, on, names, card, group
                ),
                value,
            )
        )
    return out


def _result_labels(
    many: Labels,
    one: Labels,
    keep_name: bool,
    on: bool,
    names: list[str],
    card: str,
    group: list[str],
) -> Labels:
    """Prometheus' resultMetric: the many side's labels, the metric name dropped unless the
    operator is a filtering comparison; one-to-one keeps only the `on` labels (or drops the
    `ignoring` ones); `group_*` labels come from the one side."""
    labels = dict(many)
    if not keep_name:
        labels.pop("__name__", None)
    if card == "OneToOne":
        if on:
            labels = {k: v for k, v in labels.items() if k in names}
        else:
            for k in names:
                labels.pop(k, None)
    if group:
        side = dict(one)
        for k in group:
            if side.get(k):
                labels[k] = side[k]
            else:
                labels.pop(k, None)
    return tuple(sorted(labels.items()))


def _histogram_quantile(q: float, buckets: Vector) -> Vector:
    """Prometheus' bucketQuantile over the `le` buckets of each series group."""
    groups: dict[Labels, list[tuple[float, float]]] = {}
    for p in buckets:
        le = dict(p.labels).get("le")
        if le is None:
            continue
        key = tuple(x for x in p.labels if x[0] not in ("le", "__name__"))
        groups.setdefault(key, []).append((float(le), p.value))
    out: Vector = []
    for key, bs in groups.items():
        out.append(Point(key, _bucket_quantile(q, sorted(bs))))
    return out


def _bucket_quantile(q: float, bs: list[tuple[float, float]]) -> float:
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if len(bs) < 2 or not math.isinf(bs[-1][0]):
        return math.nan
    # make counts monotonic, as Prometheus does
    fixed: list[tuple[float, float]] = []
    prev = -math.inf
    for le, c in bs:
        prev = max(prev, c)
        fixed.append((le, prev))
    bs = fixed
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
