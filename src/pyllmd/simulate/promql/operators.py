"""PromQL's binary operators: arithmetic and comparisons between vectors (one-to-one and
`group_left`/`group_right` matching, Prometheus' result labels) and scalars, and the set
operators `and`, `or`, `unless`."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

from pyllmd.simulate.promql.store import Labels
from pyllmd.simulate.promql.values import Point, Value, Vector, as_vector, drop_name, signature

ARITH: dict[str, Callable[[float, float], float]] = {
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
COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}


def set_op(op: str, lhs: Vector, rhs: Vector, on: bool, names: list[str]) -> Vector:
    right = {signature(p.labels, on, names) for p in rhs}
    if op == "and":
        return [p for p in lhs if signature(p.labels, on, names) in right]
    if op == "unless":
        return [p for p in lhs if signature(p.labels, on, names) not in right]
    left = {signature(p.labels, on, names) for p in lhs}
    return lhs + [p for p in rhs if signature(p.labels, on, names) not in left]


def vector_scalar(op: str, lhs: Value, rhs: Value, return_bool: bool) -> Vector:
    scalar_left = isinstance(lhs, float)
    vec = as_vector(rhs if scalar_left else lhs)
    s = float(lhs if scalar_left else rhs)  # type: ignore[arg-type]
    out: Vector = []
    for p in vec:
        a, b = (s, p.value) if scalar_left else (p.value, s)
        if op in COMPARE:
            keep = COMPARE[op](a, b)
            if return_bool:
                out.append(Point(drop_name(p.labels), float(keep)))
            elif keep:
                out.append(Point(p.labels, p.value))
        else:
            out.append(Point(drop_name(p.labels), ARITH[op](a, b)))
    return out


def vector_vector(
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
        sig = signature(p.labels, on, names)
        if sig in index:
            raise ValueError("found duplicate series for the match group on the 'one' side")
        index[sig] = p
    out: Vector = []
    matched: set[Labels] = set()
    for p in many:
        sig = signature(p.labels, on, names)
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
        compare = op in COMPARE
        if compare:
            keep = COMPARE[op](a, b)
            if not keep and not return_bool:
                continue
            value = float(keep) if return_bool else a
        else:
            value = ARITH[op](a, b)
        out.append(
            Point(
                result_labels(
                    p.labels, other.labels, compare and not return_bool, on, names, card, group
                ),
                value,
            )
        )
    return out


def result_labels(
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
