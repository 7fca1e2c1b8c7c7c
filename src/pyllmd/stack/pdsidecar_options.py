# ruff: noqa: E501
"""Flags of `pyllmd pd-sidecar`, named as llm-d's routing sidecar (`cmd/pd-sidecar`) names them.

Upstream parses with Go's `flag` package, where `-port` and `--port` are the
same flag; single-dash long flags are therefore accepted here too. What
pyllmd does not implement is refused at start-up with one clear line instead
of being accepted and ignored: SSRF protection (`--enable-ssrf-protection`,
which watches the InferencePool in Kubernetes). Every bad value is one line
naming the flag (or environment variable), exit 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyllmd.core.errors import ConfigError
from pyllmd.core.flags import FlagKind, FlagSpec, parse_flags, parse_go_bool
from pyllmd.core.listen import host_error
from pyllmd.core.zap import zap_error, zap_verbosity
from pyllmd.stack.pdsidecar_protocol import SGLANG_BOOTSTRAP_PORT

CONNECTOR_NIXLV2 = "nixlv2"
CONNECTOR_SHARED_STORAGE = "shared-storage"
CONNECTOR_SGLANG = "sglang"
SUPPORTED_CONNECTORS = (CONNECTOR_NIXLV2, CONNECTOR_SHARED_STORAGE, CONNECTOR_SGLANG)
DEFAULT_POOL_GROUP = "inference.networking.k8s.io"

B, N, S = FlagKind.BOOL, FlagKind.INT, FlagKind.STRING
# fmt: off
FLAGS = (
    FlagSpec("port", S, "8000", "the port the sidecar is listening on"),
    FlagSpec("vllm-port", S, "8001", "the port vLLM is listening on"),
    FlagSpec("data-parallel-size", N, 1, "the vLLM DATA-PARALLEL-SIZE value"),
    FlagSpec("connector", S, CONNECTOR_NIXLV2, "the P/D connector being used. Supported: " + ", ".join(SUPPORTED_CONNECTORS)),
    FlagSpec("prefiller-use-tls", B, False, "whether to use TLS when sending requests to prefillers"),
    FlagSpec("decoder-use-tls", B, False, "whether to use TLS when sending requests to the decoder"),
    FlagSpec("prefiller-tls-insecure-skip-verify", B, False, "skip TLS verification for requests to prefillers"),
    FlagSpec("decoder-tls-insecure-skip-verify", B, False, "skip TLS verification for requests to the decoder"),
    FlagSpec("secure-proxy", B, True, "serve TLS (self-signed unless --cert-path is given)"),
    FlagSpec("cert-path", S, "", "directory holding tls.crt and tls.key for --secure-proxy"),
    FlagSpec("enable-ssrf-protection", B, False, "only prefill on pods of the InferencePool (not supported by pyllmd)"),
    FlagSpec("inference-pool-namespace", S, "", "namespace of the InferencePool (default $INFERENCE_POOL_NAMESPACE)"),
    FlagSpec("inference-pool-name", S, "", "name of the InferencePool (default $INFERENCE_POOL_NAME)"),
    FlagSpec("enable-prefiller-sampling", B, False, "pick the prefill host at random among the given ones (default $ENABLE_PREFILLER_SAMPLING)"),
    FlagSpec("pool-group", S, DEFAULT_POOL_GROUP, "group of the InferencePool (used only by SSRF protection, not supported by pyllmd)"),
    FlagSpec("kubeconfig", S, "", "path to a kubeconfig (accepted for compatibility; no effect)"),
    FlagSpec("zap-devel", B, True, "zap development mode (accepted for compatibility; no effect: the log format is pyllmd's)"),
    FlagSpec("zap-encoder", S, "", "zap log encoding, json or console (checked, then no effect)"),
    FlagSpec("zap-log-level", S, "", "log level: debug, info, error, panic or an integer verbosity > 0"),
    FlagSpec("zap-stacktrace-level", S, "", "zap stack-trace level, info, error or panic (checked, then no effect)"),
    FlagSpec("zap-time-encoding", S, "", "zap time encoding, epoch, millis, nano, iso8601, rfc3339 or rfc3339nano (checked, then no effect)"),
    FlagSpec("bind-address", S, "", "pyllmd extension: IP address or host name to listen on (default: all interfaces)"),
)
# fmt: on


@dataclass(frozen=True)
class SidecarOptions:
    """The sidecar's validated configuration."""

    port: int = 8000
    vllm_port: int = 8001
    data_parallel_size: int = 1
    connector: str = CONNECTOR_NIXLV2
    prefiller_use_tls: bool = False
    decoder_use_tls: bool = False
    prefiller_insecure_skip_verify: bool = False
    decoder_insecure_skip_verify: bool = False
    secure_proxy: bool = True
    cert_path: str = ""
    enable_prefiller_sampling: bool = False
    bind_address: str = ""
    pod_ip: str = ""  # $POD_IP: data-parallel ranks are keyed by `<pod ip>:<rank port>`
    verbosity: int = 2
    sglang_bootstrap_port: int = SGLANG_BOOTSTRAP_PORT  # $SGLANG_BOOTSTRAP_PORT


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
    text = env.get("SGLANG_BOOTSTRAP_PORT", "")
    if not text:
        return SGLANG_BOOTSTRAP_PORT
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= 65535:
        raise ConfigError(f"SGLANG_BOOTSTRAP_PORT: invalid port {text!r}")
    return int(text)


