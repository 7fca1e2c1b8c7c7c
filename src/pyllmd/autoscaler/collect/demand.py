"""What the scale-from-zero loop reads of the endpoint pickers: their flow-control queue.

The contract (`EppMetricsScraper`) and the pure reading of its answer; the HTTP scraper is
`epp.py`, and `pyllmd simulate` answers from its endpoint picker's queues.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pyllmd.core.sample import Sample

QUEUE_SIZE_METRIC = "inference_extension_flow_control_queue_size"


def pending_demand(samples: Iterable[Sample], model_id: str) -> bool:
    """True iff some flow-control queue-size sample for `model_id` is above 0."""
    return any(
        s.name == QUEUE_SIZE_METRIC
        and s.value > 0
        and s.labels.get("target_model_name") == model_id
        for s in samples
    )


@dataclass(frozen=True)
class ScrapeResult:
    """Samples per scraped URL, and the URLs that failed with why."""

    per_target: Mapping[str, tuple[Sample, ...]] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def samples(self) -> list[Sample]:
        """Every sample of every target that answered."""
        return [s for samples in self.per_target.values() for s in samples]


class EppMetricsScraper(Protocol):
    """Scrapes endpoint pickers' metrics (`epp.EppScraper` over HTTP)."""

    async def scrape(self, urls: Sequence[str]) -> ScrapeResult:
        """Every URL's samples, or why it failed; never raises for a single target."""
        ...
