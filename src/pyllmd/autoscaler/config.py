"""The controller's configuration (spec §2.2): flags, environment and `--config-file`.

One table (`SETTINGS`) drives everything: the pflag specs, the environment and
file keys, the typed `ControllerConfig` and the generated flag reference
(`flags_markdown`, `python -m pyllmd.autoscaler.config --markdown`).

Precedence, as upstream's Viper setup: a flag given on the command line >
environment variable (empty counts as unset) > YAML `--config-file` (keys are
the environment names, case-insensitive) > default. Validation happens once;
each failure is one `ConfigError` line naming the key and the rule.

Differences from upstream, on purpose: a malformed value is an error (Viper
silently reads it as zero/false); `GLOBAL_OPT_INTERVAL` is the engine period
(upstream hard-codes 30 s); `WVA_SCALE_TO_ZERO` from the config file counts;
a client certificate without its key (or the reverse) is an error; every
key may come from the file (upstream reads a few from the process env only).
"""

from __future__ import annotations

import ipaddress
import ssl
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict

from pyllmd.autoscaler.config_table import (
    POOL_GROUPS,
    SETTINGS,
    ZAP_CHOICES,
    Setting,
    render_markdown,
)
from pyllmd.autoscaler.kube.selector import (
    dns_label_error,
    dns_subdomain_error,
    label_value_error,
    parse_label_selector,
)
from pyllmd.autoscaler.yaml12 import load_yaml12
from pyllmd.core.errors import ConfigError
from pyllmd.core.flags import (
    FlagKind,
    FlagSpec,
    HelpRequested,
    ParsedFlags,
    go_parse_duration_ns,
    parse_flags,
    parse_go_bool,
    parse_go_int,
    quote_go,
    usage,
)

__all__ = [
    "ControllerConfig",
    "HelpRequested",
    "controller_flag_specs",
    "flags_markdown",
    "load_controller_config",
]

PROG = "pyllmd autoscaler"


class ControllerConfig(BaseModel):
    """The resolved, validated configuration. Durations are float seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    config_file: str = ""
    log_verbosity: int = 2
    zap_devel: bool = True
    zap_log_level: str = ""
    zap_encoder: str = ""
    zap_stacktrace_level: str = ""
    zap_time_encoding: str = ""
    metrics_bind_address: str = "0"
    health_probe_bind_address: str = ":8081"
    leader_elect: bool = False
    leader_election_id: str = "72dd1cf1.llm-d.ai"
    leader_election_lease_duration: float = 60.0
    leader_election_renew_deadline: float = 50.0
    leader_election_retry_period: float = 10.0
    rest_client_timeout: float = 60.0
    metrics_secure: bool = True
    enable_http2: bool = False
    watch_namespace: str = ""
    v: int = 0
    webhook_cert_path: str = ""
    webhook_cert_name: str = "tls.crt"
    webhook_cert_key: str = "tls.key"
    metrics_cert_path: str = ""
    metrics_cert_name: str = "tls.crt"
    metrics_cert_key: str = "tls.key"
    prometheus_base_url: str = ""
    prometheus_bearer_token: str = ""
    prometheus_token_path: str = ""
    prometheus_tls_insecure_skip_verify: bool = False
    prometheus_ca_cert_path: str = ""
    prometheus_client_cert_path: str = ""
    prometheus_client_key_path: str = ""
    prometheus_server_name: str = ""
    prometheus_metrics_cache_ttl: float = 30.0
    prometheus_metrics_cache_cleanup_interval: float = 60.0
    prometheus_metrics_cache_fetch_interval: float = 30.0
    prometheus_metrics_cache_fresh_threshold: float = 60.0
    prometheus_metrics_cache_stale_threshold: float = 120.0
    prometheus_metrics_cache_unavailable_threshold: float = 300.0
    prometheus_metrics_cache_max_size: int = 0
    global_opt_interval: float = 60.0
    wva_scale_to_zero: bool = False
    wva_limited_mode: bool = False
    wva_node_selector: str = ""
    scale_from_zero_engine_max_concurrency: int = 10
    epp_metric_reader_bearer_token: str = ""
    pod_namespace: str = "workload-variant-autoscaler-system"
    config_map_name: str = "wva-variantautoscaling-config"
    saturation_config_map_name: str = "wva-saturation-scaling-config"
    controller_instance: str = ""
    pool_group: str = "inference.networking.x-k8s.io"
    log_level: str = ""

    @property
    def zap_level(self) -> int:
        """The zap level in effect: `--zap-log-level` if given, else −`--v`."""
        named = {"debug": -1, "info": 0, "warn": 1, "error": 2, "dpanic": 3, "panic": 4, "fatal": 5}
        text = self.zap_log_level.lower()
        if not text:
            return -self.log_verbosity
        if text.lstrip("-").isdigit():
            return int(text) if text in ("-1", "0", "2") else -int(text)
        return named.get(text, 0)


def controller_flag_specs() -> tuple[FlagSpec, ...]:
    """The pflag table of `pyllmd autoscaler` (flag defaults, not key defaults)."""
    return tuple(FlagSpec(s.flag, s.kind, s.flag_default, s.help) for s in SETTINGS if s.flag)


def _from_text(setting: Setting, raw: str, source: str) -> object:
    """A string value (environment or file) converted to the setting's type."""
    try:
        if setting.kind is FlagKind.BOOL:
            return parse_go_bool(raw)
        if setting.kind is FlagKind.INT:
            return parse_go_int(raw)
        if setting.kind is FlagKind.DURATION:
            return go_parse_duration_ns(raw) / 1e9
    except ValueError:
        raise ConfigError(
            f"{setting.key}: invalid {setting.kind} {quote_go(raw)} from {source}"
            + (" (use a Go duration such as 60s)" if setting.kind is FlagKind.DURATION else "")
        ) from None
    return raw


