"""The values PromQL expressions evaluate to, and label helpers shared by the evaluator's
parts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from pyllmd.simulate.promql.store import Labels


class Unsupported(ValueError):
    """A PromQL construct this evaluator does not cover."""


class Point(NamedTuple):  # a tuple: a query over many series makes one per series
    labels: Labels
    value: float
    t: int | None = None  # the sample's own time (ms), for timestamp()


class Range(NamedTuple):
    labels: Labels
    times: list[int]
    values: list[float]


Vector = list[Point]
Matrix = list[Range]
Value = float | str | Vector | Matrix


def drop_name(labels: Labels) -> Labels:
    return tuple(p for p in labels if p[0] != "__name__")


def signature(labels: Labels, on: bool, names: Sequence[str]) -> Labels:
    if on:
        return tuple(p for p in labels if p[0] in names)
    return tuple(p for p in labels if p[0] not in names and p[0] != "__name__")


def as_vector(v: Value) -> Vector:
    if isinstance(v, list) and (not v or isinstance(v[0], Point)):
        return v  # type: ignore[return-value]
    raise Unsupported("expected an instant vector")


def as_matrix(v: Value) -> Matrix:
    if isinstance(v, list) and (not v or isinstance(v[0], Range)):
        return v  # type: ignore[return-value]
    raise Unsupported("expected a range vector")