def load_options(argv: Sequence[str], env: Mapping[str, str]) -> SidecarOptions:
    """Parse and validate; raises `ConfigError` (one line) or `HelpRequested`."""
    parsed = parse_flags(_go_flag_style(argv), FLAGS, prog="pyllmd pd-sidecar")
    given = parsed.values
    v = parsed.effective(FLAGS)
    if parsed.args:
        raise ConfigError(f"unexpected argument {parsed.args[0]!r}")
    if (error := zap_error(given)) is not None:
        raise ConfigError(error)
    connector = str(v["connector"])
    if connector not in SUPPORTED_CONNECTORS:
        raise ConfigError("--connector must be one of: " + ", ".join(SUPPORTED_CONNECTORS))
    if v["enable-ssrf-protection"]:
        namespace = str(
            given.get("inference-pool-namespace") or env.get("INFERENCE_POOL_NAMESPACE", "")
        )
        name = str(given.get("inference-pool-name") or env.get("INFERENCE_POOL_NAME", ""))
        if not namespace:
            raise ConfigError(
                "--inference-pool-namespace or INFERENCE_POOL_NAMESPACE environment variable "
                "is required when --enable-ssrf-protection is true"
            )
        if not name:
            raise ConfigError(
                "--inference-pool-name or INFERENCE_POOL_NAME environment variable "
                "is required when --enable-ssrf-protection is true"
            )
        raise ConfigError("--enable-ssrf-protection is not implemented by pyllmd pd-sidecar")
    size = int(str(v["data-parallel-size"]))
    if size < 1:
        raise ConfigError(f"--data-parallel-size must be at least 1, got {size}")
    sampling = bool(v["enable-prefiller-sampling"])
    if "enable-prefiller-sampling" not in given:
        try:
            sampling = parse_go_bool(env.get("ENABLE_PREFILLER_SAMPLING", "false"))
        except ValueError:
            sampling = False
    port, vllm_port = _port("port", v["port"]), _port("vllm-port", v["vllm-port"])
    for name, first in (("port", port), ("vllm-port", vllm_port)):
        if first + size - 1 > 65535:  # rank i listens on --port+i, forwards to --vllm-port+i
            raise ConfigError(
                f"--data-parallel-size: {size} ranks need --{name} {first} to {first + size - 1}, "
                "beyond port 65535"
            )
    host = str(v["bind-address"])
    if host and (error := host_error(host)) is not None:
        raise ConfigError(f"--bind-address: {error}")
    bootstrap = _bootstrap_port(env) if connector == CONNECTOR_SGLANG else SGLANG_BOOTSTRAP_PORT
    return SidecarOptions(
        port=port,
        vllm_port=vllm_port,
        data_parallel_size=size,
        connector=connector,
        prefiller_use_tls=bool(v["prefiller-use-tls"]),
        decoder_use_tls=bool(v["decoder-use-tls"]),
        prefiller_insecure_skip_verify=bool(v["prefiller-tls-insecure-skip-verify"]),
        decoder_insecure_skip_verify=bool(v["decoder-tls-insecure-skip-verify"]),
        secure_proxy=bool(v["secure-proxy"]),
        cert_path=str(v["cert-path"]),
        enable_prefiller_sampling=sampling,
        bind_address=str(v["bind-address"]),
        pod_ip=env.get("POD_IP", ""),
        verbosity=zap_verbosity(str(v["zap-log-level"]), 2),
        sglang_bootstrap_port=bootstrap,
    )
