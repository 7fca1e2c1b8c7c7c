"""The saturation and scale-to-zero ConfigMaps: parsing, validation and resolution (spec §2.3).

Each data key holds one YAML document. Bad entries are skipped with a message
and the others still apply. Pure functions over the decoded documents (the YAML
decoding is the shell's, `autoscaler/yaml12.py`, passed in as `decode`); the
saturation loop decides which map is global and which is namespace-local.

Where this differs from upstream (documented in differences-from-upstream.md):
- V2 defaults (`scaleUpThreshold` 0.85, `scaleDownBoundary` 0.70) are applied
  before validation, so a V2 entry may omit them;
- a saturation key the entry omits takes the shipped default (0.80/5/0.1/3),
  not zero;
- per-model saturation overrides are applied: an entry whose `model_id` (and
  `namespace`, when set) match overrides the fields it sets, except the
  cycle-wide `analyzerName`/`enableLimiter`, which only the global `default` sets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pyllmd.autoscaler.decide.model import SaturationConfig, ScaleToZeroPolicy
from pyllmd.core.gosyntax import go_parse_duration_ns, quote_go

DEFAULT_KEY = "default"
V2_ANALYZER = "saturation"
V2_SCALE_UP_DEFAULT = 0.85
V2_SCALE_DOWN_DEFAULT = 0.70
SCALE_TO_ZERO_CONFIG_MAP_NAME = "wva-model-scale-to-zero-config"
DEFAULT_RETENTION_SECONDS = 600.0
LONG_RETENTION_SECONDS = 24 * 3600.0

# YAML key -> (SaturationConfig field, kind)
_SATURATION_KEYS: dict[str, tuple[str, str]] = {
    "kvCacheThreshold": ("kv_cache_threshold", "float"),
    "queueLengthThreshold": ("queue_length_threshold", "float"),
    "kvSpareTrigger": ("kv_spare_trigger", "float"),
    "queueSpareTrigger": ("queue_spare_trigger", "float"),
    "enableLimiter": ("enable_limiter", "bool"),
    "analyzerName": ("analyzer_name", "str"),
    "scaleUpThreshold": ("scale_up_threshold", "float"),
    "scaleDownBoundary": ("scale_down_boundary", "float"),
    "model_id": ("model_id", "str"),
    "namespace": ("namespace", "str"),
}
_CYCLE_WIDE = frozenset({"analyzer_name", "enable_limiter"})
_IDENTITY = frozenset({"model_id", "namespace"})


# yaml.v3 still accepts the YAML 1.1 spellings when the target field is a bool.
_YAML11_BOOLS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "off", "Off", "OFF"), False),
}


Decode = Callable[[str], Mapping[str, Any]]
"""Decodes one data value (a YAML document) into a mapping; raises ValueError.

The shell's decoder is `yaml12.load_mapping`; the rules here see only its result."""


def _typed(key: str, value: object, kind: str) -> object:
    """A YAML value converted like Go's yaml.v3 into the struct field's type."""
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{key} must be a number, got {quote_go(str(value))}")
        return float(value)
    if kind == "bool":
        value = _YAML11_BOOLS.get(value, value) if isinstance(value, str) else value
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, got {quote_go(str(value))}")
        return value
    if isinstance(value, dict | list):
        raise ValueError(f"{key} must be a string")
    return value if isinstance(value, str) else str(value).lower()


def _fmt(x: float) -> str:
    return f"{x:g}"


def saturation_error(cfg: SaturationConfig) -> str | None:
    """The first broken rule of an entry, or None when it is valid."""
    if not 0 <= cfg.kv_cache_threshold <= 1:
        return f"kvCacheThreshold must be within [0, 1], got {_fmt(cfg.kv_cache_threshold)}"
    if cfg.queue_length_threshold < 0:
        return f"queueLengthThreshold must be >= 0, got {_fmt(cfg.queue_length_threshold)}"
    if not 0 <= cfg.kv_spare_trigger <= 1:
        return f"kvSpareTrigger must be within [0, 1], got {_fmt(cfg.kv_spare_trigger)}"
    if cfg.queue_spare_trigger < 0:
        return f"queueSpareTrigger must be >= 0, got {_fmt(cfg.queue_spare_trigger)}"
    if cfg.kv_cache_threshold < cfg.kv_spare_trigger:
        return (
            f"kvCacheThreshold ({_fmt(cfg.kv_cache_threshold)}) must be >= "
            f"kvSpareTrigger ({_fmt(cfg.kv_spare_trigger)})"
        )
    if cfg.analyzer_name != V2_ANALYZER:
        return None
    if not 0 < cfg.scale_up_threshold <= 1:
        return f"scaleUpThreshold must be within (0, 1], got {_fmt(cfg.scale_up_threshold)}"
    if not 0 < cfg.scale_down_boundary <= 1:
        return f"scaleDownBoundary must be within (0, 1], got {_fmt(cfg.scale_down_boundary)}"
    if cfg.scale_up_threshold <= cfg.scale_down_boundary:
        return (
            f"scaleUpThreshold ({_fmt(cfg.scale_up_threshold)}) must be > "
            f"scaleDownBoundary ({_fmt(cfg.scale_down_boundary)})"
        )
    return None


