"""The gateway a stack file puts in front of its pods: `builtin` (the local stack's stand-in)
or `envoy-epp` (Envoy and the endpoint picker), with the picker's EndpointPickerConfig.

Read by `pyllmd up` (which starts that gateway) and by `pyllmd simulate` (which routes with the
same picker in virtual time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyllmd.core.errors import ConfigError
from pyllmd.epp.config.loader import DEFAULT_CONFIG

BUILTIN, ENVOY_EPP = "builtin", "envoy-epp"

# The GIE chart's default plugins (spec §5.3) with the flow-control gate: an empty
# or saturated pool holds requests instead of failing them.
DEFAULT_EPP_CONFIG = DEFAULT_CONFIG.replace(
    "plugins:\n", "featureGates: [flowControl]\nplugins:\n", 1
)


def gateway_settings(doc: Mapping[str, Any], where: str) -> tuple[str, str]:
    """The stack file's `gateway` (`builtin` or `envoy-epp`) and `eppConfig` text."""
    kind = str(doc.get("gateway") or BUILTIN)
    if kind not in (BUILTIN, ENVOY_EPP):
        raise ConfigError(f"{where}: gateway must be {BUILTIN} or {ENVOY_EPP}, not {kind!r}")
    config = doc.get("eppConfig")
    if config is not None and kind != ENVOY_EPP:
        raise ConfigError(f"{where}: eppConfig needs gateway: {ENVOY_EPP}")
    if config is not None and not isinstance(config, str):
        raise ConfigError(f"{where}: eppConfig must be the EndpointPickerConfig YAML as a string")
    return kind, config or DEFAULT_EPP_CONFIG
