"""One scraped sample as plain data (apart from the text parser, which needs prometheus_client,
so that code that only reads samples, like the virtual-time run, does not import it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample line: full sample name (with `_bucket`/`_sum`/... suffix), labels, value."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    value: float = 0.0
