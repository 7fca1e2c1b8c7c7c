# ruff: noqa: E501
"""The table of controller settings (spec §2.2) and the flag reference rendered from it.

Kept apart from `config.py` so the table reads as documentation: one row per
flag and/or environment key with its type, defaults, meaning and rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyllmd.core.flags import FlagKind, format_duration

B, N, S, D = FlagKind.BOOL, FlagKind.INT, FlagKind.STRING, FlagKind.DURATION

POOL_GROUPS = ("inference.networking.x-k8s.io", "inference.networking.k8s.io")

# flag name -> (what the error calls it, accepted values, case-insensitive)
ZAP_CHOICES: dict[str, tuple[str, frozenset[str]]] = {
    "zap-log-level": (
        "log level",
        frozenset({"debug", "-1", "info", "0", "warn", "error", "2", "dpanic", "panic", "fatal"}),
    ),
    "zap-encoder": ("encoder value", frozenset({"json", "console"})),
    "zap-stacktrace-level": (
        "stacktrace level",
        frozenset({"debug", "-1", "info", "0", "warn", "error", "2", "dpanic", "panic", "fatal"}),
    ),
    "zap-time-encoding": (
        "time-encoding value",
        frozenset({"rfc3339nano", "rfc3339", "iso8601", "millis", "nanos", "epoch"}),
    ),
}

_UNSET = object()


@dataclass(frozen=True)
class Setting:
    """One row: a `ControllerConfig` field, its flag and/or env/file key."""

    field: str
    key: str
    flag: str
    kind: FlagKind
    default: object
    help: str
    rule: str = ""
    flag_default_override: object = _UNSET

    @property
    def flag_default(self) -> object:
        """The flag's own default (differs from the key default only for `--v`)."""
        if self.flag_default_override is _UNSET:
            return self.default
        return self.flag_default_override


def _row(field: str, kind: FlagKind, default: object, help: str, rule: str = "") -> Setting:
    """A key-only setting whose env/file key is the field name upper-cased."""
    return Setting(field, field.upper(), "", kind, default, help, rule)


def _flag(field: str, kind: FlagKind, default: object, help: str, rule: str = "") -> Setting:
    """A flag bound to an env/file key (flag = field with dashes, key = upper-case)."""
    return Setting(field, field.upper(), field.replace("_", "-"), kind, default, help, rule)


