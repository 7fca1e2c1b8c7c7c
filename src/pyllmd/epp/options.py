# ruff: noqa: E501
"""The EPP's command line and environment (spec §1): flags, validation, `EppOptions`.

One table (`_FLAGS`) gives the pflag specs, the `--help` text and the generated
reference page (`flags_markdown`, `python -m pyllmd.epp.options --markdown`).
Validation follows spec §1.2 in order, one `ConfigError` line per failure.

Deviations from upstream, on purpose:
* the deprecated metric-spec flags are an error when given (project decision,
  spec §1.2 item 5): the mapping belongs in the config file;
* `--static-endpoints` (extension, spec §12/§14) lists model servers directly,
  so no Kubernetes API is needed; it is a third way to name the pool;
* `--endpoints-file` (extension, `filesd.py`) reads the model servers from a
  Prometheus file_sd file and follows its changes: a fourth way to name the pool;
* `--bind-address` (extension) chooses the listening address of all three
  servers (upstream always listens on every interface).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from pyllmd.core.errors import ConfigError
from pyllmd.core.flags import (
    FlagKind,
    FlagSpec,
    HelpRequested,
    ParsedFlags,
    default_text,
    format_duration,
    go_parse_duration_ns,
    parse_flags,
    parse_go_bool,
    parse_go_float,
    quote_go,
    usage,
)
from pyllmd.core.gosyntax import printable
from pyllmd.core.listen import host_error
from pyllmd.core.zap import zap_error

__all__ = [
    "EppOptions",
    "HelpRequested",
    "StaticEndpoint",
    "epp_flag_specs",
    "flags_markdown",
    "help_text",
    "load_options",
    "parse_static_endpoints",
]

PROG = "pyllmd epp"
B, N, S, D, L = (
    FlagKind.BOOL,
    FlagKind.INT,
    FlagKind.STRING,
    FlagKind.DURATION,
    FlagKind.STRING_LIST,
)

# Deprecated metric-spec flag -> (default spec, config-file parameter replacing it).
DEPRECATED_METRIC_FLAGS: dict[str, tuple[str, str]] = {
    "total-queued-requests-metric": ("vllm:num_requests_waiting", "queueRequestsSpec"),
    "total-running-requests-metric": ("vllm:num_requests_running", "runningRequestsSpec"),
    "kv-cache-usage-percentage-metric": ("vllm:kv_cache_usage_perc", "kvUsageSpec"),
    "lora-info-metric": ("vllm:lora_requests_info", "loraSpec"),
    "cache-info-metric": ("vllm:cache_config_info", "cacheInfoSpec"),
}

# fmt: off
_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec("grpc-port", N, 9002, "Port of the ext_proc gRPC server Envoy calls (0: a free port)"),
    FlagSpec("grpc-health-port", N, 9003, "Port of the plaintext gRPC health service (liveness/readiness probes; 0: a free port)"),
    FlagSpec("metrics-port", N, 9090, "Port of the Prometheus /metrics server (0: a free port)"),
    FlagSpec("bind-address", S, "0.0.0.0", "pyllmd extension: IP address or host name the ext_proc, health and metrics servers listen on (upstream: all interfaces)"),
    FlagSpec("ha-enable-leader-election", B, False, "Elect a leader through a Kubernetes Lease; only the leader reports ready"),
    FlagSpec("pool-group", S, "inference.networking.k8s.io", "API group of the InferencePool (inference.networking.x-k8s.io selects the v1alpha2 API)"),
    FlagSpec("pool-namespace", S, "", "Namespace of the InferencePool (default: $NAMESPACE, else default)"),
    FlagSpec("pool-name", S, "", "Name of the InferencePool to serve"),
    FlagSpec("endpoint-selector", S, "", "Standalone mode: label selector of the model-server pods, comma-separated key=value pairs without spaces (e.g. app=vllm,env=prod)"),
    FlagSpec("endpoint-target-ports", L, (), "Standalone mode: comma-separated serving ports of the selected pods (e.g. 8000,8001)"),
    FlagSpec("static-endpoints", S, "", "pyllmd extension: comma-separated model servers ip:port[;label=value...] used as the pool without Kubernetes (e.g. 10.0.0.1:8000;llm-d.ai/role=decode,10.0.0.2:8000)"),
    FlagSpec("endpoints-file", S, "", "pyllmd extension: a Prometheus file_sd file (.json, .yml or .yaml) whose ip:port targets, with their group labels, are the pool; re-read when it changes (no Kubernetes)"),
    FlagSpec("disable-endpoint-subset-filter", B, False, "Ignore the x-gateway-destination-endpoint-subset filter metadata"),
    FlagSpec("model-server-metrics-scheme", S, "http", "Scheme of model-server metrics scrapes: http or https"),
    FlagSpec("model-server-metrics-path", S, "/metrics", "URL path of model-server metrics"),
    FlagSpec("model-server-metrics-port", N, 0, "DEPRECATED: port to scrape metrics from pods; 0 scrapes each endpoint on its serving port"),
    FlagSpec("model-server-metrics-https-insecure-skip-verify", B, True, "Do not verify model-server certificates when scraping over https"),
    FlagSpec("refresh-metrics-interval", D, 0.05, "Period of each endpoint's metrics scrape (positive)"),
    FlagSpec("refresh-prometheus-metrics-interval", D, 5.0, "Period of the inference_pool_* gauge refresh (positive)"),
    FlagSpec("metrics-staleness-threshold", D, 2.0, "Age after which an endpoint's scraped metrics count as stale"),
    *(
        FlagSpec(name, S, spec, f"DEPRECATED, an error when given: set {param} of the model-server-protocol-metrics plugin (or its engineConfigs) in the config file")
        for name, (spec, param) in DEPRECATED_METRIC_FLAGS.items()
    ),
    FlagSpec("v", N, 2, "Log verbosity: 2 default, 3 verbose, 4 debug, 5 trace", shorthand="v"),
    FlagSpec("zap-devel", B, True, "Accepted for compatibility; no effect: pyllmd's log format is fixed (upstream: development logging instead of production)"),
    FlagSpec("zap-encoder", S, "", "Log encoding, json or console: checked, then no effect (pyllmd's log format is fixed)"),
    FlagSpec("zap-log-level", S, "", "Log level: debug, info, error, panic, or an integer > 0 for more verbose debug levels (overrides -v)"),
    FlagSpec("zap-stacktrace-level", S, "", "Lowest level that logs a stack trace, info, error or panic: checked, then no effect"),
    FlagSpec("zap-time-encoding", S, "", "Log timestamp format, epoch, millis, nano, iso8601, rfc3339 or rfc3339nano: checked, then no effect"),
    FlagSpec("tracing", B, True, "Accepted for compatibility; no effect (upstream: emit OpenTelemetry traces)"),
    FlagSpec("health-checking", B, False, "Also serve the gRPC health service on the ext_proc port"),
    FlagSpec("enable-pprof", B, True, "Accepted for compatibility; no effect (upstream: serve /debug/pprof/ profiles on the metrics port)"),
    FlagSpec("cert-path", S, "", "Directory with tls.crt and tls.key for the ext_proc server; empty uses a generated self-signed certificate"),
    FlagSpec("enable-cert-reload", B, False, "Reload the --cert-path files when they change"),
    FlagSpec("secure-serving", B, True, "Serve ext_proc over TLS"),
    FlagSpec("metrics-endpoint-auth", B, True, "Require a Kubernetes token allowed to GET /metrics on the metrics port"),
    FlagSpec("config-file", S, "", "Path of an EndpointPickerConfig YAML file"),
    FlagSpec("config-text", S, "", "An EndpointPickerConfig YAML given inline instead of --config-file"),
    FlagSpec("kubeconfig", S, "", "Path of a kubeconfig, for running outside the cluster"),
)
# fmt: on

NO_POOL = (
    "either pool-name or endpoint-selector must be set "
    "(or, without Kubernetes, --static-endpoints or --endpoints-file)"
)
_POD_NAME = re.compile(r"^(.+)-[a-z0-9]+-[a-z0-9]+$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True, slots=True)
class StaticEndpoint:
    """One `--static-endpoints` entry: a model server and its labels."""

    address: str  # IP or host name, IPv6 without brackets
    port: int
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EppOptions:
    """The validated command line and environment. Durations are float seconds."""

    grpc_port: int = 9002
    grpc_health_port: int = 9003
    metrics_port: int = 9090
    bind_address: str = "0.0.0.0"  # pyllmd extension
    ha_enable_leader_election: bool = False
    pool_group: str = "inference.networking.k8s.io"
    pool_namespace: str = "default"  # resolved: flag > NAMESPACE > default
    pool_name: str = ""  # pool mode: the flag; standalone: the deployment name from POD_NAME
    endpoint_selector: Mapping[str, str] = field(default_factory=dict)
    endpoint_target_ports: tuple[int, ...] = ()
    static_endpoints: tuple[StaticEndpoint, ...] = ()
    endpoints_file: str = ""  # pyllmd extension
    disable_endpoint_subset_filter: bool = False
    model_server_metrics_scheme: str = "http"
    model_server_metrics_path: str = "/metrics"
    model_server_metrics_port: int = 0
    model_server_metrics_https_insecure_skip_verify: bool = True
    refresh_metrics_interval: float = 0.05
    refresh_prometheus_metrics_interval: float = 5.0
    metrics_staleness_threshold: float = 2.0
    log_verbosity: int = 2
    zap_devel: bool = True
    zap_encoder: str = ""
    zap_log_level: str = ""
    zap_stacktrace_level: str = ""
    zap_time_encoding: str = ""
    tracing: bool = True
    health_checking: bool = False
    enable_pprof: bool = True
    cert_path: str = ""
    enable_cert_reload: bool = False
    secure_serving: bool = True
    metrics_endpoint_auth: bool = True
    config_file: str = ""
    config_text: str = ""
    kubeconfig: str = ""
    # From the deprecated environment variables (spec §1.3); None = variable absent.
    env_feature_gates: tuple[str, ...] = ()
    sd_queue_depth_threshold: int | None = None
    sd_kv_cache_util_threshold: float | None = None
    sd_metrics_staleness_threshold: float | None = None
    warnings: tuple[str, ...] = ()  # deprecation notes the caller logs at start-up

    @property
    def mode(self) -> str:
        """`static`, `file` (`--endpoints-file`), `standalone` or `pool`."""
        if self.static_endpoints:
            return "static"
        if self.endpoints_file:
            return "file"
        return "standalone" if self.endpoint_selector else "pool"

    @property
    def metric_specs(self) -> Mapping[str, str]:
        """The default scrape mapping (spec §4.1): deprecated flag name -> metric spec."""
        return {name: spec for name, (spec, _) in DEPRECATED_METRIC_FLAGS.items()}


def epp_flag_specs() -> tuple[FlagSpec, ...]:
    """The pflag table of `pyllmd epp`."""
    return _FLAGS


def help_text() -> str:
    """The `--help` text."""
    return usage(_FLAGS, PROG)


# ---------------------------------------------------------------- value checks


# Durations are parsed here, with Go's `time.ParseDuration` and its error texts (the
# shared parser also takes the simulator's bare milliseconds); `--help` keeps their type.
_PARSE_FLAGS = tuple(replace(s, kind=S) if s.kind is D else s for s in _FLAGS)


def _parse(argv: Sequence[str]) -> tuple[ParsedFlags, dict[str, object]]:
    """pflag parsing: the given flags and every flag's effective value."""
    try:
        flags = parse_flags(argv, _PARSE_FLAGS, PROG)
    except HelpRequested:
        raise HelpRequested(help_text()) from None
    values = flags.effective(_FLAGS)
    for spec in _FLAGS:
        if spec.kind is D and spec.name in flags.values:
            raw = str(flags.values[spec.name])
            try:
                values[spec.name] = go_parse_duration_ns(raw) / 1e9
            except ValueError as err:
                raise ConfigError(
                    f"invalid argument {quote_go(raw)} for {quote_go('--' + spec.name)} flag: {err}"
                ) from None
    if (error := zap_error(flags.values)) is not None:
        raise ConfigError(error)
    return flags, values


