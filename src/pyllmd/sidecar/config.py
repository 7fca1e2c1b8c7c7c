# ruff: noqa: E501
"""Flags of `pyllmd pd-sidecar`, named as llm-d's routing sidecar (`cmd/pd-sidecar`) names them.

Upstream parses with Go's `flag` package, where `-port` and `--port` are the
same flag; single-dash long flags are therefore accepted here too. What
pyllmd does not implement is refused at start-up with one clear line instead
of being accepted and ignored: SSRF protection (`--enable-ssrf-protection`,
which watches the InferencePool in Kubernetes). Every bad value is one line
naming the flag (or environment variable), exit 1.

`SidecarOptions` is where each flag and environment variable is declared, once
(core/settings): `FLAGS` (the pflag table) and `--help` come from it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as settings_dataclass

from pyllmd.core.errors import ConfigError
from pyllmd.core.flags import FlagKind, parse_go_bool
from pyllmd.core.listen import host_error
from pyllmd.core.settings import build, flag_specs, parse_command_line, setting, settings_of
from pyllmd.core.zap import zap_error, zap_setting, zap_verbosity
from pyllmd.sidecar.protocol import SGLANG_BOOTSTRAP_PORT

CONNECTOR_NIXLV2 = "nixlv2"
CONNECTOR_SHARED_STORAGE = "shared-storage"
CONNECTOR_SGLANG = "sglang"
SUPPORTED_CONNECTORS = (CONNECTOR_NIXLV2, CONNECTOR_SHARED_STORAGE, CONNECTOR_SGLANG)
DEFAULT_POOL_GROUP = "inference.networking.k8s.io"
PROG = "pyllmd pd-sidecar"

S = FlagKind.STRING
_ZAP_HELP = {
    "zap-devel": "zap development mode (accepted for compatibility; no effect: the log format is pyllmd's)",
    "zap-encoder": "zap log encoding, json or console (checked, then no effect)",
    "zap-log-level": "log level: debug, info, error, panic or an integer verbosity > 0",
    "zap-stacktrace-level": "zap stack-trace level, info, error or panic (checked, then no effect)",
    "zap-time-encoding": "zap time encoding, epoch, millis, nano, iso8601, rfc3339 or rfc3339nano (checked, then no effect)",
}


def _zap(name: str) -> Any:
    return zap_setting(name, _ZAP_HELP[name])


@settings_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class SidecarOptions:
    """The sidecar's settings: every flag and environment variable, declared once."""

    # fmt: off
    port: int = setting(8000, "the port the sidecar is listening on", flag="port", kind=S, flag_default="8000")
    vllm_port: int = setting(8001, "the port vLLM is listening on", flag="vllm-port", kind=S, flag_default="8001")
    data_parallel_size: int = setting(1, "the vLLM DATA-PARALLEL-SIZE value", flag="data-parallel-size")
    connector: str = setting(CONNECTOR_NIXLV2, "the P/D connector being used. Supported: " + ", ".join(SUPPORTED_CONNECTORS), flag="connector")
    prefiller_use_tls: bool = setting(False, "whether to use TLS when sending requests to prefillers", flag="prefiller-use-tls")
    decoder_use_tls: bool = setting(False, "whether to use TLS when sending requests to the decoder", flag="decoder-use-tls")
    prefiller_insecure_skip_verify: bool = setting(False, "skip TLS verification for requests to prefillers", flag="prefiller-tls-insecure-skip-verify")
    decoder_insecure_skip_verify: bool = setting(False, "skip TLS verification for requests to the decoder", flag="decoder-tls-insecure-skip-verify")
    secure_proxy: bool = setting(True, "serve TLS (self-signed unless --cert-path is given)", flag="secure-proxy")
    cert_path: str = setting("", "directory holding tls.crt and tls.key for --secure-proxy", flag="cert-path")
    enable_ssrf_protection: bool = setting(False, "only prefill on pods of the InferencePool (not supported by pyllmd)", flag="enable-ssrf-protection")
    inference_pool_namespace: str = setting("", "namespace of the InferencePool (default $INFERENCE_POOL_NAMESPACE)", flag="inference-pool-namespace", env="INFERENCE_POOL_NAMESPACE")
    inference_pool_name: str = setting("", "name of the InferencePool (default $INFERENCE_POOL_NAME)", flag="inference-pool-name", env="INFERENCE_POOL_NAME")
    enable_prefiller_sampling: bool = setting(False, "pick the prefill host at random among the given ones (default $ENABLE_PREFILLER_SAMPLING)", flag="enable-prefiller-sampling", env="ENABLE_PREFILLER_SAMPLING")
    pool_group: str = setting(DEFAULT_POOL_GROUP, "group of the InferencePool (used only by SSRF protection, not supported by pyllmd)", flag="pool-group")
    kubeconfig: str = setting("", "path to a kubeconfig (accepted for compatibility; no effect)", flag="kubeconfig")
    zap_devel: bool = _zap("zap-devel")
    zap_encoder: str = _zap("zap-encoder")
    zap_log_level: str = _zap("zap-log-level")
    zap_stacktrace_level: str = _zap("zap-stacktrace-level")
    zap_time_encoding: str = _zap("zap-time-encoding")
    bind_address: str = setting("", "pyllmd extension: IP address or host name to listen on (default: all interfaces)", flag="bind-address")
    pod_ip: str = setting("", "data-parallel ranks are keyed by `<pod ip>:<rank port>`", env="POD_IP")
    sglang_bootstrap_port: int = setting(SGLANG_BOOTSTRAP_PORT, "SGLang's bootstrap port (connector sglang)", env="SGLANG_BOOTSTRAP_PORT")
    verbosity: int = setting(2, "the log verbosity, from --zap-log-level", derived=True)
    # fmt: on