_TLS = "Immutable at runtime."
_BIND_RULE = "[host]:port or [ipv6]:port, port 0-65535"
_SUBDOMAIN = "a DNS-1123 subdomain (an object name)"

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "config_file",
        "",
        "config-file",
        S,
        "",
        "YAML file whose keys are the environment names below; it ranks below flags and environment.",
    ),
    Setting(
        "v",
        "V",
        "v",
        N,
        0,
        "Log verbosity: 1 warning, 2 info, 4 debug, 5 trace. The flag sets the log level (unless --zap-log-level is given); the V key is accepted but not used for logging.",
        "",
        2,
    ),
    Setting(
        "zap_devel",
        "",
        "zap-devel",
        B,
        True,
        "Development logging (console encoder, debug stack traces).",
    ),
    Setting(
        "zap_log_level",
        "",
        "zap-log-level",
        S,
        "",
        "Log level: debug, info, warn, error, dpanic, panic, fatal, or an integer N > 0 for verbosity N. Overrides --v.",
        "one of the names, or an integer > 0",
    ),
    Setting(
        "zap_encoder", "", "zap-encoder", S, "", "Log encoding: json or console.", "json or console"
    ),
    Setting(
        "zap_stacktrace_level",
        "",
        "zap-stacktrace-level",
        S,
        "",
        "Lowest level that logs a stack trace: info, error, panic.",
        "a level name",
    ),
    Setting(
        "zap_time_encoding",
        "",
        "zap-time-encoding",
        S,
        "",
        "Time format of log lines: epoch, millis, nanos, iso8601, rfc3339, rfc3339nano.",
        "one of the listed names",
    ),
    _flag(
        "metrics_bind_address",
        S,
        "0",
        "Address of the metrics endpoint: :8443 for HTTPS, :8080 for HTTP, 0 to disable. " + _TLS,
        _BIND_RULE,
    ),
    _flag(
        "health_probe_bind_address",
        S,
        ":8081",
        "Address serving /healthz and /readyz; 0 or empty to disable. " + _TLS,
        _BIND_RULE,
    ),
    _flag(
        "leader_elect",
        B,
        False,
        "Run leader election; only the leader runs the engines (the shipped manifests pass true).",
    ),
    _row(
        "leader_election_id",
        S,
        "72dd1cf1.llm-d.ai",
        "Name of the leader-election Lease. " + _TLS,
        _SUBDOMAIN,
    ),
    _flag(
        "leader_election_lease_duration",
        D,
        60.0,
        "How long non-leaders wait before taking over an expired lease.",
        "> renew deadline (when leader election is on)",
    ),
    _flag(
        "leader_election_renew_deadline",
        D,
        50.0,
        "How long the leader keeps retrying to renew before giving up.",
        "> 1.2 × retry period (when leader election is on)",
    ),
    _flag(
        "leader_election_retry_period",
        D,
        10.0,
        "Pause between leader-election attempts.",
        "> 0 (when leader election is on)",
    ),
    _flag("rest_client_timeout", D, 60.0, "Timeout of Kubernetes API requests.", ">= 0"),
    _flag(
        "metrics_secure",
        B,
        True,
        "Serve metrics over HTTPS with Kubernetes authentication and authorization; --metrics-secure=false for plain HTTP.",
    ),
    _flag(
        "enable_http2",
        B,
        False,
        "Offer HTTP/2 on the metrics server; off by default, so TLS advertises http/1.1 only.",
    ),
    _flag(
        "watch_namespace",
        S,
        "",
        "Only watch this namespace (empty: all namespaces).",
        "empty or a namespace name (DNS-1123 label)",
    ),
    _flag(
        "webhook_cert_path",
        S,
        "",
        "Directory of the webhook certificate (no webhooks are served). " + _TLS,
    ),
    _flag("webhook_cert_name", S, "tls.crt", "Webhook certificate file name. " + _TLS),
    _flag("webhook_cert_key", S, "tls.key", "Webhook key file name. " + _TLS),
    _flag(
        "metrics_cert_path",
        S,
        "",
        "Directory of the metrics server certificate; empty: a self-signed one is generated. "
        + _TLS,
        "with --metrics-secure, the certificate and key files must exist in it",
    ),
    _flag("metrics_cert_name", S, "tls.crt", "Metrics certificate file name. " + _TLS),
    _flag("metrics_cert_key", S, "tls.key", "Metrics key file name. " + _TLS),
    _row(
        "prometheus_base_url",
        S,
        "",
        "Prometheus (or Thanos querier) base URL. " + _TLS,
        "required; an https:// URL with a host (and a port 1-65535, if any)",
    ),
    _row(
        "prometheus_bearer_token",
        S,
        "",
        "Bearer token sent to Prometheus; wins over the token file.",
        "no control characters",
    ),
    _row("prometheus_token_path", S, "", "File holding the bearer token (whitespace trimmed)."),
    _row("prometheus_tls_insecure_skip_verify", B, False, "Do not verify Prometheus' certificate."),
    _row(
        "prometheus_ca_cert_path",
        S,
        "",
        "PEM CA bundle for Prometheus' certificate.",
        "file must exist unless insecure",
    ),
    _row(
        "prometheus_client_cert_path",
        S,
        "",
        "Client certificate for mutual TLS.",
        "with the key; file must exist unless insecure",
    ),
    _row(
        "prometheus_client_key_path",
        S,
        "",
        "Client key for mutual TLS.",
        "with the certificate; file must exist unless insecure",
    ),
    _row(
        "prometheus_server_name",
        S,
        "",
        "Server name expected in Prometheus' certificate (SNI). TLS 1.2 is the minimum.",
        "a host name or IP address",
    ),
    _row(
        "prometheus_metrics_cache_ttl",
        D,
        30.0,
        "Query result cache lifetime (informational; queries use a 30 s cache).",
    ),
    _row(
        "prometheus_metrics_cache_cleanup_interval",
        D,
        60.0,
        "Cache cleanup period (informational).",
    ),
    _row("prometheus_metrics_cache_fetch_interval", D, 30.0, "Cache fetch period (informational)."),
    _row(
        "prometheus_metrics_cache_fresh_threshold",
        D,
        60.0,
        "Age up to which a pod's newest KV-cache sample counts as fresh (older: MetricsStale).",
        ">= 0",
    ),
    _row(
        "prometheus_metrics_cache_stale_threshold",
        D,
        120.0,
        "Age from which a metric counts as stale (informational).",
    ),
    _row(
        "prometheus_metrics_cache_unavailable_threshold",
        D,
        300.0,
        "Age from which a metric counts as unavailable (informational).",
    ),
    _row("prometheus_metrics_cache_max_size", N, 0, "Cache size limit (accepted, unused)."),
    _row(
        "global_opt_interval",
        D,
        60.0,
        "Period of the saturation engine (collect, analyse, publish).",
        "> 0",
    ),
    _row(
        "wva_scale_to_zero",
        B,
        False,
        "Enable scale to zero for models the scale-to-zero ConfigMap does not decide.",
    ),
    _row("wva_limited_mode", B, False, "Also list GPU inventory every cycle (logged only)."),
    _row(
        "wva_node_selector",
        S,
        "",
        "Label selector restricting GPU discovery to matching nodes, e.g. wva.llmd.ai/shard=a.",
        "a valid label selector",
    ),
    _row(
        "scale_from_zero_engine_max_concurrency",
        N,
        10,
        "Inactive variants checked at once per scale-from-zero tick.",
        "> 0",
    ),
    _row(
        "epp_metric_reader_bearer_token",
        S,
        "",
        "Bearer token used when scraping EPP pods' /metrics.",
        "no control characters",
    ),
    _row(
        "pod_namespace",
        S,
        "workload-variant-autoscaler-system",
        "The controller's namespace: where the global ConfigMaps live.",
        "a namespace name (DNS-1123 label)",
    ),
    _row(
        "config_map_name",
        S,
        "wva-variantautoscaling-config",
        "Name of the main ConfigMap (read at start through env injection).",
        _SUBDOMAIN,
    ),
    _row(
        "saturation_config_map_name",
        S,
        "wva-saturation-scaling-config",
        "Name of the saturation ConfigMap (global and namespace-local).",
        _SUBDOMAIN,
    ),
    _row(
        "controller_instance",
        S,
        "",
        "Only process VAs labelled wva.llmd.ai/controller-instance=<this>; adds a controller_instance label to the metrics.",
        "a valid label value",
    ),
    _row(
        "pool_group",
        S,
        POOL_GROUPS[0],
        "API group of the watched InferencePools.",
        " or ".join(POOL_GROUPS),
    ),
    _row(
        "log_level",
        S,
        "",
        "Accepted for compatibility with the shipped manifests; has no effect (use --zap-log-level or --v).",
    ),
)


def _default_cell(s: Setting, value: object) -> str:
    if s.kind is D and isinstance(value, float):
        return f"`{format_duration(value)}`"
    if s.kind is B:
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
        cells.append(str(s.kind))
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
    flagged = [s for s in SETTINGS if s.flag and not s.flag.startswith("zap-")]
    keyed = [s for s in SETTINGS if s.key and not s.flag]
    zap = [s for s in SETTINGS if s.flag.startswith("zap-")]
    parts = [_INTRO, "## Flags (each also settable by its key)\n", *_table(flagged, True)]
    parts += ["", "## Environment and config-file keys\n", *_table(keyed, False)]
    parts += ["", "## Logging flags (controller-runtime zap)\n", *_table(zap, True), ""]
    return "\n".join(parts)
