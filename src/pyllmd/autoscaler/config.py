"""The controller's configuration (spec §2.2): flags, environment and `--config-file`.

One model (`ControllerConfig`, config_table.py) declares every setting: the pflag
specs, the environment and file keys and the generated flag reference
(`flags_markdown`, `python -m pyllmd.autoscaler.config --markdown`) come from it.

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
from urllib.parse import urlsplit

import yaml

from pyllmd.autoscaler.config_table import (
    POOL_GROUPS,
    SETTINGS,
    ControllerConfig,
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
from pyllmd.core.flags import FlagKind, FlagSpec, HelpRequested, quote_go
from pyllmd.core.settings import (
    Setting,
    Source,
    build,
    env_values,
    file_values,
    flag_specs,
    parse_command_line,
    resolve,
    text_value,
    usage_text,
)
from pyllmd.core.zap import FLAVOUR_WVA, zap_error

__all__ = [
    "ControllerConfig",
    "HelpRequested",
    "controller_flag_specs",
    "flags_markdown",
    "load_controller_config",
]

PROG = "pyllmd autoscaler"


def controller_flag_specs() -> tuple[FlagSpec, ...]:
    """The pflag table of `pyllmd autoscaler` (flag defaults, not key defaults)."""
    return flag_specs(ControllerConfig)


def _from_text(setting: Setting, raw: str, source: str) -> object:
    """A string value (environment or file) converted to the setting's type."""
    kind = setting.value_kind
    try:
        return text_value(kind, raw)
    except ValueError:
        raise ConfigError(
            f"{setting.key}: invalid {kind} {quote_go(raw)} from {source}"
            + (" (use a Go duration such as 60s)" if kind is FlagKind.DURATION else "")
        ) from None


def _from_env(setting: Setting, raw: object) -> object:
    return _from_text(setting, str(raw), "the environment")


def _from_yaml(setting: Setting, value: object) -> object:
    """A config-file value: strings are parsed, native YAML scalars of the right type kept."""
    if isinstance(value, str):
        return _from_text(setting, value, "the config file")
    kind = setting.value_kind
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
    line = parse_command_line(ControllerConfig, argv, PROG)
    if (error := zap_error(line.parsed.values, FLAVOUR_WVA)) is not None:
        raise ConfigError(error)
    config_file = str(line.given.get("config_file", ""))
    file = _read_config_file(config_file, read_file) if config_file else {}
    values = resolve(  # flag > environment (empty: unset) > config file > default
        SETTINGS,
        (
            Source(line.given),
            Source(env_values(SETTINGS, env), _from_env),
            Source(file_values(SETTINGS, file), _from_yaml),
        ),
    )
    values["log_verbosity"] = line.given.get("v", 2)
    cfg = build(ControllerConfig, values)
    validate_controller_config(cfg, file_exists)
    return cfg


def flags_markdown() -> str:
    """docs/user-guide/admin/autoscaler-flags.md, generated from the table."""
    return render_markdown()


def help_text() -> str:
    """The `--help` text."""
    return usage_text(ControllerConfig, PROG)


if __name__ == "__main__":  # pragma: no cover - documentation helper
    if sys.argv[1:] == ["--markdown"]:
        sys.stdout.write(flags_markdown())
    else:
        sys.stdout.write(help_text())