SERVER_PORTS = ("grpc-port", "grpc-health-port", "metrics-port")
POSITIVE_DURATIONS = ("refresh-metrics-interval", "refresh-prometheus-metrics-interval")
POOL_GROUPS = ("inference.networking.k8s.io", "inference.networking.x-k8s.io")


def _check_values(v: Mapping[str, object]) -> None:
    """pyllmd's value rules, where upstream would fail later (listen, ticker) or misbehave."""
    taken: dict[int, str] = {}
    for name in (*SERVER_PORTS, "model-server-metrics-port"):
        port = v[name]
        assert isinstance(port, int)
        if not 0 <= port <= 65535:
            zero = "picks a free port" if name in SERVER_PORTS else "scrapes the serving port"
            raise ConfigError(f"--{name}: invalid port {port} (0 to 65535; 0 {zero})")
        if name in SERVER_PORTS and port:
            if port in taken:
                raise ConfigError(f"--{taken[port]} and --{name} are both port {port}")
            taken[port] = name
    for name in POSITIVE_DURATIONS:
        if (seconds := float(str(v[name]))) <= 0:
            raise ConfigError(f"--{name}: must be positive, got {format_duration(seconds)}")
    if (seconds := float(str(v["metrics-staleness-threshold"]))) < 0:
        raise ConfigError(
            f"--metrics-staleness-threshold: must not be negative, got {format_duration(seconds)}"
        )
    group = str(v["pool-group"])
    if group not in POOL_GROUPS:
        raise ConfigError(
            f"--pool-group: unknown InferencePool group {quote_go(group)} "
            f"(use {POOL_GROUPS[0]} or {POOL_GROUPS[1]} for v1alpha2)"
        )
    host = str(v["bind-address"])
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


