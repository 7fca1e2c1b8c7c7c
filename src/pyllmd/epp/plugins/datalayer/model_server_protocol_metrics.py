"""`model-server-protocol-metrics`: which Prometheus series feed which endpoint metric.

Two parameter shapes are accepted (spec §4.2, project decision):
* the pinned flat specs `queueRequestsSpec`, `runningRequestsSpec`, `kvUsageSpec`,
  `loraSpec`, `cacheInfoSpec` (keys matched case-insensitively, unknown keys
  ignored), one set for every pod — they replace the built-in `vllm` profile;
* later GIE's `engineConfigs` (a list of `{name, queuedRequestsSpec, ...}`),
  chosen per pod by the label `engineLabelKey`
  (`inference.networking.k8s.io/engine-type`), with `defaultEngine` (`vllm`)
  for pods without the label. Built-in `vllm` and `sglang` profiles are always
  present; an entry of the same name replaces one. A field an entry leaves out
  is not scraped.
A pod whose label names no known engine uses the default engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyllmd.epp.plugins.base import PluginBase, params
from pyllmd.epp.plugins.datalayer.mapping import (
    DEFAULT_VLLM_MAPPING,
    SGLANG_MAPPING,
    VLLM_SPECS,
    MetricMapping,
)
from pyllmd.epp.scheduling.registry import Handle, Params
from pyllmd.epp.scheduling.types import Endpoint

TYPE = "model-server-protocol-metrics"
ENGINE_LABEL_KEY = "inference.networking.k8s.io/engine-type"
DEFAULT_ENGINE = "vllm"
FLAT_KEYS = ("queueRequestsSpec", "runningRequestsSpec", "kvUsageSpec", "loraSpec", "cacheInfoSpec")
ENGINE_KEYS = ("queuedRequestsSpec",) + FLAT_KEYS[1:]


class ModelServerProtocolMetrics(PluginBase):
    """Per-engine metric mappings and the rule that picks one for an endpoint."""

    TYPE = TYPE
    ROLE = "extractor"

    def __init__(
        self,
        name: str = "",
        engines: Mapping[str, MetricMapping] | None = None,
        label_key: str = ENGINE_LABEL_KEY,
        default_engine: str = DEFAULT_ENGINE,
    ) -> None:
        super().__init__(name)
        self.engines = dict(engines or builtin_engines())
        if default_engine not in self.engines:
            known = ", ".join(sorted(self.engines))
            raise ValueError(f"defaultEngine '{default_engine}' is not one of: {known}")
        self.label_key = label_key
        self.default_engine = default_engine

    def engine_of(self, endpoint: Endpoint) -> str:
        """The engine profile name for `endpoint` (by its pod label)."""
        engine = endpoint.labels.get(self.label_key, "")
        return engine if engine in self.engines else self.default_engine

    def mapping(self, endpoint: Endpoint) -> MetricMapping:
        """The series to read for `endpoint`."""
        return self.engines[self.engine_of(endpoint)]


def builtin_engines() -> dict[str, MetricMapping]:
    return {"vllm": DEFAULT_VLLM_MAPPING, "sglang": SGLANG_MAPPING}


def _mapping(p: Params, keys: tuple[str, ...], defaults: tuple[str, ...]) -> MetricMapping:
    specs = [p.get_str(k, d) for k, d in zip(keys, defaults, strict=True)]
    try:
        return MetricMapping.from_specs(*specs)
    except ValueError as err:
        raise ValueError(f"invalid metric spec: {err}") from None


def factory(name: str, raw: Any, handle: Handle) -> ModelServerProtocolMetrics:
    """Flat `*Spec` parameters and/or `engineConfigs`, `engineLabelKey`, `defaultEngine`."""
    p = params(raw, "metrics.Parameters")
    engines = builtin_engines()
    engines["vllm"] = _mapping(p, FLAT_KEYS, VLLM_SPECS)
    for i, item in enumerate(p.get_objects("engineConfigs")):
        entry = params(item, "metrics.EngineConfig")
        engine = entry.get_str("name", "")
        if not engine:
            raise ValueError(f"engineConfigs[{i}] has no name")
        engines[engine] = _mapping(entry, ENGINE_KEYS, ("",) * len(ENGINE_KEYS))
    return ModelServerProtocolMetrics(
        name,
        engines,
        p.get_str("engineLabelKey", "") or ENGINE_LABEL_KEY,
        p.get_str("defaultEngine", "") or DEFAULT_ENGINE,
    )
