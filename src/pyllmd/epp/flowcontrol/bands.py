"""Flow-control settings (spec §8) from the decoded `flowControl` section.

`config_schema` only decodes the section; the rules that make a value invalid
(negative sizes or TTL, a priority listed twice) live here, next to the
defaults they protect, and fail start-up as configuration errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pyllmd.core.errors import ConfigError
from pyllmd.epp.config.schema import FlowControlSpec

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


def _bytes(value: int, where: str) -> int:
    if value < 0:
        raise ConfigError(f"flowControl: {where} cannot be negative, got {value}")
    return value or DEFAULT_BAND_MAX_BYTES


def flow_control_config(spec: FlowControlSpec | None) -> FlowControlConfig:
    """Validate the decoded section and apply defaults (no section: all defaults)."""
    if spec is None:
        return FlowControlConfig()
    if spec.max_bytes < 0:
        raise ConfigError(f"flowControl: maxBytes cannot be negative, got {spec.max_bytes}")
    if spec.default_request_ttl < 0:
        raise ConfigError(
            f"flowControl: defaultRequestTTL cannot be negative, got {spec.default_request_ttl}s"
        )
    template = spec.default_priority_band
    default_bytes = _bytes(template.max_bytes if template else 0, "defaultPriorityBand.maxBytes")
    bands: dict[int, BandConfig] = {}
    for i, band in enumerate(spec.priority_bands):
        if band.priority in bands:
            raise ConfigError(f"flowControl: duplicate priority level {band.priority}")
        size = _bytes(band.max_bytes, f"priorityBands[{i}].maxBytes")
        bands[band.priority] = BandConfig(band.priority, f"priority-{band.priority}", size)
    return FlowControlConfig(spec.max_bytes, spec.default_request_ttl, default_bytes, bands)