def _from_yaml(setting: Setting, value: object) -> object:
    """A config-file value: strings are parsed, native YAML scalars of the right type kept."""
    if isinstance(value, str):
        return _from_text(setting, value, "the config file")
    kind = setting.kind
    if kind is FlagKind.BOOL and isinstance(value, bool):
        return value
    if kind is FlagKind.INT and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is FlagKind.STRING and isinstance(value, bool | int | float):
        return str(value).lower() if isinstance(value, bool) else str(value)
    raise ConfigError(
        f"{setting.key}: invalid {kind} {quote_go(str(value))} in the config file"
        + (" (use a Go duration string such as 60s)" if kind is FlagKind.DURATION else "")
    )


def _read_config_file(path: str, read_file: Callable[[str], str]) -> dict[str, object]:
    """The `--config-file` mapping with upper-cased keys (Viper keys are case-insensitive)."""
    try:
        text = read_file(path)
    except OSError as exc:
        raise ConfigError(
            f"--config-file: cannot read {quote_go(path)}: {exc.strerror or exc}"
        ) from None
    except ValueError as exc:  # e.g. a NUL character in the path
        raise ConfigError(f"--config-file: cannot read {quote_go(path)}: {exc}") from None
    try:
        doc = load_yaml12(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"--config-file: {quote_go(path)} is not valid YAML: {first}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"--config-file: {quote_go(path)} must be a mapping of KEY: value")
    return {str(k).upper(): v for k, v in doc.items() if v is not None}


def _resolve(
    setting: Setting, flags: ParsedFlags, env: Mapping[str, str], file: Mapping[str, object]
) -> object:
    if setting.flag and setting.flag in flags.values:
        return flags.values[setting.flag]
    if setting.key:
        raw = env.get(setting.key)
        if raw:
            return _from_text(setting, raw, "the environment")
        if setting.key in file:
            return _from_yaml(setting, file[setting.key])
    return setting.default


def _check_zap(flags: ParsedFlags) -> None:
    """controller-runtime's zap flag values, with pflag's error wording."""
    for name, (what, choices) in ZAP_CHOICES.items():
        value = flags.values.get(name)
        if not isinstance(value, str):
            continue
        ok = value.lower() in choices
        if name == "zap-log-level" and not ok:
            ok = value.isdigit() and int(value) > 0
        if not ok:
            raise ConfigError(
                f"invalid argument {quote_go(value)} for {quote_go('--' + name)} flag: "
                f"invalid {what} {quote_go(value)}"
            )


def _check_prometheus(cfg: ControllerConfig, file_exists: Callable[[str], bool]) -> None:
    url = cfg.prometheus_base_url
    if not url:
        raise ConfigError(
            "PROMETHEUS_BASE_URL: required; set it in the environment or the --config-file"
        )
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when out of range or not a number
    except ValueError as exc:
        raise ConfigError(f"PROMETHEUS_BASE_URL: invalid URL {quote_go(url)}: {exc}") from None
    if parts.scheme != "https" or not parts.netloc:
        raise ConfigError(f"PROMETHEUS_BASE_URL: must be an https:// URL, got {quote_go(url)}")
    if not parts.hostname or port == 0 or any(c.isspace() or not c.isprintable() for c in url):
        raise ConfigError(
            f"PROMETHEUS_BASE_URL: invalid URL {quote_go(url)}: needs a host, a port "
            "between 1 and 65535 if any, and no spaces or control characters"
        )
    if cfg.prometheus_server_name and (error := _server_name_error(cfg.prometheus_server_name)):
        raise ConfigError(f"PROMETHEUS_SERVER_NAME: {error}")
    cert, key = cfg.prometheus_client_cert_path, cfg.prometheus_client_key_path
    if bool(cert) != bool(key):
        raise ConfigError(
            "PROMETHEUS_CLIENT_CERT_PATH and PROMETHEUS_CLIENT_KEY_PATH: set both or neither"
        )
    if cfg.prometheus_tls_insecure_skip_verify:
        return
    for name, path in (
        ("PROMETHEUS_CA_CERT_PATH", cfg.prometheus_ca_cert_path),
        ("PROMETHEUS_CLIENT_CERT_PATH", cert),
        ("PROMETHEUS_CLIENT_KEY_PATH", key),
    ):
        if path and not file_exists(path):
            raise ConfigError(
                f"{name}: file {quote_go(path)} not found "
                "(required unless PROMETHEUS_TLS_INSECURE_SKIP_VERIFY=true)"
            )


def parse_bind_address(address: str) -> tuple[str, int] | None:
    """A listen address as Go's net.Listen reads it: None when "" or "0" (disabled).

    `host:port`, `:port` (every interface) or `[ipv6]:port`; the port is a number
    from 0 to 65535 (empty counts as 0, as in Go). Raises ValueError saying why not.
    """
    if address in ("", "0"):
        return None
    host, colon, port = address.rpartition(":")
    if not colon:
        raise ValueError("missing port in address")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError("missing ']' in address")
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{quote_go(host)} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError("too many colons in address")
    elif any(c.isspace() or not c.isprintable() or c in "[]" for c in host):
        raise ValueError(f"invalid host {quote_go(host)}")
    if port and not (port.isascii() and port.isdigit()):
        raise ValueError(f"port {quote_go(port)} is not a number")
    number = int(port) if port else 0
    if number > 65535:
        raise ValueError(f"port {number} is out of range (0-65535)")
    return (host or "0.0.0.0", number)


_SNI_CHECK = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CA loading: only names are checked


def _server_name_error(name: str) -> str | None:
    """Why TLS would refuse `name` as the server name (SNI), checked offline; None if fine."""
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        pass
    try:
        _SNI_CHECK.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname=name)
    except (ValueError, UnicodeError) as exc:
        return f"invalid server name {quote_go(name)}: {exc}"
    if any(c.isspace() or not c.isprintable() for c in name):
        return f"invalid server name {quote_go(name)}"
    return None


