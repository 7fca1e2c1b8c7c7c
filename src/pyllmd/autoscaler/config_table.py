# ruff: noqa: E501
"""The controller's settings (spec §2.2): the model `ControllerConfig`, one field per
flag and/or environment and config-file key, and the flag reference rendered from it.

Each field declares, once (core/settings), its type and default, its flag, its
environment/config-file key (the field name upper-cased), help text and rule; the
pflag table, the lookups of `config.py` and the page below come from it. Kept
apart from the loading and validation (`config.py`) so the table reads as
documentation.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from pyllmd.autoscaler.decide.cycle import EngineSettings
from pyllmd.core.flags import FlagKind, format_duration
from pyllmd.core.logging import verbosity
from pyllmd.core.settings import Setting, setting, settings_of
from pyllmd.core.zap import zap_setting

__all__ = ["POOL_GROUPS", "SETTINGS", "ControllerConfig", "Setting", "render_markdown"]

B, D = FlagKind.BOOL, FlagKind.DURATION

POOL_GROUPS = ("inference.networking.x-k8s.io", "inference.networking.k8s.io")

_TLS = "Immutable at runtime."
_BIND_RULE = "[host]:port or [ipv6]:port, port 0-65535"
_SUBDOMAIN = "a DNS-1123 subdomain (an object name)"


def _key(
    key: str, default: object, help: str, rule: str = "", *, kind: FlagKind | None = None
) -> Any:
    """A setting read from the environment variable and config-file key `key`."""
    return setting(default, help, key=key, env=key, rule=rule, kind=kind)


def _flag(
    key: str, default: object, help: str, rule: str = "", *, kind: FlagKind | None = None
) -> Any:
    """A flag bound to an env/file key (flag = the key lower-cased, with dashes)."""
    flag = key.lower().replace("_", "-")
    return setting(default, help, flag=flag, key=key, env=key, rule=rule, kind=kind)


class ControllerConfig(BaseModel):
    """The resolved, validated configuration. Durations are float seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # fmt: off
    config_file: str = setting('', 'YAML file whose keys are the environment names below; it ranks below flags and environment.', flag='config-file')
    v: int = verbosity('Log verbosity: 1 warning, 2 info, 4 debug, 5 trace. The flag sets the log level (unless --zap-log-level is given); the V key is accepted but not used for logging.', default=0, shorthand=False, flag_default=2, env='V', key='V')
    zap_devel: bool = zap_setting('zap-devel', 'Development logging (console encoder, debug stack traces).')
    zap_log_level: str = zap_setting('zap-log-level', 'Log level: debug, info, warn, error, dpanic, panic, fatal, or an integer N > 0 for verbosity N. Overrides --v.', 'one of the names, or an integer > 0')
    zap_encoder: str = zap_setting('zap-encoder', 'Log encoding: json or console.', 'json or console')
    zap_stacktrace_level: str = zap_setting('zap-stacktrace-level', 'Lowest level that logs a stack trace: info, error, panic.', 'a level name')
    zap_time_encoding: str = zap_setting('zap-time-encoding', 'Time format of log lines: epoch, millis, nanos, iso8601, rfc3339, rfc3339nano.', 'one of the listed names')
    metrics_bind_address: str = _flag('METRICS_BIND_ADDRESS', '0', 'Address of the metrics endpoint: :8443 for HTTPS, :8080 for HTTP, 0 to disable. ' + _TLS, _BIND_RULE)
    health_probe_bind_address: str = _flag('HEALTH_PROBE_BIND_ADDRESS', ':8081', 'Address serving /healthz and /readyz; 0 or empty to disable. ' + _TLS, _BIND_RULE)
    leader_elect: bool = _flag('LEADER_ELECT', False, 'Run leader election; only the leader runs the engines (the shipped manifests pass true).')
    leader_election_id: str = _key('LEADER_ELECTION_ID', '72dd1cf1.llm-d.ai', 'Name of the leader-election Lease. ' + _TLS, _SUBDOMAIN)
    leader_election_lease_duration: float = _flag('LEADER_ELECTION_LEASE_DURATION', 60.0, 'How long non-leaders wait before taking over an expired lease.', '> renew deadline (when leader election is on)', kind=D)
    leader_election_renew_deadline: float = _flag('LEADER_ELECTION_RENEW_DEADLINE', 50.0, 'How long the leader keeps retrying to renew before giving up.', '> 1.2 × retry period (when leader election is on)', kind=D)
    leader_election_retry_period: float = _flag('LEADER_ELECTION_RETRY_PERIOD', 10.0, 'Pause between leader-election attempts.', '> 0 (when leader election is on)', kind=D)
    rest_client_timeout: float = _flag('REST_CLIENT_TIMEOUT', 60.0, 'Timeout of Kubernetes API requests.', '>= 0', kind=D)
    metrics_secure: bool = _flag('METRICS_SECURE', True, 'Serve metrics over HTTPS with Kubernetes authentication and authorization; --metrics-secure=false for plain HTTP.')
    enable_http2: bool = _flag('ENABLE_HTTP2', False, 'Offer HTTP/2 on the metrics server; off by default, so TLS advertises http/1.1 only.')
    watch_namespace: str = _flag('WATCH_NAMESPACE', '', 'Only watch this namespace (empty: all namespaces).', 'empty or a namespace name (DNS-1123 label)')
    webhook_cert_path: str = _flag('WEBHOOK_CERT_PATH', '', 'Directory of the webhook certificate (no webhooks are served). ' + _TLS)
    webhook_cert_name: str = _flag('WEBHOOK_CERT_NAME', 'tls.crt', 'Webhook certificate file name. ' + _TLS)
    webhook_cert_key: str = _flag('WEBHOOK_CERT_KEY', 'tls.key', 'Webhook key file name. ' + _TLS)
    metrics_cert_path: str = _flag('METRICS_CERT_PATH', '', 'Directory of the metrics server certificate; empty: a self-signed one is generated. ' + _TLS, 'with --metrics-secure, the certificate and key files must exist in it')
    metrics_cert_name: str = _flag('METRICS_CERT_NAME', 'tls.crt', 'Metrics certificate file name. ' + _TLS)
    metrics_cert_key: str = _flag('METRICS_CERT_KEY', 'tls.key', 'Metrics key file name. ' + _TLS)
    prometheus_base_url: str = _key('PROMETHEUS_BASE_URL', '', 'Prometheus (or Thanos querier) base URL. ' + _TLS, 'required; an https:// URL with a host (and a port 1-65535, if any)')
    prometheus_bearer_token: str = _key('PROMETHEUS_BEARER_TOKEN', '', 'Bearer token sent to Prometheus; wins over the token file.', 'no control characters')
    prometheus_token_path: str = _key('PROMETHEUS_TOKEN_PATH', '', 'File holding the bearer token (whitespace trimmed).')
    prometheus_tls_insecure_skip_verify: bool = _key('PROMETHEUS_TLS_INSECURE_SKIP_VERIFY', False, "Do not verify Prometheus' certificate.")
    prometheus_ca_cert_path: str = _key('PROMETHEUS_CA_CERT_PATH', '', "PEM CA bundle for Prometheus' certificate.", 'file must exist unless insecure')
    prometheus_client_cert_path: str = _key('PROMETHEUS_CLIENT_CERT_PATH', '', 'Client certificate for mutual TLS.', 'with the key; file must exist unless insecure')
    prometheus_client_key_path: str = _key('PROMETHEUS_CLIENT_KEY_PATH', '', 'Client key for mutual TLS.', 'with the certificate; file must exist unless insecure')
    prometheus_server_name: str = _key('PROMETHEUS_SERVER_NAME', '', "Server name expected in Prometheus' certificate (SNI). TLS 1.2 is the minimum.", 'a host name or IP address')
    prometheus_metrics_cache_ttl: float = _key('PROMETHEUS_METRICS_CACHE_TTL', 30.0, 'Query result cache lifetime (informational; queries use a 30 s cache).', kind=D)
    prometheus_metrics_cache_cleanup_interval: float = _key('PROMETHEUS_METRICS_CACHE_CLEANUP_INTERVAL', 60.0, 'Cache cleanup period (informational).', kind=D)
    prometheus_metrics_cache_fetch_interval: float = _key('PROMETHEUS_METRICS_CACHE_FETCH_INTERVAL', 30.0, 'Cache fetch period (informational).', kind=D)
    prometheus_metrics_cache_fresh_threshold: float = _key('PROMETHEUS_METRICS_CACHE_FRESH_THRESHOLD', 60.0, "Age up to which a pod's newest KV-cache sample counts as fresh (older: MetricsStale).", '>= 0', kind=D)
    prometheus_metrics_cache_stale_threshold: float = _key('PROMETHEUS_METRICS_CACHE_STALE_THRESHOLD', 120.0, 'Age from which a metric counts as stale (informational).', kind=D)
    prometheus_metrics_cache_unavailable_threshold: float = _key('PROMETHEUS_METRICS_CACHE_UNAVAILABLE_THRESHOLD', 300.0, 'Age from which a metric counts as unavailable (informational).', kind=D)
    prometheus_metrics_cache_max_size: int = _key('PROMETHEUS_METRICS_CACHE_MAX_SIZE', 0, 'Cache size limit (accepted, unused).')
    global_opt_interval: float = _key('GLOBAL_OPT_INTERVAL', 60.0, 'Period of the saturation engine (collect, analyse, publish).', '> 0', kind=D)
    wva_scale_to_zero: bool = _key('WVA_SCALE_TO_ZERO', False, 'Enable scale to zero for models the scale-to-zero ConfigMap does not decide.')
    wva_limited_mode: bool = _key('WVA_LIMITED_MODE', False, 'Also list GPU inventory every cycle (logged only).')
    wva_node_selector: str = _key('WVA_NODE_SELECTOR', '', 'Label selector restricting GPU discovery to matching nodes, e.g. wva.llmd.ai/shard=a.', 'a valid label selector')
    scale_from_zero_engine_max_concurrency: int = _key('SCALE_FROM_ZERO_ENGINE_MAX_CONCURRENCY', 10, 'Inactive variants checked at once per scale-from-zero tick.', '> 0')
    epp_metric_reader_bearer_token: str = _key('EPP_METRIC_READER_BEARER_TOKEN', '', "Bearer token used when scraping EPP pods' /metrics.", 'no control characters')
    pod_namespace: str = _key('POD_NAMESPACE', 'workload-variant-autoscaler-system', "The controller's namespace: where the global ConfigMaps live.", 'a namespace name (DNS-1123 label)')
    config_map_name: str = _key('CONFIG_MAP_NAME', 'wva-variantautoscaling-config', 'Name of the main ConfigMap (read at start through env injection).', _SUBDOMAIN)
    saturation_config_map_name: str = _key('SATURATION_CONFIG_MAP_NAME', 'wva-saturation-scaling-config', 'Name of the saturation ConfigMap (global and namespace-local).', _SUBDOMAIN)
    controller_instance: str = _key('CONTROLLER_INSTANCE', '', 'Only process VAs labelled wva.llmd.ai/controller-instance=<this>; adds a controller_instance label to the metrics.', 'a valid label value')
    pool_group: str = _key('POOL_GROUP', POOL_GROUPS[0], 'API group of the watched InferencePools.', ' or '.join(POOL_GROUPS))
    log_level: str = _key('LOG_LEVEL', '', 'Accepted for compatibility with the shipped manifests; has no effect (use --zap-log-level or --v).')
    log_verbosity: int = setting(2, "the log verbosity: --v when given, else 2", derived=True)
    # fmt: on

    @property
    def zap_level(self) -> int:
        """The zap level in effect: `--zap-log-level` if given, else −`--v`."""
        named = {"debug": -1, "info": 0, "warn": 1, "error": 2, "dpanic": 3, "panic": 4, "fatal": 5}
        text = self.zap_log_level.lower()
        if not text:
            return -self.log_verbosity
        if text.isascii() and text.lstrip("-").isdigit():
            return int(text) if text in ("-1", "0", "2") else -int(text)
        return named.get(text, 0)