def saturation_entry(doc: Mapping[str, Any]) -> SaturationConfig:
    """One decoded saturation entry; omitted keys take the shipped defaults, V2 defaults are
    applied (zero counts as omitted, as upstream), then the entry is validated. Raises
    ValueError."""
    values: dict[str, object] = {}
    for key, (name, kind) in _SATURATION_KEYS.items():
        if doc.get(key) is not None:
            values[name] = _typed(key, doc[key], kind)
    if values.get("analyzer_name") == V2_ANALYZER:
        if not values.get("scale_up_threshold"):
            values["scale_up_threshold"] = V2_SCALE_UP_DEFAULT
        if not values.get("scale_down_boundary"):
            values["scale_down_boundary"] = V2_SCALE_DOWN_DEFAULT
    cfg = SaturationConfig(**values, fields_set=frozenset(values))  # type: ignore[arg-type]
    if (error := saturation_error(cfg)) is not None:
        raise ValueError(error)
    return cfg


def saturation_configmap(
    data: Mapping[str, str], decode: Decode
) -> tuple[dict[str, SaturationConfig], list[str]]:
    """All valid entries by data key, and one message per skipped entry."""
    entries: dict[str, SaturationConfig] = {}
    errors: list[str] = []
    for key in sorted(data):
        try:
            entries[key] = saturation_entry(decode(data[key]))
        except ValueError as exc:
            errors.append(f"saturation config entry {quote_go(key)} skipped: {exc}")
    return entries, errors


def _find_override(
    entries: Mapping[str, SaturationConfig], namespace: str, model_id: str
) -> SaturationConfig | None:
    """The override for the model: a namespace-specific entry beats a namespace-less one;
    among equals the lexicographically first key wins."""
    best: SaturationConfig | None = None
    for key in sorted(entries):
        entry = entries[key]
        if key == DEFAULT_KEY or not entry.model_id or entry.model_id != model_id:
            continue
        if entry.namespace and entry.namespace != namespace:
            continue
        if best is None or (entry.namespace and not best.namespace):
            best = entry
    return best


def resolve_saturation(
    global_entries: Mapping[str, SaturationConfig],
    local_entries: Mapping[str, SaturationConfig],
    namespace: str,
    model_id: str,
) -> SaturationConfig | None:
    """The thresholds for one model: the namespace-local map (when non-empty) replaces the
    global one; its `default` entry, with the model's override applied; None when the map
    has no `default` (the model is skipped). An override whose merge breaks a rule is ignored."""
    entries = local_entries if local_entries else global_entries
    base = entries.get(DEFAULT_KEY)
    if base is None:
        return None
    override = _find_override(entries, namespace, model_id)
    if override is None:
        return base
    changes = {
        name: getattr(override, name)
        for name in override.fields_set
        if name not in _CYCLE_WIDE and name not in _IDENTITY
    }
    merged = dataclasses.replace(
        base,
        **changes,
        model_id=override.model_id,
        namespace=override.namespace,
        fields_set=base.fields_set | frozenset(changes),
    )
    return base if saturation_error(merged) is not None else merged


def cycle_settings(global_entries: Mapping[str, SaturationConfig]) -> tuple[str, bool]:
    """`(analyzerName, enableLimiter)` for the whole cycle: from the global `default` only."""
    base = global_entries.get(DEFAULT_KEY)
    return (base.analyzer_name, base.enable_limiter) if base else ("", False)


# ---------------------------------------------------------------- scale to zero


@dataclass(frozen=True, slots=True)
class ScaleToZeroEntry:
    """One scale-to-zero entry as written (`retention` unvalidated until resolution)."""

    model_id: str = ""
    namespace: str = ""
    enable: bool | None = None
    retention: str = ""


@dataclass(frozen=True, slots=True)
class ScaleToZeroConfig:
    """A parsed scale-to-zero ConfigMap: the `default` entry and per-model entries."""

    default: ScaleToZeroEntry | None = None
    models: Mapping[str, ScaleToZeroEntry] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.default is not None or bool(self.models)


