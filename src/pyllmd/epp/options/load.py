"""Loading `pyllmd epp`'s settings: the command line and environment into `EppOptions`,
validated in spec §1.2's order, one `ConfigError` line per failure.

Durations follow Go's `time.ParseDuration` (a unit is required). The environment
variables are the model's (`NAMESPACE`, `POD_NAME` and the deprecated ones of spec
§1.3, whose invalid values give their defaults, with a warning).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence

from pyllmd.core.errors import ConfigError
from pyllmd.core.flags import (
    format_duration,
    go_parse_duration_ns,
    parse_go_bool,
    parse_go_float,
    quote_go,
)
from pyllmd.core.listen import host_error
from pyllmd.core.settings import CommandLine, Setting, build, parse_command_line, settings_of
from pyllmd.core.zap import zap_error
from pyllmd.epp.options.model import (
    DEPRECATED_METRIC_FLAGS,
    ENV_FEATURE_GATES,
    POOL_GROUPS,
    POSITIVE_DURATIONS,
    PROG,
    SERVER_PORTS,
    EppOptions,
    parse_label_map,
    parse_static_endpoints,
)

__all__ = ["NO_POOL", "load"]

NO_POOL = (
    "either pool-name or endpoint-selector must be set "
    "(or, without Kubernetes, --static-endpoints or --endpoints-file)"
)
_POD_NAME = re.compile(r"^(.+)-[a-z0-9]+-[a-z0-9]+$")

Values = Mapping[str, object]  # field -> effective value of its flag


@functools.cache
def _rows() -> dict[str, Setting]:
    return {row.field: row for row in settings_of(EppOptions)}


def _env(field: str) -> tuple[str, ...]:
    """The environment variables the model declares for `field`."""
    return _rows()[field].env


def _parse(argv: Sequence[str]) -> tuple[CommandLine, Values]:
    """pflag parsing: the given flags and every flag's effective value."""
    line = parse_command_line(EppOptions, argv, PROG, go_durations=True)
    if (error := zap_error(line.parsed.values)) is not None:
        raise ConfigError(error)
    return line, line.effective()


def _check_values(v: Values) -> None:
    """pyllmd's value rules, where upstream would fail later (listen, ticker) or misbehave."""
    taken: dict[int, str] = {}
    for name in (*SERVER_PORTS, "model-server-metrics-port"):
        port = v[name.replace("-", "_")]
        assert isinstance(port, int)
        if not 0 <= port <= 65535:
            zero = "picks a free port" if name in SERVER_PORTS else "scrapes the serving port"
            raise ConfigError(f"--{name}: invalid port {port} (0 to 65535; 0 {zero})")
        if name in SERVER_PORTS and port:
            if port in taken:
                raise ConfigError(f"--{taken[port]} and --{name} are both port {port}")
            taken[port] = name
    for name in POSITIVE_DURATIONS:
        if (seconds := float(str(v[name.replace("-", "_")]))) <= 0:
            raise ConfigError(f"--{name}: must be positive, got {format_duration(seconds)}")
    if (seconds := float(str(v["metrics_staleness_threshold"]))) < 0:
        raise ConfigError(
            f"--metrics-staleness-threshold: must not be negative, got {format_duration(seconds)}"
        )
    group = str(v["pool_group"])
    if group not in POOL_GROUPS:
        raise ConfigError(
            f"--pool-group: unknown InferencePool group {quote_go(group)} "
            f"(use {POOL_GROUPS[0]} or {POOL_GROUPS[1]} for v1alpha2)"
        )
    host = str(v["bind_address"])
    if host and (error := host_error(host)) is not None:
        raise ConfigError(f"--bind-address: {error}")


def _ports(raw: Sequence[str]) -> tuple[int, ...]:
    """pflag IntSlice values (`strconv.Atoi`), duplicates dropped keeping the first."""
    out: list[int] = []
    for item in raw:
        if re.fullmatch(r"[+-]?[0-9]+", item) is None:
            raise ConfigError(
                f"invalid argument {quote_go(','.join(raw))} for "
                f'"--endpoint-target-ports" flag: strconv.Atoi: parsing {quote_go(item)}: '
                "invalid syntax"
            )
        port = int(item)
        if port not in out:
            out.append(port)
    return tuple(out)


def _target_ports(v: Values) -> tuple[int, ...]:
    """`--endpoint-target-ports` of standalone mode: 1 to 8 ports, each 0 to 65535."""
    raw_ports = v["endpoint_target_ports"]
    assert isinstance(raw_ports, tuple)
    ports = _ports(tuple(str(p) for p in raw_ports))
    if not 1 <= len(ports) <= 8:
        raise ConfigError('flag "endpoint-target-ports" should have length from 1 to 8')
    for port in ports:
        if not 0 <= port <= 65535:
            raise ConfigError(f'invalid port number {port} in "endpoint-target-ports"')
    return ports


# ---------------------------------------------------------------- environment


def _env_bool(env: Mapping[str, str], name: str, warnings: list[str]) -> bool:
    """Go `strconv.ParseBool`; unparsable is false with a warning."""
    raw = env.get(name)
    if raw is None:
        return False
    try:
        return parse_go_bool(raw)
    except ValueError:
        warnings.append(
            f"environment variable {name}={quote_go(raw)} is not a boolean; using false"
        )
        return False


