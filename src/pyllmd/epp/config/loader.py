"""EndpointPickerConfig loading (spec §5): strict decode, plugins, defaults, scheduler.

Decoding lives in `schema.py`. Every failure is a `ConfigError` whose
message starts with upstream's wrapper: `failed to parse config - ` (decoding, feature gates) or
`failed to load the configuration - ` (everything after).

Deviations, on purpose: no config at all means `DEFAULT_CONFIG` (the GIE helm
chart's), not a crash; where upstream picks "any" picker (Go map order) the
first declared one is used; the flow-control default policy plugins are not
instantiated (every band uses FCFS and global-strict fairness, see `flowcontrol`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pyllmd.core.errors import ConfigError
from pyllmd.core.gosyntax import printable
from pyllmd.epp.config.schema import (
    API_VERSION,
    KIND,
    DecodeError,
    PluginSpec,
    ProfilePluginRef,
    ProfileSpec,
    RawConfig,
    decode_config,
)
from pyllmd.epp.config.sections import (
    FEATURE_GATES,
    GATE_DATA_LAYER,
    data_layer,
    env_gates,
    models_source,
    saturation_config,
)
from pyllmd.epp.saturation import SaturationConfig
from pyllmd.epp.scheduling.interfaces import Plugin, ProfileHandler
from pyllmd.epp.scheduling.registry import (
    ROLE_FILTER,
    ROLE_PICKER,
    ROLE_PROFILE_HANDLER,
    ROLE_SCORER,
    Handle,
    Registry,
    roles,
)
from pyllmd.epp.scheduling.runner import Profile, ProfileRunner

SINGLE_PROFILE_HANDLER = "single-profile-handler"
MAX_SCORE_PICKER = "max-score-picker"
PARSE_PREFIX = "failed to parse config - "
LOAD_PREFIX = "failed to load the configuration - "

DEFAULT_CONFIG = f"""\
apiVersion: {API_VERSION}
kind: {KIND}
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
"""


@dataclass(frozen=True)
class EppConfig:
    """The effective configuration: instantiated plugins and the built scheduler."""

    raw: RawConfig
    feature_gates: frozenset[str]
    plugins: Mapping[str, Plugin]  # declaration order, system defaults last
    profile_specs: tuple[ProfileSpec, ...]
    profiles: Mapping[str, Profile]
    handler_name: str
    saturation: SaturationConfig
    scheduler: ProfileRunner = field(compare=False)
    metrics_source: Plugin | None = None  # `metrics-data-source` (data layer on)
    metrics_extractor: Plugin | None = None  # `model-server-protocol-metrics`, if any
    models_source: Plugin | None = None  # `models-data-source` with its extractor (data layer on)

    def enabled(self, gate: str) -> bool:
        """Whether a feature gate is on."""
        return gate in self.feature_gates


# ------------------------------------------------------------------ pipeline


def _instantiate(specs: list[PluginSpec], registry: Registry, handle: Handle) -> None:
    names: set[str] = set()
    for spec in specs:
        if not spec.type:
            raise ConfigError(f"plugin '{spec.name}' is missing a type")
        if spec.name in names:
            raise ConfigError(f"duplicate plugin name '{spec.name}'")
        names.add(spec.name)
        factory = registry.get(spec.type)
        if factory is None:
            raise ConfigError(f"plugin type '{spec.type}' is not registered")
        try:
            plugin = factory(spec.name, spec.parameters, handle)
        except (ValueError, TypeError) as err:
            raise ConfigError(
                f"failed to create plugin '{spec.name}' (type: {spec.type}): {err}"
            ) from None
        handle.plugins[spec.name] = plugin


def _add_default(type_name: str, registry: Registry, handle: Handle) -> None:
    factory = registry.get(type_name)
    if factory is None:
        raise ConfigError(f"plugin type '{type_name}' not found in registry")
    handle.plugins[type_name] = factory(type_name, None, handle)


def _system_defaults(
    profiles: list[ProfileSpec], registry: Registry, handle: Handle
) -> list[ProfileSpec]:
    declared = dict(handle.plugins)
    sched_roles = {ROLE_FILTER, ROLE_SCORER, ROLE_PICKER}
    if not profiles:
        refs = tuple(ProfilePluginRef(n) for n, p in declared.items() if roles(p) & sched_roles)
        profiles = [ProfileSpec("default", refs)]
    if len(profiles) == 1 and not any(ROLE_PROFILE_HANDLER in roles(p) for p in declared.values()):
        _add_default(SINGLE_PROFILE_HANDLER, registry, handle)
    picker = next((n for n, p in declared.items() if ROLE_PICKER in roles(p)), "")
    if not picker:
        _add_default(MAX_SCORE_PICKER, registry, handle)
        picker = MAX_SCORE_PICKER
    out: list[ProfileSpec] = []
    for prof in profiles:
        new_refs: list[ProfilePluginRef] = []
        has_picker = False
        for ref in prof.plugins:
            plugin_roles = roles(handle.plugin(ref.plugin_ref))
            if ROLE_SCORER in plugin_roles and ref.weight is None:
                ref = ProfilePluginRef(ref.plugin_ref, 1.0)
            has_picker = has_picker or ROLE_PICKER in plugin_roles
            new_refs.append(ref)
        if not has_picker:
            new_refs.append(ProfilePluginRef(picker))
        out.append(ProfileSpec(prof.name, tuple(new_refs)))
    return out


def _validate_profiles(profiles: list[ProfileSpec], plugins: Mapping[str, Plugin]) -> None:
    seen: set[str] = set()
    for i, prof in enumerate(profiles):
        if not prof.name:
            raise ConfigError(f"schedulingProfiles[{i}] is missing a name")
        if prof.name in seen:
            raise ConfigError(f"schedulingProfiles[{i}] has duplicate name '{prof.name}'")
        seen.add(prof.name)
        for j, ref in enumerate(prof.plugins):
            if not ref.plugin_ref:
                raise ConfigError(
                    f"schedulingProfiles[{prof.name}].plugins[{j}] is missing a 'pluginRef'"
                )
            if ref.plugin_ref not in plugins:
                raise ConfigError(
                    f"schedulingProfiles[{prof.name}] references undefined plugin "
                    f"'{ref.plugin_ref}'"
                )


def _build_profiles(
    specs: list[ProfileSpec], plugins: Mapping[str, Plugin]
) -> tuple[dict[str, Profile], str]:
    profiles: dict[str, Profile] = {}
    for spec in specs:
        filters: list[Any] = []
        scorers: list[tuple[Any, float]] = []
        picker: tuple[str, Any] | None = None
        for ref in spec.plugins:
            plugin = plugins[ref.plugin_ref]
            plugin_roles = roles(plugin)
            if ROLE_FILTER in plugin_roles:
                filters.append(plugin)
            if ROLE_SCORER in plugin_roles:
                scorers.append((plugin, 1.0 if ref.weight is None else ref.weight))
            if ROLE_PICKER in plugin_roles:
                if picker is not None:
                    raise ConfigError(
                        f"failed to add plugin '{ref.plugin_ref}' to profile '{spec.name}': "
                        f"failed to set '{ref.plugin_ref}/{plugin.type_name}' as picker, already "
                        f"have a registered picker plugin '{picker[0]}/{picker[1].type_name}'"
                    )
                picker = (ref.plugin_ref, plugin)
        assert picker is not None  # system defaults gave every profile one
        profiles[spec.name] = Profile(tuple(filters), tuple(scorers), picker[1])
    handlers = [n for n, p in plugins.items() if ROLE_PROFILE_HANDLER in roles(p)]
    if len(handlers) > 1:
        raise ConfigError(
            f"multiple profile handlers found ('{handlers[0]}', '{handlers[1]}'); "
            "only one is allowed"
        )
    if not handlers:
        raise ConfigError("no profile handler configured")
    if plugins[handlers[0]].type_name == SINGLE_PROFILE_HANDLER and len(profiles) > 1:
        raise ConfigError("SingleProfileHandler cannot support multiple scheduling profiles")
    return profiles, handlers[0]


def _default_registry() -> Registry:
    from pyllmd.epp.plugins import default_registry

    return default_registry()


def load_config_text(
    text: str | None,
    env: Mapping[str, str] | None = None,
    registry: Registry | None = None,
) -> EppConfig:
    """Loads a config text (YAML or JSON); None or "" means `DEFAULT_CONFIG`."""
    env = {} if env is None else env
    registry = registry or _default_registry()
    try:
        raw = decode_config(text or DEFAULT_CONFIG)
    except DecodeError as err:
        raise ConfigError(
            f"{PARSE_PREFIX}failed to decode configuration JSON/YAML: {err}"
        ) from None
    gates = list(raw.feature_gates)
    env_gates(gates, env)
    for gate in gates:
        if gate not in FEATURE_GATES:
            raise ConfigError(
                f"{PARSE_PREFIX}feature gate validation failed: "
                f"feature gate '{gate}' is unknown or unregistered"
            )
    handle = Handle()
    stage = "plugin instantiation failed: "
    try:
        _instantiate(list(raw.plugins), registry, handle)
        stage = "system default application failed: failed to apply scheduling system defaults: "
        profile_specs = _system_defaults(list(raw.profiles), registry, handle)
        stage = "configuration validation failed: scheduling profile validation failed: "
        _validate_profiles(profile_specs, handle.plugins)
        stage = "scheduler config build failed: "
        profiles, handler_name = _build_profiles(profile_specs, handle.plugins)
        stage = ""
        source, extractor = data_layer(raw, GATE_DATA_LAYER in gates, handle.plugins)
        models = models_source(raw, GATE_DATA_LAYER in gates, handle.plugins)
    except ConfigError as err:
        raise ConfigError(f"{LOAD_PREFIX}{stage}{err}") from None
    handler = handle.plugins[handler_name]
    return EppConfig(
        raw=raw,
        feature_gates=frozenset(gates),
        plugins=dict(handle.plugins),
        profile_specs=tuple(profile_specs),
        profiles=profiles,
        handler_name=handler_name,
        saturation=saturation_config(raw.saturation, env),
        scheduler=ProfileRunner(profiles, cast(ProfileHandler, handler)),
        metrics_source=source,
        metrics_extractor=extractor,
        models_source=models,
    )


def load_config_file(
    path: str | Path,
    env: Mapping[str, str] | None = None,
    registry: Registry | None = None,
) -> EppConfig:
    """Reads `path` and loads it like `load_config_text`."""
    shown = printable(str(path))
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, ValueError) as err:  # ValueError: not UTF-8, or a NUL in the path
        reason = (err.strerror if isinstance(err, OSError) else None) or str(err)
        raise ConfigError(
            f"{PARSE_PREFIX}failed to load config from a file '{shown}' - "
            f"open {shown}: {reason.lower()}"
        ) from None
    return load_config_text(text, env, registry)
