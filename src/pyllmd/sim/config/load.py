"""Loading the simulator's settings: defaults → YAML (`--config`) → command line →
environment, then validation (`rules.py`).

The names come from the model (`SimConfig` in config.py): flags and YAML keys from
each field's declaration, the environment fallbacks from its `env`. Precedence, as
upstream: `POD_IP` is the default of `ip` (the YAML key `ip` overrides it),
`PYTHONHASHSEED` is used when `--hash-seed` ends up empty, `POD_NAME`,
`POD_NAMESPACE` and `VLLM_SERVER_DEV_MODE` come from the environment only.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

from pydantic import ValidationError

from pyllmd.core.errors import ConfigError, one_line
from pyllmd.core.flags import FlagKind, prescan_values
from pyllmd.core.settings import env_values, parse_command_line, settings_of
from pyllmd.sim.config.model import LoadedConfig, SimConfig
from pyllmd.sim.config.rules import normalize, validate
from pyllmd.sim.config.values import parse_fake_metrics, parse_lora_modules
from pyllmd.sim.config.yamlfile import YamlKind, deprecation_warning, read_yaml_config

__all__ = ["load"]

_YAML_KIND: dict[FlagKind, YamlKind] = {
    FlagKind.BOOL: "bool",
    FlagKind.INT: "int",
    FlagKind.FLOAT: "float",
    FlagKind.STRING: "string",
    FlagKind.DURATION: "duration",
    FlagKind.STRING_LIST: "strings",
}
# Keys whose YAML value is not a plain list of strings.
_YAML_SPECIAL: dict[str, YamlKind] = {"lora-modules": "json-strings", "fake-metrics": "mapping"}


@functools.cache
def _yaml_fields() -> dict[str, str]:
    """YAML key -> field name."""
    return {row.key: row.field for row in settings_of(SimConfig) if row.key}


@functools.cache
def _yaml_kinds() -> dict[str, YamlKind]:
    """YAML key -> value type."""
    return {
        row.key: _YAML_SPECIAL.get(row.key) or _YAML_KIND[row.value_kind]
        for row in settings_of(SimConfig)
        if row.key
    }


def load(argv: Sequence[str], env: Mapping[str, str], now_ns: int, prog: str) -> LoadedConfig:
    """`load_config` (config.py): one-line errors, values quoted in them escaped."""
    try:
        return _load(argv, env, now_ns, prog)
    except ConfigError as e:
        raise ConfigError(one_line(str(e))) from None


def _load(argv: Sequence[str], env: Mapping[str, str], now_ns: int, prog: str) -> LoadedConfig:
    warnings: list[str] = []
    envs = env_values(settings_of(SimConfig), env, empty_is_unset=False)
    values: dict[str, object] = {"seed": now_ns, "ip": envs.get("ip", "")}
    _from_yaml(argv, values, warnings)
    _from_cli(argv, values, warnings, prog)
    if not values.get("hash_seed"):
        values["hash_seed"] = envs.get("hash_seed", "")
    values["pod_name"] = envs.get("pod_name", "")
    values["pod_namespace"] = envs.get("pod_namespace", "")
    values["dev_mode"] = envs.get("dev_mode") == "1"
    try:
        cfg = SimConfig.model_validate(values)
    except ValidationError as exc:  # values are typed above; this guards programming errors
        raise ConfigError(str(exc).splitlines()[0]) from None
    validate(cfg)
    return LoadedConfig(normalize(cfg), tuple(warnings))


def _read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError(f"failed to read configuration file: open {path}: {reason}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"failed to read configuration file: {path}: {exc}") from None


def _from_yaml(argv: Sequence[str], values: dict[str, object], warnings: list[str]) -> None:
    """Apply `--config` (pre-scanned: loaded only when exactly one value follows it)."""
    paths = prescan_values(argv, "config")
    if paths is None:
        return
    if len(paths) != 1:
        warnings.append(f"--config: {len(paths)} values given, no configuration file loaded")
        return
    try:
        found, yaml_warnings = read_yaml_config(_read_file(paths[0]), _yaml_kinds())
    except ConfigError as e:  # upstream's text, naming the flag
        raise ConfigError(f"--config: {e}") from None
    warnings.extend(yaml_warnings)
    fields = _yaml_fields()
    for key, value in found.items():
        if key == "lora-modules":
            value = parse_lora_modules(value if isinstance(value, tuple) else (), key)
        elif key == "fake-metrics":
            value = parse_fake_metrics(value, key, from_yaml=True)
        # Deliberate deviation: upstream re-registers --global-cache-hit-threshold with
        # default 0, which silently discards the YAML value; we honour it.
        values[fields[key]] = value


def _from_cli(
    argv: Sequence[str], values: dict[str, object], warnings: list[str], prog: str
) -> None:
    line = parse_command_line(SimConfig, argv, prog)  # klog's other flags: parsed, ignored
    for field, value in line.given.items():
        if field == "config":
            continue  # pre-scanned
        items = value if isinstance(value, tuple) else ()
        if field == "lora_modules":
            value = parse_lora_modules(items, "--lora-modules")
        elif field == "fake_metrics":
            if not items:
                raise ConfigError("flag needs an argument: --fake-metrics")
            value = parse_fake_metrics(items[0], "--fake-metrics")
        values[field] = value
    for flag, raw in line.parsed.deprecated_ms.items():
        warnings.append(deprecation_warning(flag, raw))
