"""EndpointPickerConfig schema and strict decoding (spec §5.1).

Hand-written rather than pydantic because users see upstream's error texts
(Kubernetes' strict decoder: unknown and duplicate fields; Go's
`encoding/json`: type mismatches), one line each, and pydantic's differ.
Missing `apiVersion`/`kind` default to the registered ones, as Kubernetes'
decoder does when decoding into a typed object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from pyllmd.core.gosyntax import go_parse_duration_ns, quote_go
from pyllmd.epp.scheduling.registry import json_kind

API_VERSION = "inference.networking.x-k8s.io/v1alpha1"
KIND = "EndpointPickerConfig"


@dataclass(frozen=True)
class PluginSpec:
    name: str
    type: str
    parameters: Any = None  # raw JSON value handed to the factory


@dataclass(frozen=True)
class ProfilePluginRef:
    plugin_ref: str
    weight: float | None = None


@dataclass(frozen=True)
class ProfileSpec:
    name: str
    plugins: tuple[ProfilePluginRef, ...] = ()


@dataclass(frozen=True)
class DataSource:
    plugin_ref: str
    extractors: tuple[str, ...] = ()


@dataclass(frozen=True)
class PriorityBand:
    priority: int = 0
    max_bytes: int = 0


@dataclass(frozen=True)
class FlowControlSpec:
    """Decoded always; acted on only with the `flowControl` gate (later)."""

    max_bytes: int = 0
    default_request_ttl: float = 0.0  # seconds
    default_priority_band: PriorityBand | None = None
    priority_bands: tuple[PriorityBand, ...] = ()


@dataclass(frozen=True)
class RawConfig:
    """The file as decoded (plugin names defaulted to their type)."""

    feature_gates: tuple[str, ...] = ()
    plugins: tuple[PluginSpec, ...] = ()
    profiles: tuple[ProfileSpec, ...] = ()
    saturation: Mapping[str, Any] | None = None  # queueDepthThreshold, kvCache…, staleness s
    data_sources: tuple[DataSource, ...] | None = None  # None: no `data` section
    flow_control: FlowControlSpec | None = None


class DecodeError(Exception):
    """The text is not a valid EndpointPickerConfig document."""


class _StrictLoader(yaml.SafeLoader):
    """YAML → JSON-like values; duplicate keys are errors; timestamps stay strings."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise DecodeError(
                    "error converting YAML to JSON: yaml: unmarshal errors: "
                    f"line {line}: key {quote_go(str(key))} already set in map"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _type_error(value: object, field_path: str, go_type: str) -> DecodeError:
    kind = json_kind(value)
    shown = f"number {value}" if kind == "number" and go_type in ("int", "int64") else kind
    return DecodeError(
        f"json: cannot unmarshal {shown} into Go struct field {field_path} of type {go_type}"
    )


class _Obj:
    """One JSON object decoded strictly: unknown keys fail, types are checked."""

    def __init__(self, value: Any, struct: str, path: str, where: str, allowed: tuple[str, ...]):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise _type_error(value, f"{struct}.{path}".rstrip("."), struct)
        for key in value:
            if key not in allowed:
                raise DecodeError(f'strict decoding error: unknown field "{where}{key}"')
        self.d, self.struct, self.path, self.where = value, struct, path, where

    def _field(self, key: str) -> str:
        return f"{self.struct}.{self.path}{key}"

    def get_str(self, key: str) -> str:
        v = self.d.get(key)
        if v is None:
            return ""
        if not isinstance(v, str):
            raise _type_error(v, self._field(key), "string")
        return v

    def get_int(self, key: str) -> int:
        v = self.d.get(key)
        if v is None:
            return 0
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise _type_error(v, self._field(key), "int")
        if isinstance(v, float) and not v.is_integer():
            raise _type_error(v, self._field(key), "int")
        return int(v)

    def get_float(self, key: str) -> float | None:
        v = self.d.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise _type_error(v, self._field(key), "float64")
        return float(v)

    def get_duration(self, key: str) -> float:
        v = self.d.get(key)
        if v is None:
            return 0.0
        if not isinstance(v, str):
            raise _type_error(v, self._field(key), "string")
        try:
            return go_parse_duration_ns(v) / 1e9
        except ValueError as err:
            raise DecodeError(str(err)) from None

    def get_list(self, key: str, go_type: str) -> list[Any]:
        v = self.d.get(key)
        if v is None:
            return []
        if not isinstance(v, list):
            raise _type_error(v, self._field(key), go_type)
        return v

    def sub(
        self, key: str, struct: str, allowed: tuple[str, ...], index: int | None = None
    ) -> _Obj:
        value = self.d.get(key) if index is None else self.get_list(key, "[]" + struct)[index]
        where = f"{self.where}{key}." if index is None else f"{self.where}{key}[{index}]."
        return _Obj(value, f"{struct}", f"{self.path}{key}.", where, allowed)

    def items(self, key: str, struct: str, allowed: tuple[str, ...]) -> list[_Obj]:
        return [
            self.sub(key, struct, allowed, i) for i in range(len(self.get_list(key, "[]" + struct)))
        ]


