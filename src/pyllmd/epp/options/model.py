# ruff: noqa: E501
"""The EPP's settings (spec §1): one model, `EppOptions`, for its flags and environment.

`EppOptions` is where every `pyllmd epp` setting is declared, once: each field
gives its type and default, and (`setting`, core/settings) its flag, environment
variable, help text and deprecation. The pflag table (`epp_flag_specs`), `--help`
(`help_text`) and the generated reference page (`flags_markdown`,
`python -m pyllmd.epp.options --markdown`, rendered by docs.py) come from
it. `load_options` (load.py) parses and validates, following spec §1.2 in
order, one `ConfigError` line per failure.

Deviations from upstream, on purpose:
* the deprecated metric-spec flags are an error when given (project decision,
  spec §1.2 item 5): the mapping belongs in the config file;
* `--static-endpoints` (extension, spec §12/§14) lists model servers directly,
  so no Kubernetes API is needed; it is a third way to name the pool;
* `--endpoints-file` (extension, `datalayer/filesd.py`) reads the model servers from a
  Prometheus file_sd file and follows its changes: a fourth way to name the pool;
* `--bind-address` (extension) chooses the listening address of all three
  servers (upstream always listens on every interface).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as settings_dataclass

from pyllmd.core.errors import ConfigError
from pyllmd.core.flags import FlagKind, FlagSpec, HelpRequested, quote_go
from pyllmd.core.gosyntax import printable
from pyllmd.core.logging import verbosity
from pyllmd.core.settings import flag_specs, setting, usage_text
from pyllmd.core.zap import zap_setting

__all__ = [
    "EppOptions",
    "HelpRequested",
    "StaticEndpoint",
    "epp_flag_specs",
    "flags_markdown",
    "help_text",
    "load_options",
    "parse_label_map",
    "parse_static_endpoints",
]

PROG = "pyllmd epp"
S, D, L = FlagKind.STRING, FlagKind.DURATION, FlagKind.STRING_LIST

# Deprecated metric-spec flag -> (default spec, config-file parameter replacing it).
DEPRECATED_METRIC_FLAGS: dict[str, tuple[str, str]] = {
    "total-queued-requests-metric": ("vllm:num_requests_waiting", "queueRequestsSpec"),
    "total-running-requests-metric": ("vllm:num_requests_running", "runningRequestsSpec"),
    "kv-cache-usage-percentage-metric": ("vllm:kv_cache_usage_perc", "kvUsageSpec"),
    "lora-info-metric": ("vllm:lora_requests_info", "loraSpec"),
    "cache-info-metric": ("vllm:cache_config_info", "cacheInfoSpec"),
}
SERVER_PORTS = ("grpc-port", "grpc-health-port", "metrics-port")
POSITIVE_DURATIONS = ("refresh-metrics-interval", "refresh-prometheus-metrics-interval")
POOL_GROUPS = ("inference.networking.k8s.io", "inference.networking.x-k8s.io")
# The deprecated environment variables that switch feature gates on (spec §1.3).
ENV_FEATURE_GATES = ("dataLayer", "flowControl")

_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True, slots=True)
class StaticEndpoint:
    """One `--static-endpoints` entry: a model server and its labels."""

    address: str  # IP or host name, IPv6 without brackets
    port: int
    labels: Mapping[str, str] = field(default_factory=dict)


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


def _metric_flag(name: str) -> Any:
    """A deprecated metric-spec flag: refused when given; its default is the vLLM mapping."""
    spec, param = DEPRECATED_METRIC_FLAGS[name]
    return setting(
        spec,
        f"DEPRECATED, an error when given: set {param} of the model-server-protocol-metrics plugin (or its engineConfigs) in the config file",
        flag=name,
    )


@settings_dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class EppOptions:
    """The validated command line and environment. Durations are float seconds."""

    # fmt: off
    grpc_port: int = setting(9002, 'Port of the ext_proc gRPC server Envoy calls (0: a free port)', flag='grpc-port')
    grpc_health_port: int = setting(9003, 'Port of the plaintext gRPC health service (liveness/readiness probes; 0: a free port)', flag='grpc-health-port')
    metrics_port: int = setting(9090, 'Port of the Prometheus /metrics server (0: a free port)', flag='metrics-port')
    bind_address: str = setting('0.0.0.0', 'pyllmd extension: IP address or host name the ext_proc, health and metrics servers listen on (upstream: all interfaces)', flag='bind-address')
    ha_enable_leader_election: bool = setting(False, 'Elect a leader through a Kubernetes Lease; only the leader reports ready', flag='ha-enable-leader-election')
    pool_group: str = setting('inference.networking.k8s.io', 'API group of the InferencePool (inference.networking.x-k8s.io selects the v1alpha2 API)', flag='pool-group')
    pool_namespace: str = setting('default', 'Namespace of the InferencePool (default: $NAMESPACE, else default)', flag='pool-namespace', flag_default='', env='NAMESPACE')
    pool_name: str = setting('', 'Name of the InferencePool to serve', flag='pool-name', env='POD_NAME')
    endpoint_selector: Mapping[str, str] = setting({}, 'Standalone mode: label selector of the model-server pods, comma-separated key=value pairs without spaces (e.g. app=vllm,env=prod)', flag='endpoint-selector', flag_default='', kind=S)
    endpoint_target_ports: tuple[int, ...] = setting((), 'Standalone mode: comma-separated serving ports of the selected pods (e.g. 8000,8001)', flag='endpoint-target-ports', kind=L, type_text='int list')
    static_endpoints: tuple[StaticEndpoint, ...] = setting((), 'pyllmd extension: comma-separated model servers ip:port[;label=value...] used as the pool without Kubernetes (e.g. 10.0.0.1:8000;llm-d.ai/role=decode,10.0.0.2:8000)', flag='static-endpoints', kind=S, flag_default='')
    endpoints_file: str = setting('', 'pyllmd extension: a Prometheus file_sd file (.json, .yml or .yaml) whose ip:port targets, with their group labels, are the pool; re-read when it changes (no Kubernetes)', flag='endpoints-file')
    disable_endpoint_subset_filter: bool = setting(False, 'Ignore the x-gateway-destination-endpoint-subset filter metadata', flag='disable-endpoint-subset-filter')
    model_server_metrics_scheme: str = setting('http', 'Scheme of model-server metrics scrapes: http or https', flag='model-server-metrics-scheme')
    model_server_metrics_path: str = setting('/metrics', 'URL path of model-server metrics', flag='model-server-metrics-path')
    model_server_metrics_port: int = setting(0, 'DEPRECATED: port to scrape metrics from pods; 0 scrapes each endpoint on its serving port', flag='model-server-metrics-port', deprecated='--model-server-metrics-port is deprecated; endpoints are scraped on their serving port')
    model_server_metrics_https_insecure_skip_verify: bool = setting(True, 'Do not verify model-server certificates when scraping over https', flag='model-server-metrics-https-insecure-skip-verify')
    refresh_metrics_interval: float = setting(0.05, "Period of each endpoint's metrics scrape (positive)", flag='refresh-metrics-interval', kind=D)
    refresh_prometheus_metrics_interval: float = setting(5.0, 'Period of the inference_pool_* gauge refresh (positive)', flag='refresh-prometheus-metrics-interval', kind=D)
    metrics_staleness_threshold: float = setting(2.0, "Age after which an endpoint's scraped metrics count as stale", flag='metrics-staleness-threshold', kind=D)
    total_queued_requests_metric: str = _metric_flag('total-queued-requests-metric')
    total_running_requests_metric: str = _metric_flag('total-running-requests-metric')
    kv_cache_usage_percentage_metric: str = _metric_flag('kv-cache-usage-percentage-metric')
    lora_info_metric: str = _metric_flag('lora-info-metric')
    cache_info_metric: str = _metric_flag('cache-info-metric')
    log_verbosity: int = verbosity('Log verbosity: 2 default, 3 verbose, 4 debug, 5 trace')
    zap_devel: bool = zap_setting('zap-devel', "Accepted for compatibility; no effect: pyllmd's log format is fixed (upstream: development logging instead of production)")
    zap_encoder: str = zap_setting('zap-encoder', "Log encoding, json or console: checked, then no effect (pyllmd's log format is fixed)")
    zap_log_level: str = zap_setting('zap-log-level', 'Log level: debug, info, error, panic, or an integer > 0 for more verbose debug levels (overrides -v)')
    zap_stacktrace_level: str = zap_setting('zap-stacktrace-level', 'Lowest level that logs a stack trace, info, error or panic: checked, then no effect')
    zap_time_encoding: str = zap_setting('zap-time-encoding', 'Log timestamp format, epoch, millis, nano, iso8601, rfc3339 or rfc3339nano: checked, then no effect')
    tracing: bool = setting(True, 'Accepted for compatibility; no effect (upstream: emit OpenTelemetry traces)', flag='tracing')
    health_checking: bool = setting(False, 'Also serve the gRPC health service on the ext_proc port', flag='health-checking')
    enable_pprof: bool = setting(True, 'Accepted for compatibility; no effect (upstream: serve /debug/pprof/ profiles on the metrics port)', flag='enable-pprof')
    cert_path: str = setting('', 'Directory with tls.crt and tls.key for the ext_proc server; empty uses a generated self-signed certificate', flag='cert-path')
    enable_cert_reload: bool = setting(False, 'Reload the --cert-path files when they change', flag='enable-cert-reload')
    secure_serving: bool = setting(True, 'Serve ext_proc over TLS', flag='secure-serving')
    metrics_endpoint_auth: bool = setting(True, 'Require a Kubernetes token allowed to GET /metrics on the metrics port', flag='metrics-endpoint-auth')
    config_file: str = setting('', 'Path of an EndpointPickerConfig YAML file', flag='config-file')
    config_text: str = setting('', 'An EndpointPickerConfig YAML given inline instead of --config-file', flag='config-text')
    kubeconfig: str = setting('', 'Path of a kubeconfig, for running outside the cluster', flag='kubeconfig')
    # From the deprecated environment variables (spec §1.3); None = variable absent.
    env_feature_gates: tuple[str, ...] = setting((), "deprecated: when true, each adds its feature gate", env=("ENABLE_EXPERIMENTAL_DATALAYER_V2", "ENABLE_EXPERIMENTAL_FLOW_CONTROL_LAYER"))
    sd_queue_depth_threshold: int | None = setting(None, "deprecated: overrides saturationDetector.queueDepthThreshold", env="SD_QUEUE_DEPTH_THRESHOLD", kind=FlagKind.INT)
    sd_kv_cache_util_threshold: float | None = setting(None, "deprecated: overrides saturationDetector.kvCacheUtilThreshold", env="SD_KV_CACHE_UTIL_THRESHOLD", kind=FlagKind.FLOAT)
    sd_metrics_staleness_threshold: float | None = setting(None, "deprecated: overrides saturationDetector.metricsStalenessThreshold", env="SD_METRICS_STALENESS_THRESHOLD", kind=D)
    warnings: tuple[str, ...] = setting((), "deprecation notes the caller logs at start-up", derived=True)
    # fmt: on

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
        return {name: getattr(self, name.replace("-", "_")) for name in DEPRECATED_METRIC_FLAGS}


def epp_flag_specs() -> tuple[FlagSpec, ...]:
    """The pflag table of `pyllmd epp`."""
    return flag_specs(EppOptions)


def help_text() -> str:
    """The `--help` text."""
    return usage_text(EppOptions, PROG)


def load_options(argv: Sequence[str], env: Mapping[str, str]) -> EppOptions:
    """Parse argv (without the program name) and env; validate in spec §1.2 order.

    Raises HelpRequested for `--help`/`-h`, ConfigError (one line) otherwise.
    """
    from pyllmd.epp.options.load import load  # it imports this module

    return load(argv, env)


def flags_markdown() -> str:
    """docs/user-guide/admin/epp-flags.md, generated from the model."""
    from pyllmd.epp.options.docs import render_markdown  # it imports this module

    return render_markdown()
