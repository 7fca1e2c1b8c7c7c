"""Sections of the EndpointPickerConfig file turned into settings (spec §5, §7, §8, §4.2).

Feature gates (with the deprecated environment variables that add them), the
saturation detector's thresholds (with the deprecated `SD_*` variables), the
`flowControl` bands, and which data-layer plugins feed the scraper. Each
function takes the decoded section (`schema.py`) and raises `ConfigError`
with upstream's message; `loader.py` adds the common prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pyllmd.core.errors import ConfigError
from pyllmd.core.gosyntax import go_parse_duration_ns, parse_go_bool, parse_go_float
from pyllmd.epp.config.schema import FlowControlSpec, RawConfig
from pyllmd.epp.flowcontrol.bands import DEFAULT_BAND_MAX_BYTES, BandConfig, FlowControlConfig
from pyllmd.epp.saturation import (
    DEFAULT_KV_CACHE_UTIL_THRESHOLD,
    DEFAULT_METRICS_STALENESS_THRESHOLD,
    DEFAULT_QUEUE_DEPTH_THRESHOLD,
    SaturationConfig,
)
from pyllmd.epp.scheduling.interfaces import Plugin

GATE_DATA_LAYER = "dataLayer"
GATE_FLOW_CONTROL = "flowControl"
GATE_PREPARE_DATA = "prepareDataPlugins"
FEATURE_GATES = (GATE_DATA_LAYER, GATE_FLOW_CONTROL, GATE_PREPARE_DATA)


def env_gates(gates: list[str], env: Mapping[str, str]) -> None:
    """Deprecated env vars only add gates; unparsable values count as false."""
    for var, gate in (
        ("ENABLE_EXPERIMENTAL_DATALAYER_V2", GATE_DATA_LAYER),
        ("ENABLE_EXPERIMENTAL_FLOW_CONTROL_LAYER", GATE_FLOW_CONTROL),
    ):
        if var in env:
            try:
                on = parse_go_bool(env[var])
            except ValueError:
                on = False
            if on and gate not in gates:
                gates.append(gate)


def _env_int(env: Mapping[str, str], var: str, default: int) -> int:
    try:
        value = int(env[var].strip())
    except ValueError:
        return default
    return value if value > 0 else default


def saturation_config(raw: Mapping[str, Any] | None, env: Mapping[str, str]) -> SaturationConfig:
    """Valid file values over defaults, then the deprecated `SD_*` env vars on top."""
    raw = raw or {}
    queue = raw.get("queueDepthThreshold", 0)
    kv = raw.get("kvCacheUtilThreshold", 0.0)
    stale = raw.get("metricsStalenessThreshold", 0.0)
    queue = queue if queue > 0 else DEFAULT_QUEUE_DEPTH_THRESHOLD
    kv = kv if 0.0 < kv < 1.0 else DEFAULT_KV_CACHE_UTIL_THRESHOLD
    stale = stale if stale > 0 else DEFAULT_METRICS_STALENESS_THRESHOLD
    if "SD_QUEUE_DEPTH_THRESHOLD" in env:
        queue = _env_int(env, "SD_QUEUE_DEPTH_THRESHOLD", DEFAULT_QUEUE_DEPTH_THRESHOLD)
    if "SD_KV_CACHE_UTIL_THRESHOLD" in env:
        try:
            kv = parse_go_float(env["SD_KV_CACHE_UTIL_THRESHOLD"])
        except ValueError:
            kv = DEFAULT_KV_CACHE_UTIL_THRESHOLD
        kv = kv if 0.0 < kv < 1.0 else DEFAULT_KV_CACHE_UTIL_THRESHOLD
    if "SD_METRICS_STALENESS_THRESHOLD" in env:
        try:
            stale = go_parse_duration_ns(env["SD_METRICS_STALENESS_THRESHOLD"]) / 1e9
        except ValueError:
            stale = DEFAULT_METRICS_STALENESS_THRESHOLD
        stale = stale if stale > 0 else DEFAULT_METRICS_STALENESS_THRESHOLD
    return SaturationConfig(queue, kv, stale)


METRICS_SOURCE, METRICS_EXTRACTOR = "metrics-data-source", "model-server-protocol-metrics"
MODELS_SOURCE, MODELS_EXTRACTOR = "models-data-source", "model-server-protocol-models"


def models_source(raw: RawConfig, enabled: bool, plugins: Mapping[str, Plugin]) -> Plugin | None:
    """The `models-data-source` whose extractors include `model-server-protocol-models`."""
    if not enabled:
        return None
    for src in raw.data_sources or ():
        plugin = plugins.get(src.plugin_ref)
        if _type(plugin) != MODELS_SOURCE:
            continue
        if _first_of((plugins[r] for r in src.extractors if r in plugins), MODELS_EXTRACTOR):
            return plugin
    return None


def data_layer(
    raw: RawConfig, enabled: bool, plugins: Mapping[str, Plugin]
) -> tuple[Plugin | None, Plugin | None]:
    """The metrics source and extractor the scraper uses (spec §4.2).

    With the gate off, a declared `model-server-protocol-metrics` plugin still
    sets the legacy scraper's mapping (pyllmd: upstream silently ignores it),
    but referencing it from `data.sources` is refused as upstream does.
    """
    sources = raw.data_sources
    if not enabled:
        for src in sources or ():
            for ref in src.extractors:
                if _type(plugins.get(ref)) == METRICS_EXTRACTOR:
                    raise ConfigError(
                        f"disallowed Extractor {ref} is configured for source {src.plugin_ref}"
                    )
        return None, _first_of(plugins.values(), METRICS_EXTRACTOR)
    if sources is None:
        raise ConfigError(
            "the Datalayer has been enabled. You must specify the Data section in the configuration"
        )
    if not sources:
        raise ConfigError("data layer enabled but no data sources configured")
    source = extractor = None
    for src in sources:
        plugin = plugins.get(src.plugin_ref)
        if plugin is None:
            raise ConfigError(f"data source '{src.plugin_ref}' is not a configured plugin")
        for ref in src.extractors:
            if ref not in plugins:
                raise ConfigError(
                    f"extractor '{ref}' of data source '{src.plugin_ref}' "
                    "is not a configured plugin"
                )
        if _type(plugin) == METRICS_SOURCE and source is None:
            source = plugin
            extractor = _first_of((plugins[r] for r in src.extractors), METRICS_EXTRACTOR)
    return source, extractor


def _type(plugin: Plugin | None) -> str:
    return str(getattr(plugin, "type_name", ""))


def _first_of(plugins: Iterable[Plugin], type_name: str) -> Plugin | None:
    return next((p for p in plugins if _type(p) == type_name), None)


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