def _check_names(cfg: ControllerConfig) -> None:
    """Namespaces and object names the controller puts in API paths."""
    for key, value, check in (
        ("WATCH_NAMESPACE", cfg.watch_namespace, dns_label_error),
        ("POD_NAMESPACE", cfg.pod_namespace, dns_label_error),
        ("CONFIG_MAP_NAME", cfg.config_map_name, dns_subdomain_error),
        ("SATURATION_CONFIG_MAP_NAME", cfg.saturation_config_map_name, dns_subdomain_error),
        ("LEADER_ELECTION_ID", cfg.leader_election_id, dns_subdomain_error),
    ):
        if (value or key != "WATCH_NAMESPACE") and (error := check(value)) is not None:
            raise ConfigError(f"{key}: {error}")


def _check_endpoints(cfg: ControllerConfig, file_exists: Callable[[str], bool]) -> None:
    """Listen addresses, the metrics certificate and bearer tokens (header-safe)."""
    for key, address in (
        ("METRICS_BIND_ADDRESS", cfg.metrics_bind_address),
        ("HEALTH_PROBE_BIND_ADDRESS", cfg.health_probe_bind_address),
    ):
        try:
            parse_bind_address(address)
        except ValueError as exc:
            raise ConfigError(f"{key}: invalid address {quote_go(address)}: {exc}") from None
    if cfg.metrics_secure and cfg.metrics_cert_path:
        for key, name in (
            ("METRICS_CERT_NAME", cfg.metrics_cert_name),
            ("METRICS_CERT_KEY", cfg.metrics_cert_key),
        ):
            path = str(Path(cfg.metrics_cert_path) / name)
            if not file_exists(path):
                raise ConfigError(
                    f"METRICS_CERT_PATH and {key}: file {quote_go(path)} not found "
                    "(required with --metrics-secure)"
                )
    for key, token in (
        ("PROMETHEUS_BEARER_TOKEN", cfg.prometheus_bearer_token),
        ("EPP_METRIC_READER_BEARER_TOKEN", cfg.epp_metric_reader_bearer_token),
    ):
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in token):
            raise ConfigError(
                f"{key}: must not contain control characters (it is sent as a header)"
            )