def _label_error(key: str, value: str) -> str | None:
    """Kubernetes label key/value validity (the rules of `validation.IsQualifiedName`)."""
    prefix, _, name = key.rpartition("/")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return f"invalid label key {quote_go(key)}"
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"invalid label key {quote_go(key)}"
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        return f"invalid label value {quote_go(value)}"
    return None


def parse_label_map(text: str) -> dict[str, str]:
    """`labels.ConvertSelectorToLabelsMap`: `k=v[,k=v]`, entries trimmed, no operators."""
    out: dict[str, str] = {}
    if not text:
        return out
    for entry in text.split(","):
        parts = entry.split("=")
        if len(parts) != 2:
            raise ValueError(f"invalid selector: [{' '.join(map(printable, parts))}]")
        key, value = parts[0].strip(), parts[1].strip()
        if (error := _label_error(key, value)) is not None:
            raise ValueError(error)
        out[key] = value
    return out


def parse_static_endpoints(text: str) -> tuple[StaticEndpoint, ...]:
    """`ip:port[;label=value...]` entries, comma-separated; IPv6 as `[::1]:8000`."""
    out: list[StaticEndpoint] = []
    seen: set[tuple[str, int]] = set()
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        where, *label_parts = entry.split(";")
        bad = ConfigError(f"--static-endpoints: {quote_go(entry)} is not ip:port[;label=value...]")
        host, sep, port_text = where.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise bad
        if (
            not sep
            or not host
            or not (port_text.isascii() and port_text.isdigit())
            or not 0 < int(port_text) < 65536
        ):
            raise bad
        labels: dict[str, str] = {}
        for part in label_parts:
            key, eq, value = part.partition("=")
            if not eq or _label_error(key, value) is not None:
                raise ConfigError(
                    f"--static-endpoints: {quote_go(entry)}: bad label {quote_go(part)}"
                )
            labels[key] = value
        if (host, int(port_text)) in seen:
            raise ConfigError(f"--static-endpoints: {quote_go(where)} is listed twice")
        seen.add((host, int(port_text)))
        out.append(StaticEndpoint(host, int(port_text), labels))
    if not out:
        raise ConfigError("--static-endpoints: no endpoint given")
    return tuple(out)


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
    for name, gate in (
        ("ENABLE_EXPERIMENTAL_DATALAYER_V2", "dataLayer"),
        ("ENABLE_EXPERIMENTAL_FLOW_CONTROL_LAYER", "flowControl"),
    ):
        if name in env:
            warnings.append(
                f"{name} is deprecated; add {gate!r} to featureGates in the config file"
            )
        if _env_bool(env, name, warnings):
            gates.append(gate)
    out["env_feature_gates"] = tuple(gates)
    if (raw := env.get("SD_QUEUE_DEPTH_THRESHOLD")) is not None:
        value = int(raw) if re.fullmatch(r"[+-]?[0-9]+", raw) else 0
        out["sd_queue_depth_threshold"] = value if value > 0 else 5
    if (raw := env.get("SD_KV_CACHE_UTIL_THRESHOLD")) is not None:
        try:
            util = parse_go_float(raw)
        except ValueError:
            util = 0.0
        out["sd_kv_cache_util_threshold"] = util if 0 < util < 1 else 0.8
    if (raw := env.get("SD_METRICS_STALENESS_THRESHOLD")) is not None:
        try:
            ns = go_parse_duration_ns(raw)
        except ValueError:
            ns = 0
        out["sd_metrics_staleness_threshold"] = ns / 1e9 if ns > 0 else 0.2
    for name in (
        "SD_QUEUE_DEPTH_THRESHOLD",
        "SD_KV_CACHE_UTIL_THRESHOLD",
        "SD_METRICS_STALENESS_THRESHOLD",
    ):
        if name in env:
            warnings.append(
                f"{name} is deprecated; set it under saturationDetector in the config file"
            )
    return out