def _env_overrides(env: Mapping[str, str], warnings: list[str]) -> dict[str, object]:
    """The deprecated environment variables of spec §1.3 (invalid values give defaults)."""
    out: dict[str, object] = {}
    gates = []
    for name, gate in zip(_env("env_feature_gates"), ENV_FEATURE_GATES, strict=True):
        if name in env:
            warnings.append(
                f"{name} is deprecated; add {gate!r} to featureGates in the config file"
            )
        if _env_bool(env, name, warnings):
            gates.append(gate)
    out["env_feature_gates"] = tuple(gates)
    (depth_name,) = _env("sd_queue_depth_threshold")
    if (raw := env.get(depth_name)) is not None:
        value = int(raw) if re.fullmatch(r"[+-]?[0-9]+", raw) else 0
        out["sd_queue_depth_threshold"] = value if value > 0 else 5
    (util_name,) = _env("sd_kv_cache_util_threshold")
    if (raw := env.get(util_name)) is not None:
        try:
            util = parse_go_float(raw)
        except ValueError:
            util = 0.0
        out["sd_kv_cache_util_threshold"] = util if 0 < util < 1 else 0.8
    (stale_name,) = _env("sd_metrics_staleness_threshold")
    if (raw := env.get(stale_name)) is not None:
        try:
            ns = go_parse_duration_ns(raw)
        except ValueError:
            ns = 0
        out["sd_metrics_staleness_threshold"] = ns / 1e9 if ns > 0 else 0.2
    for name in (depth_name, util_name, stale_name):
        if name in env:
            warnings.append(
                f"{name} is deprecated; set it under saturationDetector in the config file"
            )
    return out


# ---------------------------------------------------------------- loading


def _check_pool_choice(v: Values) -> None:
    """Spec §1.2 item 1, with `--static-endpoints` and `--endpoints-file` as exclusive choices."""
    pool, selector, static = (
        bool(v["pool_name"]),
        bool(v["endpoint_selector"]),
        bool(v["static_endpoints"]),
    )
    if v["endpoints_file"] and (pool or selector or static):
        raise ConfigError(
            "--endpoints-file can not be combined with pool-name, endpoint-selector "
            "or static-endpoints"
        )
    if v["endpoints_file"]:
        return
    if static and (pool or selector):
        raise ConfigError(
            "--static-endpoints can not be combined with pool-name or endpoint-selector"
        )
    if not static and pool == selector:
        raise ConfigError(
            NO_POOL if not pool else "either pool-name or endpoint-selector must be set"
        )


def _check_flags(line: CommandLine, v: Values) -> None:
    """The config source, the scrape scheme and the refused metric flags."""
    if v["config_text"] and v["config_file"]:
        raise ConfigError(
            'both the "configText" and "configFile" flags can not be set at the same time'
        )
    scheme = str(v["model_server_metrics_scheme"])
    if scheme not in ("http", "https"):
        raise ConfigError(
            f'unexpected {quote_go(scheme)} value for "model-server-metrics-scheme" flag, '
            "it can only be set to 'http' or 'https'"
        )
    for name, (_, param) in DEPRECATED_METRIC_FLAGS.items():
        if name in line.parsed.values:
            raise ConfigError(
                f"flag --{name} is no longer supported: configure the metric in the config file, "
                f"parameter {param} (or engineConfigs) of the model-server-protocol-metrics plugin"
            )


def _standalone_pool(selector_text: str, env: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """Standalone mode: the pool name from the pod's deployment, and the label selector."""
    (pod_env,) = _env("pool_name")
    pod_name = env.get(pod_env)
    if not pod_name:
        raise ConfigError(f"failed to get environment variable {pod_env}")
    match = _POD_NAME.match(pod_name)
    if match is None:
        raise ConfigError(f"failed to parse deployment name from pod name {pod_name}")
    try:
        selector = parse_label_map(selector_text)
    except ValueError as exc:
        raise ConfigError(f'failed to parse flag "endpoint-selector": {exc}') from None
    return match.group(1), selector


def load(argv: Sequence[str], env: Mapping[str, str]) -> EppOptions:
    """`load_options` (options.py)."""
    line, v = _parse(argv)
    warnings: list[str] = []
    _check_pool_choice(v)
    _check_values(v)
    selector_text = str(v["endpoint_selector"])
    ports = _target_ports(v) if selector_text else ()
    _check_flags(line, v)
    pool_name, selector = str(v["pool_name"]), dict[str, str]()
    if selector_text:
        pool_name, selector = _standalone_pool(selector_text, env)
    static = parse_static_endpoints(str(v["static_endpoints"])) if v["static_endpoints"] else ()
    for row in settings_of(EppOptions):
        if row.deprecated and row.field in line.given:
            warnings.append(row.deprecated)
    (namespace_env,) = _env("pool_namespace")
    namespace = str(v["pool_namespace"]) or env.get(namespace_env, "") or "default"
    values = dict(v)
    values.update(
        pool_namespace=namespace,
        pool_name=pool_name,
        endpoint_selector=selector,
        endpoint_target_ports=ports,
        static_endpoints=static,
        **_env_overrides(env, warnings),
    )
    values["warnings"] = tuple(warnings)
    return build(EppOptions, values)