def _check_leader_election(cfg: ControllerConfig) -> None:
    """client-go's leader-election timing rules (checked only when leader election is on)."""
    lease = cfg.leader_election_lease_duration
    renew = cfg.leader_election_renew_deadline
    retry = cfg.leader_election_retry_period
    if not cfg.leader_elect:
        return
    if retry <= 0:
        raise ConfigError("LEADER_ELECTION_RETRY_PERIOD: must be > 0")
    if renew <= retry * 1.2:
        raise ConfigError(
            "LEADER_ELECTION_RENEW_DEADLINE: must be greater than 1.2 × "
            "LEADER_ELECTION_RETRY_PERIOD"
        )
    if lease <= renew:
        raise ConfigError(
            "LEADER_ELECTION_LEASE_DURATION: must be greater than LEADER_ELECTION_RENEW_DEADLINE"
        )


def validate_controller_config(
    cfg: ControllerConfig, file_exists: Callable[[str], bool] = lambda p: Path(p).is_file()
) -> None:
    """Raise ConfigError for the first broken rule."""
    _check_prometheus(cfg, file_exists)
    if cfg.global_opt_interval <= 0:
        raise ConfigError("GLOBAL_OPT_INTERVAL: must be > 0")
    if cfg.scale_from_zero_engine_max_concurrency <= 0:
        raise ConfigError(
            "SCALE_FROM_ZERO_ENGINE_MAX_CONCURRENCY: must be > 0, got "
            f"{cfg.scale_from_zero_engine_max_concurrency}"
        )
    if cfg.pool_group not in POOL_GROUPS:
        raise ConfigError(
            f"POOL_GROUP: must be {' or '.join(POOL_GROUPS)}, got {quote_go(cfg.pool_group)}"
        )
    try:
        parse_label_selector(cfg.wva_node_selector)
    except ValueError as exc:
        raise ConfigError(
            f"WVA_NODE_SELECTOR: invalid label selector {quote_go(cfg.wva_node_selector)}: {exc}"
        ) from None
    if (error := label_value_error(cfg.controller_instance)) is not None:
        raise ConfigError(f"CONTROLLER_INSTANCE: must be a valid label value: {error}")
    for name in ("rest_client_timeout", "prometheus_metrics_cache_fresh_threshold"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name.upper()}: must not be negative")
    _check_names(cfg)
    _check_endpoints(cfg, file_exists)
    _check_leader_election(cfg)


def _read_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def load_controller_config(
    argv: Sequence[str],
    env: Mapping[str, str],
    read_file: Callable[[str], str] = _read_text,
    file_exists: Callable[[str], bool] = lambda p: Path(p).is_file(),
) -> ControllerConfig:
    """Parse argv (without the program name), merge env and `--config-file`, validate.

    Raises HelpRequested for `--help`/`-h`, ConfigError (one line) otherwise.
    """
    flags = parse_flags(argv, controller_flag_specs(), PROG)
    _check_zap(flags)
    config_file = str(flags.values.get("config-file", ""))
    file = _read_config_file(config_file, read_file) if config_file else {}
    values: dict[str, Any] = {s.field: _resolve(s, flags, env, file) for s in SETTINGS}
    values["log_verbosity"] = flags.values.get("v", 2)
    cfg = ControllerConfig(**values)
    validate_controller_config(cfg, file_exists)
    return cfg


def flags_markdown() -> str:
    """docs/user-guide/admin/autoscaler-flags.md, generated from the table."""
    return render_markdown()


def help_text() -> str:
    """The `--help` text."""
    return usage(controller_flag_specs(), PROG)


if __name__ == "__main__":  # pragma: no cover - documentation helper
    if sys.argv[1:] == ["--markdown"]:
        sys.stdout.write(flags_markdown())
    else:
        sys.stdout.write(help_text())