# ---------------------------------------------------------------- loading


def _check_pool_choice(v: Mapping[str, object]) -> None:
    """Spec §1.2 item 1, with `--static-endpoints` and `--endpoints-file` as exclusive choices."""
    pool, selector, static = (
        bool(v["pool-name"]),
        bool(v["endpoint-selector"]),
        bool(v["static-endpoints"]),
    )
    if v["endpoints-file"] and (pool or selector or static):
        raise ConfigError(
            "--endpoints-file can not be combined with pool-name, endpoint-selector "
            "or static-endpoints"
        )
    if v["endpoints-file"]:
        return
    if static and (pool or selector):
        raise ConfigError(
            "--static-endpoints can not be combined with pool-name or endpoint-selector"
        )
    if not static and pool == selector:
        raise ConfigError(
            NO_POOL if not pool else "either pool-name or endpoint-selector must be set"
        )


def load_options(argv: Sequence[str], env: Mapping[str, str]) -> EppOptions:
    """Parse argv (without the program name) and env; validate in spec §1.2 order.

    Raises HelpRequested for `--help`/`-h`, ConfigError (one line) otherwise.
    """
    flags, v = _parse(argv)
    warnings: list[str] = []
    _check_pool_choice(v)
    _check_values(v)
    selector_text = str(v["endpoint-selector"])
    ports: tuple[int, ...] = ()
    if selector_text:
        raw_ports = v["endpoint-target-ports"]
        assert isinstance(raw_ports, tuple)
        ports = _ports(tuple(str(p) for p in raw_ports))
        if not 1 <= len(ports) <= 8:
            raise ConfigError('flag "endpoint-target-ports" should have length from 1 to 8')
        for port in ports:
            if not 0 <= port <= 65535:
                raise ConfigError(f'invalid port number {port} in "endpoint-target-ports"')
    if v["config-text"] and v["config-file"]:
        raise ConfigError(
            'both the "configText" and "configFile" flags can not be set at the same time'
        )
    scheme = str(v["model-server-metrics-scheme"])
    if scheme not in ("http", "https"):
        raise ConfigError(
            f'unexpected {quote_go(scheme)} value for "model-server-metrics-scheme" flag, '
            "it can only be set to 'http' or 'https'"
        )
    for name, (_, param) in DEPRECATED_METRIC_FLAGS.items():
        if name in flags.values:
            raise ConfigError(
                f"flag --{name} is no longer supported: configure the metric in the config file, "
                f"parameter {param} (or engineConfigs) of the model-server-protocol-metrics plugin"
            )
    pool_name = str(v["pool-name"])
    selector: dict[str, str] = {}
    if selector_text:
        pod_name = env.get("POD_NAME")
        if not pod_name:
            raise ConfigError("failed to get environment variable POD_NAME")
        match = _POD_NAME.match(pod_name)
        if match is None:
            raise ConfigError(f"failed to parse deployment name from pod name {pod_name}")
        pool_name = match.group(1)
        try:
            selector = parse_label_map(selector_text)
        except ValueError as exc:
            raise ConfigError(f'failed to parse flag "endpoint-selector": {exc}') from None
    static = parse_static_endpoints(str(v["static-endpoints"])) if v["static-endpoints"] else ()
    if "model-server-metrics-port" in flags.values:
        warnings.append(
            "--model-server-metrics-port is deprecated; endpoints are scraped on their serving port"
        )
    namespace = str(v["pool-namespace"]) or env.get("NAMESPACE", "") or "default"
    values: dict[str, object] = {
        spec.name.replace("-", "_"): v[spec.name]
        for spec in _FLAGS
        if spec.name not in DEPRECATED_METRIC_FLAGS and spec.name != "v"
    }
    values.update(
        pool_namespace=namespace,
        pool_name=pool_name,
        endpoint_selector=selector,
        endpoint_target_ports=ports,
        static_endpoints=static,
        log_verbosity=v["v"],
        **_env_overrides(env, warnings),
    )
    return EppOptions(**values, warnings=tuple(warnings))  # type: ignore[arg-type]