def decode_config(text: str) -> RawConfig:
    """Strict decode of YAML or JSON; plugin names default to their type."""
    doc = _load_document(text)
    top = _Obj(
        doc,
        "EndpointPickerConfig",
        "",
        "",
        ("apiVersion", "kind", "featureGates", "plugins", "schedulingProfiles")
        + ("saturationDetector", "data", "flowControl"),
    )
    gates = top.get_list("featureGates", "FeatureGates")
    for g in gates:
        if not isinstance(g, str):
            raise _type_error(g, "EndpointPickerConfig.featureGates", "string")
    plugins = tuple(
        PluginSpec(p.get_str("name") or p.get_str("type"), p.get_str("type"), p.d.get("parameters"))
        for p in top.items("plugins", "PluginSpec", ("name", "type", "parameters"))
    )
    profiles = tuple(
        ProfileSpec(
            prof.get_str("name"),
            tuple(
                ProfilePluginRef(ref.get_str("pluginRef"), ref.get_float("weight"))
                for ref in prof.items("plugins", "SchedulingPlugin", ("pluginRef", "weight"))
            ),
        )
        for prof in top.items("schedulingProfiles", "SchedulingProfile", ("name", "plugins"))
    )
    return RawConfig(
        tuple(gates), plugins, profiles, _saturation(top), _data_sources(top), _flow_control(top)
    )


def _load_document(text: str) -> dict[str, Any]:
    """The YAML/JSON document as a mapping of the right apiVersion and kind."""
    try:
        doc = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else 0
        raise DecodeError(
            f"error converting YAML to JSON: yaml: line {line}: {err.problem}"
        ) from None
    except yaml.YAMLError as err:  # e.g. a reader error: its text spans two lines
        reason = " ".join(str(err).split())
        raise DecodeError(f"error converting YAML to JSON: yaml: {reason}") from None
    if not isinstance(doc, dict) and doc is not None:
        raise DecodeError(f"json: cannot unmarshal {json_kind(doc)} into Go value of type {KIND}")
    doc = doc or {}
    api, kind = doc.get("apiVersion") or API_VERSION, doc.get("kind") or KIND
    if api != API_VERSION or kind != KIND:
        raise DecodeError(f'no kind "{kind}" is registered for version "{api}"')
    return doc


def _saturation(top: _Obj) -> dict[str, Any] | None:
    """`saturationDetector`, when present."""
    if "saturationDetector" not in top.d:
        return None
    sd = top.sub(
        "saturationDetector",
        "SaturationDetector",
        ("queueDepthThreshold", "kvCacheUtilThreshold", "metricsStalenessThreshold"),
    )
    return {
        "queueDepthThreshold": sd.get_int("queueDepthThreshold"),
        "kvCacheUtilThreshold": sd.get_float("kvCacheUtilThreshold") or 0.0,
        "metricsStalenessThreshold": sd.get_duration("metricsStalenessThreshold"),
    }


def _data_sources(top: _Obj) -> tuple[DataSource, ...] | None:
    """`data.sources`, when `data` is given."""
    if top.d.get("data") is None:
        return None
    data = top.sub("data", "DataLayerConfig", ("sources",))
    return tuple(
        DataSource(
            s.get_str("pluginRef"),
            tuple(
                e.get_str("pluginRef")
                for e in s.items("extractors", "DataLayerExtractor", ("pluginRef",))
            ),
        )
        for s in data.items("sources", "DataLayerSource", ("pluginRef", "extractors"))
    )


def _flow_control(top: _Obj) -> FlowControlSpec | None:
    """`flowControl`, when given."""
    if top.d.get("flowControl") is None:
        return None
    band_keys = ("priority", "maxBytes")
    fc = top.sub(
        "flowControl",
        "FlowControlConfig",
        ("maxBytes", "defaultRequestTTL", "defaultPriorityBand", "priorityBands"),
    )
    default_band = None
    if fc.d.get("defaultPriorityBand") is not None:
        b = fc.sub("defaultPriorityBand", "PriorityBandConfig", band_keys)
        default_band = PriorityBand(b.get_int("priority"), b.get_int("maxBytes"))
    return FlowControlSpec(
        fc.get_int("maxBytes"),
        fc.get_duration("defaultRequestTTL"),
        default_band,
        tuple(
            PriorityBand(b.get_int("priority"), b.get_int("maxBytes"))
            for b in fc.items("priorityBands", "PriorityBandConfig", band_keys)
        ),
    )