SETTINGS: tuple[Setting, ...] = settings_of(ControllerConfig)


def _default_cell(s: Setting, value: object) -> str:
    if s.value_kind is D and isinstance(value, float):
        return f"`{format_duration(value)}`"
    if s.value_kind is B:
        return f"`{str(value).lower()}`"
    if value == "":
        return '`""`'
    return f"`{value}`"


def _table(rows: list[Setting], with_flag: bool) -> list[str]:
    head = "| Flag | Env / file key | Type | Default | Meaning | Rule |"
    if not with_flag:
        head = "| Env / file key | Type | Default | Meaning | Rule |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in rows:
        cells = []
        if with_flag:
            cells.append(f"`--{s.flag}`")
        cells.append(f"`{s.key}`" if s.key else "—")
        cells.append(str(s.value_kind))
        default = _default_cell(s, s.default)
        if s.flag and s.flag_default != s.default:
            default = f"flag {_default_cell(s, s.flag_default)}; key {default}"
        cells += [default, s.help.replace("|", "\\|"), s.rule or "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


_INTRO = """\
# Autoscaler flags and settings

<!-- Generated by `python -m pyllmd.autoscaler.config --markdown`; do not edit by hand. -->

`pyllmd autoscaler` takes the flags, environment variables and config-file keys
of the llm-d workload-variant-autoscaler controller, so its Deployment manifests
and Helm values work unchanged.

## Syntax and precedence

- Flags use Go pflag syntax: `--name value` or `--name=value`; booleans are
  switched off with `--flag=false`. `--help` prints the usage and exits 0.
- Durations are Go duration strings (`30s`, `1m30s`, `2h`); a bare number is rejected.
- Booleans accept `1 t T TRUE true True` and `0 f F FALSE false False`.
- Each setting is taken from, in order: the flag when given on the command line,
  the environment variable (an empty value counts as unset), the YAML file given
  by `--config-file` (keys are the environment names, any case), the default.
- Any invalid value stops start-up with one line naming the key and the rule
  (exit code 1).
"""


def render_markdown() -> str:
    """The flag reference page."""
    flagged = [s for s in SETTINGS if s.flag and s.group != "zap"]
    keyed = [s for s in SETTINGS if s.key and not s.flag]
    zap = [s for s in SETTINGS if s.group == "zap"]
    parts = [_INTRO, "## Flags (each also settable by its key)\n", *_table(flagged, True)]
    parts += ["", "## Environment and config-file keys\n", *_table(keyed, False)]
    parts += ["", "## Logging flags (controller-runtime zap)\n", *_table(zap, True), ""]
    return "\n".join(parts)


def engine_settings(cfg: ControllerConfig) -> EngineSettings:
    """The engine's names and switches from the configuration."""
    return EngineSettings(
        system_namespace=cfg.pod_namespace,
        saturation_config_map=cfg.saturation_config_map_name,
        controller_instance=cfg.controller_instance,
        env_scale_to_zero=cfg.wva_scale_to_zero,
        node_selector=cfg.wva_node_selector,
        limited_mode=cfg.wva_limited_mode,
        watch_namespace=cfg.watch_namespace,
    )