# ---------------------------------------------------------------- reference page

_INTRO = """# EPP flags

<!-- Generated by `python -m pyllmd.epp.options --markdown`; do not edit by hand. -->

`pyllmd epp` takes the flags of the llm-d inference scheduler's EPP (GIE runner),
parsed like Go's pflag: `--name value` or `--name=value`; booleans are switched
off with `--flag=false`; durations are Go durations (`50ms`, `2s`); an unknown
flag or a bad value stops start-up with one line naming the flag. `-v`/`--v`
sets the log verbosity (2 default, 3 verbose, 4 debug, 5 trace) unless
`--zap-log-level` is given. `--help` prints the usage text.

## Choosing the endpoints

Exactly one of these must be given (otherwise: `either pool-name or
endpoint-selector must be set`, followed, when none is given, by the hint
`(or, without Kubernetes, --static-endpoints or --endpoints-file)`):

* `--pool-name`: watch that InferencePool (Kubernetes).
* `--endpoint-selector` with `--endpoint-target-ports`: standalone mode, pods
  selected by labels (Kubernetes; needs `POD_NAME`).
* `--static-endpoints` (**pyllmd extension**, no Kubernetes): a fixed list of
  model servers, comma-separated, each `host:port` optionally followed by
  `;label=value` pairs, IPv6 in brackets. Example:
  `--static-endpoints='10.0.0.1:8000;llm-d.ai/role=prefill,10.0.0.2:8000;llm-d.ai/role=decode'`.
  Each entry becomes its own endpoint `<host>-<port>-rank-0` (dots and colons
  turned into `-`) in the namespace of `--pool-namespace`/`NAMESPACE`, ready at
  once; metrics are scraped from it like any pod. Combining it with
  `--pool-name` or `--endpoint-selector` is an error.
* `--endpoints-file` (**pyllmd extension**, no Kubernetes): a Prometheus
  file_sd file (`.json`, `.yml` or `.yaml`), e.g.
  `[{"targets": ["10.0.0.1:8000"], "labels": {"llm-d.ai/role": "decode"}}]`.
  Each target becomes an endpoint as with `--static-endpoints`, with its
  group's labels (labels starting with `__` are skipped). The file is checked
  every 250 ms and a changed file replaces the endpoint set in place; an empty
  list is a valid, empty pool (requests wait under flow control). A missing
  or invalid file stops start-up; later, a bad version is logged and the last
  good endpoints are kept. Combining it with any of the three above is an error.

## Differences from upstream

* The deprecated metric flags (`--total-queued-requests-metric`,
  `--total-running-requests-metric`, `--kv-cache-usage-percentage-metric`,
  `--lora-info-metric`, `--cache-info-metric`) are an error when given, as the
  main-branch CLI reference states: set the mapping in the config file
  (`model-server-protocol-metrics` parameters or its `engineConfigs`). Their
  defaults remain the default vLLM mapping.
* Durations must carry a unit, as in Go (`50` is rejected, `50ms` accepted).
* `--bind-address` (**pyllmd extension**) is the address the ext_proc, health
  and metrics servers listen on; the default `0.0.0.0` is upstream's
  behaviour (all interfaces); `127.0.0.1` keeps a local EPP private.
* `--pool-name` and `--endpoint-selector` discover pods through the Kubernetes
  API (kubeconfig from `--kubeconfig`, `KUBECONFIG`, in-cluster, then
  `~/.kube/config`). `--ha-enable-leader-election` campaigns for the Lease
  `epp-<namespace>-<pool>.gateway-api-inference-extension.sigs.k8s.io`; only the
  leader is ready, while discovery runs on every replica (warm fail-over).
* `--metrics-endpoint-auth=true` (the default) reviews each scraper's bearer token
  with a TokenReview and a SubjectAccessReview (`get` on the `/metrics` URL);
  401 without a valid token, 403 without the permission. With
  `--static-endpoints` or `--endpoints-file` the Kubernetes API is still used for this when a
  kubeconfig is found; without one every scrape is refused (a warning says so
  at start-up): pass `--metrics-endpoint-auth=false` to scrape the metrics.
* `--enable-pprof` and `--tracing` are accepted and have no effect (no Go
  profiles, no OpenTelemetry export). `--zap-devel`, `--zap-encoder`,
  `--zap-stacktrace-level` and `--zap-time-encoding` are checked as upstream
  checks them and then have no effect: the log format is pyllmd's
  (`--zap-log-level` does set the verbosity).
* Values upstream accepts and then fails on, or misbehaves with, are refused at
  start-up with one line naming the flag: a port outside 0 to 65535 (0 picks a
  free port), two of `--grpc-port`, `--grpc-health-port`, `--metrics-port` on
  the same port, a non-positive `--refresh-metrics-interval` or
  `--refresh-prometheus-metrics-interval` (upstream's ticker panics), a negative
  `--metrics-staleness-threshold`, a `--pool-group` other than the two
  InferencePool groups, a `--cert-path` without a readable, matching `tls.crt`
  and `tls.key`. A port another process already listens on is refused
  (`--grpc-port: cannot listen on 0.0.0.0:9002: address already in use`), as
  Go's listener refuses it; grpc's default would have shared it silently.

## Flags

| Flag | Type | Default | Meaning |
|---|---|---|---|
"""