def retention_seconds(text: str) -> float:
    """A retention period (Go duration, > 0) in seconds; raises ValueError."""
    if not text:
        raise ValueError("retention_period is empty")
    try:
        ns = go_parse_duration_ns(text)
    except ValueError as exc:
        raise ValueError(f"retention_period {quote_go(text)}: {exc}") from None
    if ns <= 0:
        raise ValueError(f"retention_period must be positive, got {quote_go(text)}")
    return ns / 1e9


def _scale_to_zero_entry(doc: Mapping[str, Any]) -> ScaleToZeroEntry:
    enable = doc.get("enable_scale_to_zero")
    if enable is not None:
        enable = bool(_typed("enable_scale_to_zero", enable, "bool"))
    values = {
        k: str(_typed(k, doc[k], "str"))
        for k in ("model_id", "namespace", "retention_period")
        if doc.get(k) is not None
    }
    return ScaleToZeroEntry(
        model_id=values.get("model_id", ""),
        namespace=values.get("namespace", ""),
        enable=enable,
        retention=values.get("retention_period", ""),
    )


def _retention_notes(key: str, entry: ScaleToZeroEntry) -> list[str]:
    if not entry.retention:
        return []
    try:
        seconds = retention_seconds(entry.retention)
    except ValueError as exc:
        return [f"scale-to-zero entry {quote_go(key)}: {exc}; falling back"]
    if seconds > LONG_RETENTION_SECONDS:
        return [
            f"scale-to-zero entry {quote_go(key)}: retention_period "
            f"{quote_go(entry.retention)} is unusually long (> 24h)"
        ]
    return []


def scale_to_zero_configmap(
    data: Mapping[str, str], decode: Decode
) -> tuple[ScaleToZeroConfig, list[str]]:
    """Entries in sorted key order: `default`, then per-model entries (model_id required;
    for a duplicate model_id the lexicographically first key wins). Also returns messages
    for skipped entries, invalid or very long retention periods."""
    default: ScaleToZeroEntry | None = None
    models: dict[str, ScaleToZeroEntry] = {}
    winners: dict[str, str] = {}
    notes: list[str] = []
    for key in sorted(data):
        try:
            entry = _scale_to_zero_entry(decode(data[key]))
        except ValueError as exc:
            notes.append(f"scale-to-zero entry {quote_go(key)} skipped: {exc}")
            continue
        if key == DEFAULT_KEY:
            default = entry
        elif not entry.model_id:
            notes.append(f"scale-to-zero entry {quote_go(key)} skipped: model_id is required")
            continue
        elif entry.model_id in winners:
            notes.append(
                f"scale-to-zero entry {quote_go(key)} skipped: model_id "
                f"{quote_go(entry.model_id)} already set by {quote_go(winners[entry.model_id])}"
            )
            continue
        else:
            winners[entry.model_id] = key
            models[entry.model_id] = entry
        notes.extend(_retention_notes(key, entry))
    return ScaleToZeroConfig(default=default, models=models), notes


def _valid_retention(text: str) -> float | None:
    try:
        return retention_seconds(text)
    except ValueError:
        return None


def resolve_scale_to_zero(
    global_config: ScaleToZeroConfig,
    local_config: ScaleToZeroConfig,
    model_id: str,
    env_enabled: bool,
) -> ScaleToZeroPolicy:
    """The model's policy. The namespace-local config (when non-empty) replaces the global.
    enable: per-model if set → `default` if set → `env_enabled` (WVA_SCALE_TO_ZERO).
    retention: per-model if valid → `default` if set (invalid → 10 min) → 10 min."""
    cfg = local_config if local_config else global_config
    model = cfg.models.get(model_id)
    default = cfg.default
    enabled = env_enabled
    if model is not None and model.enable is not None:
        enabled = model.enable
    elif default is not None and default.enable is not None:
        enabled = default.enable
    retention = DEFAULT_RETENTION_SECONDS
    model_retention = _valid_retention(model.retention) if model and model.retention else None
    if model_retention is not None:
        retention = model_retention
    elif default is not None and default.retention:
        retention = _valid_retention(default.retention) or DEFAULT_RETENTION_SECONDS
    return ScaleToZeroPolicy(enabled=enabled, retention_seconds=retention)


def format_retention(seconds: float) -> str:
    """The PromQL range of a retention: the largest whole unit (`1d`, `2h`, `10m`, `90s`),
    minimum `1s`."""
    whole = int(seconds)
    if whole < 1:
        return "1s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"
