"""YAML decoding for the autoscaler, as Go's yaml.v3 reads it (the shell of the ConfigMaps).

The rules of the saturation, scale-to-zero and service-class ConfigMaps are pure
functions over decoded documents (`decide/configmaps.py`,
`decide/analyze/queueing/serviceclass.py`); this module decodes the text and
passes it to them. `config.py` reads its `--config-file` with the same loader.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from pyllmd.autoscaler.decide.analyze.queueing.serviceclass import (
    ServiceClass,
    ServiceClasses,
    service_class,
    service_classes,
)
from pyllmd.autoscaler.decide.configmaps import (
    ScaleToZeroConfig,
    saturation_configmap,
    saturation_entry,
    scale_to_zero_configmap,
)
from pyllmd.autoscaler.decide.model import SaturationConfig


class Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans, as Go's yaml.v3 reads untyped values: only
    true/false are booleans, so `model_id: off` or `namespace: no` stay strings."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_yaml12(text: str) -> Any:
    """Parse one YAML document with YAML 1.2 booleans (see `Yaml12Loader`)."""
    return yaml.load(text, Loader=Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


def load_document(text: str) -> Any:
    """One ConfigMap entry's YAML document; ValueError (first line of the reason) if invalid."""
    try:
        return load_yaml12(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML: {str(exc).splitlines()[0]}") from None


def load_mapping(text: str) -> dict[str, Any]:
    """One entry's YAML document as a mapping (empty document → {})."""
    doc = load_document(text)
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ValueError("must be a YAML mapping")
    return doc


def parse_saturation_entry(text: str) -> SaturationConfig:
    """One saturation entry (`decide.configmaps.saturation_entry`). Raises ValueError."""
    return saturation_entry(load_mapping(text))


def parse_saturation_configmap(
    data: Mapping[str, str],
) -> tuple[dict[str, SaturationConfig], list[str]]:
    """All valid entries by data key, and one message per skipped entry."""
    return saturation_configmap(data, load_mapping)


def parse_scale_to_zero(data: Mapping[str, str]) -> tuple[ScaleToZeroConfig, list[str]]:
    """The scale-to-zero ConfigMap (`decide.configmaps.scale_to_zero_configmap`)."""
    return scale_to_zero_configmap(data, load_mapping)


def parse_class(text: str) -> ServiceClass:
    """One service-class data value; raises ValueError naming what is wrong."""
    return service_class(load_document(text))


def parse_service_classes(data: Mapping[str, str]) -> ServiceClasses:
    """All classes of the `service-classes-config` ConfigMap, plus the default class."""
    return service_classes(data, load_document)
