"""Priority bands, capacities and the request TTL of the flow-control queues (spec §8).

Built at start-up from the config file's `flowControl` section
(`config/sections.py`, which also rejects invalid values).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_BAND_MAX_BYTES = 1_000_000_000
DYNAMIC_BAND_NAME = "Dynamic-Default"
DEFAULT_FAIRNESS_ID = "default-flow"


@dataclass(frozen=True)
class BandConfig:
    """One priority band: its name and byte capacity."""

    priority: int
    name: str
    max_bytes: int = DEFAULT_BAND_MAX_BYTES


@dataclass(frozen=True)
class FlowControlConfig:
    """Global and per-band capacity, the request TTL and the band policies.

    `max_bytes` 0 means no global limit; `default_ttl` 0 means requests wait until
    dispatched or cancelled. Priorities without a listed band get one built from
    the default band's capacity when first seen.
    """

    max_bytes: int = 0
    default_ttl: float = 0.0
    default_band_max_bytes: int = DEFAULT_BAND_MAX_BYTES
    bands: Mapping[int, BandConfig] = field(default_factory=dict)
    ordering_policy: str = "fcfs-ordering-policy"
    fairness_policy: str = "global-strict-fairness-policy"

    def band(self, priority: int) -> BandConfig:
        """The listed band of `priority`, else a dynamic one from the default template."""
        listed = self.bands.get(priority)
        if listed is not None:
            return listed
        return BandConfig(priority, DYNAMIC_BAND_NAME, self.default_band_max_bytes)
