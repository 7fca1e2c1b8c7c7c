"""Service classes from the `service-classes-config` ConfigMap (spec §2.3, §5.3).

Each data key (by convention `<class>.yaml`) holds one YAML document:

    name: Premium
    priority: 1            # 1 = highest … 100 = lowest
    data:
      - model: meta/llama0-70b
        slo-tpot: 80       # ms, the ITL target
        slo-ttft: 500      # ms

A missing or out-of-range priority becomes 100. The class `Free` (priority 100, no
per-model targets) always exists and serves servers that name no class. Entries that
fail to parse are skipped and reported; the others still apply. When two keys name
the same class, the first key in sorted order wins.

Only the legacy queueing path reads this ConfigMap; library only, as upstream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pyllmd.autoscaler.decide.analyze.queueing.sizing import Targets

CONFIG_MAP_NAME = "service-classes-config"
DEFAULT_CLASS_NAME = "Free"
HIGHEST_PRIORITY = 1
LOWEST_PRIORITY = 100


@dataclass(frozen=True)
class ModelSlo:
    """Per-model latency targets of a class (ms; 0 = none)."""

    slo_tpot_ms: float = 0.0
    slo_ttft_ms: float = 0.0

    def targets(self) -> Targets:
        return Targets(ttft_ms=self.slo_ttft_ms, itl_ms=self.slo_tpot_ms)


@dataclass(frozen=True)
class ServiceClass:
    name: str
    priority: int = LOWEST_PRIORITY
    models: Mapping[str, ModelSlo] = field(default_factory=dict)

    def targets_for(self, model: str) -> Targets | None:
        """The model's targets in this class, or None when the class does not list it."""
        slo = self.models.get(model)
        return slo.targets() if slo is not None else None


DEFAULT_CLASS = ServiceClass(DEFAULT_CLASS_NAME, LOWEST_PRIORITY)


@dataclass(frozen=True)
class ServiceClasses:
    """The parsed ConfigMap: classes by name (always with `Free`) and skipped entries."""

    classes: Mapping[str, ServiceClass]
    errors: tuple[str, ...] = ()

    def get(self, name: str = "") -> ServiceClass | None:
        """The named class; "" means the default class `Free`."""
        return self.classes.get(name or DEFAULT_CLASS_NAME)


def _number(entry: Mapping[str, Any], key: str) -> float:
    value = entry.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{key} must be a number >= 0, got {value!r}")
    return float(value)


def _priority(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if HIGHEST_PRIORITY <= value <= LOWEST_PRIORITY:
            return value
        return LOWEST_PRIORITY
    if value is None:
        return LOWEST_PRIORITY
    raise ValueError(f"priority must be an integer, got {value!r}")


def service_class(doc: object) -> ServiceClass:
    """One decoded data value as a class; raises ValueError naming what is wrong."""
    if not isinstance(doc, dict):
        raise ValueError("must be a YAML mapping")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty string")
    rows = doc.get("data") or []
    if not isinstance(rows, list):
        raise ValueError("data must be a list")
    models: dict[str, ModelSlo] = {}
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("model"), str):
            raise ValueError("each data item needs a model name")
        models[row["model"]] = ModelSlo(_number(row, "slo-tpot"), _number(row, "slo-ttft"))
    return ServiceClass(name, _priority(doc.get("priority")), models)


def service_classes(data: Mapping[str, str], decode: Callable[[str], object]) -> ServiceClasses:
    """All classes of the ConfigMap's `data` (each value decoded by `decode`, which raises
    ValueError), plus the default class when not defined."""
    classes: dict[str, ServiceClass] = {}
    errors: list[str] = []
    for key in sorted(data):
        try:
            cls = service_class(decode(data[key]))
        except ValueError as exc:
            errors.append(f"{key}: {exc}")
            continue
        if cls.name in classes:
            errors.append(f"{key}: duplicate class {cls.name!r}, ignored")
            continue
        classes[cls.name] = cls
    classes.setdefault(DEFAULT_CLASS_NAME, DEFAULT_CLASS)
    return ServiceClasses(classes, tuple(errors))