FLAGS = flag_specs(SidecarOptions)


def _go_flag_style(argv: Sequence[str]) -> list[str]:
    """Go's `flag` treats `-name` like `--name`: rewrite single-dash long flags."""
    out: list[str] = []
    for arg in argv:
        if arg == "--":
            out += argv[len(out) :]
            break
        if arg.startswith("-") and not arg.startswith("--") and len(arg.split("=")[0]) > 2:
            arg = "-" + arg
        out.append(arg)
    return out


def _port(flag: str, value: object) -> int:
    text = str(value)
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= 65535:
        raise ConfigError(f"--{flag}: invalid port {text!r}")
    return int(text)


def _bootstrap_port(env: Mapping[str, str]) -> int:
    """`SGLANG_BOOTSTRAP_PORT` (upstream ignores a bad value; here it is an error)."""
    name = _env_names()["sglang_bootstrap_port"]
    text = env.get(name, "")
    if not text:
        return SGLANG_BOOTSTRAP_PORT
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= 65535:
        raise ConfigError(f"{name}: invalid port {text!r}")
    return int(text)


@functools.cache
def _env_names() -> dict[str, str]:
    """Field -> its environment variable, as the model declares it."""
    return {row.field: row.env[0] for row in settings_of(SidecarOptions) if row.env}


def _check_ssrf(given: Mapping[str, object], env: Mapping[str, str]) -> None:
    """`--enable-ssrf-protection`: the pool must be named, then it is refused."""
    names = _env_names()
    for flag in ("inference-pool-namespace", "inference-pool-name"):
        field = flag.replace("-", "_")
        if not (given.get(field) or env.get(names[field], "")):
            raise ConfigError(
                f"--{flag} or {names[field]} environment variable "
                "is required when --enable-ssrf-protection is true"
            )
    raise ConfigError("--enable-ssrf-protection is not implemented by pyllmd pd-sidecar")


def _sampling(v: Mapping[str, object], given: Mapping[str, object], env: Mapping[str, str]) -> bool:
    """The flag when given, else its environment variable (unparsable: false)."""
    if "enable_prefiller_sampling" in given:
        return bool(v["enable_prefiller_sampling"])
    try:
        return parse_go_bool(env.get(_env_names()["enable_prefiller_sampling"], "false"))
    except ValueError:
        return False


def load_options(argv: Sequence[str], env: Mapping[str, str]) -> SidecarOptions:
    """Parse and validate; raises `ConfigError` (one line) or `HelpRequested`."""
    line = parse_command_line(SidecarOptions, _go_flag_style(argv), PROG)
    given, v = line.given, line.effective()
    if line.args:
        raise ConfigError(f"unexpected argument {line.args[0]!r}")
    if (error := zap_error(line.parsed.values)) is not None:
        raise ConfigError(error)
    connector = str(v["connector"])
    if connector not in SUPPORTED_CONNECTORS:
        raise ConfigError("--connector must be one of: " + ", ".join(SUPPORTED_CONNECTORS))
    if v["enable_ssrf_protection"]:
        _check_ssrf(given, env)
    size = int(str(v["data_parallel_size"]))
    if size < 1:
        raise ConfigError(f"--data-parallel-size must be at least 1, got {size}")
    sampling = _sampling(v, given, env)
    port, vllm_port = _port("port", v["port"]), _port("vllm-port", v["vllm_port"])
    for name, first in (("port", port), ("vllm-port", vllm_port)):
        if first + size - 1 > 65535:  # rank i listens on --port+i, forwards to --vllm-port+i
            raise ConfigError(
                f"--data-parallel-size: {size} ranks need --{name} {first} to {first + size - 1}, "
                "beyond port 65535"
            )
    host = str(v["bind_address"])
    if host and (error := host_error(host)) is not None:
        raise ConfigError(f"--bind-address: {error}")
    bootstrap = _bootstrap_port(env) if connector == CONNECTOR_SGLANG else SGLANG_BOOTSTRAP_PORT
    values = dict(v)
    values.update(
        port=port,
        vllm_port=vllm_port,
        data_parallel_size=size,
        enable_prefiller_sampling=sampling,
        pod_ip=env.get(_env_names()["pod_ip"], ""),
        sglang_bootstrap_port=bootstrap,
        verbosity=zap_verbosity(str(v["zap_log_level"]), 2),
    )
    return build(SidecarOptions, values)
