"""Parse Prometheus' text exposition into flat samples.

Uses `prometheus_client`'s own parser (the reference implementation of the
format in Python), flattened to one record per sample because callers (the
autoscaler's EPP scraping) filter samples by name and labels, not by family.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families


class PromTextError(ValueError):
    """The text is not valid Prometheus exposition format."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample line: full sample name (with `_bucket`/`_sum`/... suffix), labels, value."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    value: float = 0.0


def parse_samples(text: str) -> list[Sample]:
    """Every sample of `text` in the order written; raises PromTextError on malformed input."""
    try:
        return [
            Sample(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]
    except (ValueError, IndexError, KeyError) as err:
        raise PromTextError(f"invalid Prometheus text format: {err}") from err
