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
from collections.abc import Callable, Sequence
from datetime import timedelta

import numpy as np
import promql_parser as pp

from pyllmd.simulate.promql.columns import Columns, extrapolated_all
from pyllmd.simulate.promql.functions import (
    AGGREGATE,
    OVER_TIME,
    Buckets,
    bucket_groups,
    extrapolate,
    extrapolated,
    histogram_quantile,
)
from pyllmd.simulate.promql.operators import ARITH, COMPARE, set_op, vector_scalar, vector_vector
from pyllmd.simulate.promql.store import Labels, Matcher, SeriesStore, is_stale, to_ms
from pyllmd.simulate.promql.values import (
    Matrix,
    Point,
    Range,
    Unsupported,
    Value,
    Vector,
    as_matrix,
    as_vector,
    drop_name,
)

LOOKBACK_MS = 300_000  # Prometheus' default --query.lookback-delta (5m)


_MATCH_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


def _ms(delta: timedelta | None) -> int:
    return round(delta.total_seconds() * 1000) if delta is not None else 0


class Evaluator:
    """Evaluates instant queries at a time over `store`."""

    def __init__(self, store: SeriesStore, lookback_ms: int = LOOKBACK_MS) -> None:
        self.store = store
        self.lookback = lookback_ms
        self._parsed: dict[str, pp.Expr] = {}
        # per node of a parsed query (kept alive by `_parsed`, so an id is not reused): its
        # text, the key of `instant_many`'s answers; a selector's matchers
        self._text: dict[int, tuple[pp.Expr, str]] = {}
        self._matched: dict[int, tuple[pp.VectorSelector, list[Matcher]]] = {}
        # an aggregation's group of a series' labels, per (by, label names)
        self._groups: dict[tuple[bool, tuple[str, ...]], dict[Labels, Labels]] = {}
        self._memo: dict[tuple[str, int], Value] | None = None  # during `instant_many`
        # `bucket_groups` of a vector `_memo` holds (by its id, the vector kept alive)
        self._bucket_groups: dict[int, tuple[Vector, dict[Labels, Buckets]]] = {}
        # per columns and grouping (by, label names): each series' group number, the groups
        self._series_groups: dict[
            tuple[int, bool, tuple[str, ...]], tuple[Columns, list[int], list[Labels]]
        ] = {}
        # a selector's series as columns, at a store version (`instant_many`'s rates)
        self._columns: dict[tuple[Matcher, ...], tuple[int, Columns | None]] = {}

    def instant_many(self, queries: Sequence[str], t: float) -> list[Value]:
        """The values of `queries` at `t` seconds, as `instant` gives them; a function call,
        aggregation or operation they share (the same text: a dashboard asks p50, p90 and p99
        of one histogram) is evaluated once."""
        self._memo = {}
        try:
            return [self.instant(q, t) for q in queries]
        finally:
            self._memo = None
            self._bucket_groups.clear()

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
        if self._memo is not None and isinstance(e, _SHARED):
            known = self._text.get(id(e))
            if known is None:
                known = self._text[id(e)] = (e, str(e))
            key = (known[1], t)
            value = self._memo.get(key)
            if value is None:
                value = self._memo[key] = self._eval(e, t)
            return value
        return self._eval(e, t)

    def _eval(self, e: pp.Expr, t: int) -> Value:
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
            return [Point(drop_name(p.labels), -p.value) for p in as_vector(v)]
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
        known = self._matched.get(id(vs))
        if known is None:
            known = self._matched[id(vs)] = (vs, self._matchers_of(vs))
        return known[1]

    def _matchers_of(self, vs: pp.VectorSelector) -> list[Matcher]:
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
            for p in as_vector(v):
                r = rows.setdefault(p.labels, Range(p.labels, [], []))
                r.times.append(ts)
                r.values.append(p.value)
        return list(rows.values())

    def _over_range(self, name: str, ms: pp.MatrixSelector, t: int) -> Vector:
        """A range function of a range selector: `_range_selector`, then the function of each
        range, without building the ranges (a dashboard's rate runs over every pod's buckets)."""
        vs = ms.vector_selector
        if vs.at is not None:
            raise Unsupported("the @ modifier")
        end = t - _ms(vs.offset)
        rng = _ms(ms.range)
        start = end - rng
        over = OVER_TIME.get(name)
        if over is None:
            batch = self._rate_values(name, ms, t)
            if batch is not None:
                cols, found = batch
                return [Point(cols.series[i].nameless, v) for i, v in found]
        out: Vector = []
        for s in self.store.select(self._matchers(vs)):
            times, values = s.window(start, end)
            if s.stale:
                keep = [i for i, v in enumerate(values) if not is_stale(v)]
                times, values = [times[i] for i in keep], [values[i] for i in keep]
            if not values:
                continue
            if over is not None:
                value = over(values)
            else:
                got = extrapolate(times, values, end, rng, name)
                if got is None:
                    continue
                value = got
            out.append(Point(s.nameless, value))
        return out

    def _columns_of(self, matchers: list[Matcher]) -> Columns | None:
        key = tuple(matchers)
        known = self._columns.get(key)
        if known is None or known[0] != self.store.version:
            known = self._columns[key] = (
                self.store.version,
                Columns.of(self.store.select(matchers)),
            )
        return known[1]

    def _rate_values(
        self, name: str, ms: pp.MatrixSelector, t: int
    ) -> tuple[Columns, list[tuple[int, float]]] | None:
        """In a batch (the store holds still), `rate`/`increase`/`delta` of a range selector
        over its series as columns: (the columns, [(series number, value)] in the series'
        order); None when the columns do not apply. Numpy for the series without marker or
        reset, the per-series code for the others."""
        vs = ms.vector_selector
        if self._memo is None or vs.at is not None:
            return None
        cols = self._columns_of(self._matchers(vs))
        if cols is None:
            return None
        end = t - _ms(vs.offset)
        rng = _ms(ms.range)
        lo, hi = cols.windows(end - rng, end)
        count = hi - lo
        fast = np.flatnonzero(cols.plain & (count >= 2))
        values = extrapolated_all(cols, lo[fast], hi[fast], end, rng, name).tolist()
        series = cols.series
        found = list(zip(fast.tolist(), values, strict=True))
        slow = np.flatnonzero(~cols.plain & (count > 0)).tolist()
        for i in slow:
            s = series[i]
            times, vals = s.window(end - rng, end)
            if s.stale:
                keep = [k for k, v in enumerate(vals) if not is_stale(v)]
                times, vals = [times[k] for k in keep], [vals[k] for k in keep]
            got = extrapolate(times, vals, end, rng, name)
            if got is not None:
                found.append((i, got))
        if slow:
            found.sort(key=lambda iv: iv[0])
        return cols, found

    # ---- functions -------------------------------------------------------------------------
    def _call(self, c: pp.Call, t: int) -> Value:
        name = c.func.name
        args = c.args
        if name == "time":
            return t / 1000
        if name in OVER_TIME or name in ("rate", "increase", "delta"):
            if isinstance(args[0], pp.MatrixSelector):
                return self._over_range(name, args[0], t)
            m = self.eval(args[0], t)
            ranges = as_matrix(m)
            rng = _range_ms(args[0])
            out: Vector = []
            for r in ranges:
                if name in OVER_TIME:
                    value = OVER_TIME[name](r.values)
                else:
                    got = extrapolated(r, t - _offset_ms(args[0]), rng, name)
                    if got is None:
                        continue
                    value = got
                out.append(Point(drop_name(r.labels), value))
            return out
        if name == "timestamp":
            v = self.eval(args[0], t)
            return [
                Point(drop_name(p.labels), (p.t if p.t is not None else t) / 1000)
                for p in as_vector(v)
            ]
        if name == "histogram_quantile":
            q = self.eval(args[0], t)
            buckets = as_vector(self.eval(args[1], t))
            groups = None
            if self._memo is not None:  # p50, p90 and p99 of one histogram: grouped once
                known = self._bucket_groups.get(id(buckets))
                if known is None:
                    known = self._bucket_groups[id(buckets)] = (buckets, bucket_groups(buckets))
                groups = known[1]
            return histogram_quantile(float(q), buckets, groups)  # type: ignore[arg-type]
        if name == "vector":
            return [Point((), float(self.eval(args[0], t)))]  # type: ignore[arg-type]
        if name == "scalar":
            v = as_vector(self.eval(args[0], t))
            return v[0].value if len(v) == 1 else math.nan
        if name in ("abs", "clamp_min", "clamp_max", "ceil", "floor"):
            v = as_vector(self.eval(args[0], t))
            bound = float(self.eval(args[1], t)) if len(args) > 1 else 0.0  # type: ignore[arg-type]
            fn: Callable[[float], float] = {
                "abs": abs,
                "ceil": lambda x: float(math.ceil(x)),
                "floor": lambda x: float(math.floor(x)),
                "clamp_min": lambda x: max(x, bound),
                "clamp_max": lambda x: min(x, bound),
            }[name]
            return [Point(drop_name(p.labels), fn(p.value)) for p in v]
        raise Unsupported(f"unsupported PromQL function {name}()")

    # ---- aggregations ----------------------------------------------------------------------
    def _aggregate(self, a: pp.AggregateExpr, t: int) -> Vector:
        op = str(a.op)
        if op not in AGGREGATE:
            raise Unsupported(f"unsupported PromQL aggregation {op}")
        mod = a.modifier
        by = mod is None or str(mod.type).endswith("By")
        names = tuple(mod.labels) if mod is not None else ()
        inner = a.expr
        if (
            self._memo is not None
            and isinstance(inner, pp.Call)
            and inner.func.name in ("rate", "increase", "delta")
            and isinstance(inner.args[0], pp.MatrixSelector)
        ):  # a batch's aggregation of a rate: grouped by series number, no point per series
            got = self._rate_values(inner.func.name, inner.args[0], t)
            if got is not None:
                return self._aggregate_rates(op, *got, by, names)
        v = as_vector(self.eval(inner, t))
        known = self._groups.setdefault((by, names), {})
        groups: dict[Labels, list[float]] = {}
        for p in v:
            key = known.get(p.labels)
            if key is None:
                if by:
                    key = tuple(x for x in p.labels if x[0] in names)
                else:
                    key = tuple(x for x in p.labels if x[0] not in names and x[0] != "__name__")
                known[p.labels] = key
            groups.setdefault(key, []).append(p.value)
        return [Point(k, AGGREGATE[op](vals)) for k, vals in groups.items()]

    def _aggregate_rates(
        self,
        op: str,
        cols: Columns,
        found: list[tuple[int, float]],
        by: bool,
        names: tuple[str, ...],
    ) -> Vector:
        """`_aggregate` of `_rate_values`' answer: the same groups in the same order (of
        their first series), each series' group number computed once per columns."""
        key = (id(cols), by, names)
        known = self._series_groups.get(key)
        if known is None or known[0] is not cols:
            numbers: dict[Labels, int] = {}
            of_series = []
            for s in cols.series:
                labels = s.nameless
                if by:
                    group = tuple(x for x in labels if x[0] in names)
                else:
                    group = tuple(x for x in labels if x[0] not in names and x[0] != "__name__")
                of_series.append(numbers.setdefault(group, len(numbers)))
            known = self._series_groups[key] = (cols, of_series, list(numbers))
        _, of_series, groups = known
        values: dict[int, list[float]] = {}
        for i, v in found:
            g = of_series[i]
            got = values.get(g)
            if got is None:
                values[g] = [v]
            else:
                got.append(v)
        fn = AGGREGATE[op]
        return [Point(groups[g], fn(vals)) for g, vals in values.items()]

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
            return set_op(op, as_vector(lhs), as_vector(rhs), on, names)
        if isinstance(lhs, float) and isinstance(rhs, float):
            if op in COMPARE:
                if not return_bool:
                    raise Unsupported("comparison between scalars needs bool")
                return float(COMPARE[op](lhs, rhs))
            return ARITH[op](lhs, rhs)
        if isinstance(lhs, float) or isinstance(rhs, float):
            return vector_scalar(op, lhs, rhs, return_bool)
        card = str(mod.card).split(".")[-1] if mod is not None else "OneToOne"
        group = list(mod.group_labels) if mod is not None and mod.group_labels else []
        return vector_vector(
            op, as_vector(lhs), as_vector(rhs), on, names, card, group, return_bool
        )


_SHARED = (pp.Call, pp.AggregateExpr, pp.BinaryExpr)  # what `instant_many` evaluates once


def _text(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v) if v != int(v) or abs(v) >= 1e15 else str(int(v))


def _range_ms(e: pp.Expr) -> int:
    if isinstance(e, pp.MatrixSelector | pp.SubqueryExpr):
        return _ms(e.range)
    raise Unsupported("expected a range selector or a subquery")


def _offset_ms(e: pp.Expr) -> int:
    inner = e.vector_selector if isinstance(e, pp.MatrixSelector) else e
    return _ms(getattr(inner, "offset", None))