_ENV = """
## Environment variables

| Variable | Effect |
|---|---|
| `NAMESPACE` | pool namespace when `--pool-namespace` is empty (else `default`) |
| `POD_NAME` | required with `--endpoint-selector`; `<deployment>-<hash>-<id>` gives the pool name |
| `ENABLE_EXPERIMENTAL_DATALAYER_V2` | deprecated: when true, adds feature gate `dataLayer` |
| `ENABLE_EXPERIMENTAL_FLOW_CONTROL_LAYER` | deprecated: when true, adds feature gate `flowControl` |
| `SD_QUEUE_DEPTH_THRESHOLD` | deprecated: overrides `saturationDetector.queueDepthThreshold` (invalid or ≤ 0 → 5) |
| `SD_KV_CACHE_UTIL_THRESHOLD` | deprecated: overrides `saturationDetector.kvCacheUtilThreshold` (outside (0, 1) → 0.8) |
| `SD_METRICS_STALENESS_THRESHOLD` | deprecated: overrides `saturationDetector.metricsStalenessThreshold` (invalid or ≤ 0 → 200ms) |
"""


def flags_markdown() -> str:
    """docs/user-guide/admin/epp-flags.md, generated from the flag table."""
    rows = []
    for spec in sorted(_FLAGS, key=lambda s: s.name):
        name = f"`-{spec.shorthand}`, `--{spec.name}`" if spec.shorthand else f"`--{spec.name}`"
        kind = "int list" if spec.name == "endpoint-target-ports" else str(spec.kind)
        default = default_text(spec) or {S: '""', B: "false", N: "0", L: "[]"}.get(spec.kind, "")
        if default and not default.startswith("`"):
            default = f"`{default}`"
        rows.append(f"| {name} | {kind} | {default} | {spec.help.replace('|', '/')} |")
    return _INTRO + "\n".join(rows) + "\n" + _ENV


if __name__ == "__main__":  # pragma: no cover - documentation helper
    if sys.argv[1:] == ["--markdown"]:
        sys.stdout.write(flags_markdown())
    else:
        sys.stdout.write(help_text())
