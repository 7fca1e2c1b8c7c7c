"""The simulator's settings: one frozen model for flags, YAML and environment.

This model is where every simulator setting is declared, once: each field gives
its type and default, and (`setting`, core/settings) its flag, YAML key,
environment variable, help text, rule and docs type. Field aliases are upstream's
kebab-case flag names, so a llm-d-inference-sim command line or YAML file works
unchanged. Durations are float seconds.

Derived from the model: the pflag table (`sim_flag_specs`), `--help`
(`sim_usage`), the YAML key types, and docs/user-guide/admin/flags.md
(`flags_markdown`, or `python -m pyllmd.sim.config --markdown`). `load_config`
(load.py) applies defaults → YAML (`--config`) → command line →
environment, then validates (`rules.py`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pyllmd.core.flags import FlagKind, FlagSpec, format_duration
from pyllmd.core.logging import KLOG_V_HELP, klog_flags, verbosity
from pyllmd.core.settings import flag_specs, setting, settings_of, usage_text
from pyllmd.sim.config.values import FakeLora, FakeMetrics, LoraModule, StrictModel

__all__ = [
    "DURATION_FLAGS",
    "PROG",
    "FakeLora",
    "FakeMetrics",
    "LoadedConfig",
    "LoraModule",
    "SimConfig",
    "config_to_json",
    "flags_markdown",
    "load_config",
    "sim_flag_specs",
    "sim_usage",
]

PROG = "llm-d-inference-sim"
D = FlagKind.DURATION


def _flag(name: str, default: object, help: str, *, yaml: bool = True, **more: Any) -> Any:
    """A simulator flag: upstream's name is also its YAML key and the field's alias."""
    return setting(default, help, flag=name, key=name if yaml else "", alias=name, **more)


def _list(name: str, help: str, **more: Any) -> Any:
    """A list flag: every argument up to the next `--…` (upstream's pre-scan)."""
    kind = FlagKind.STRING_LIST
    default = None if name == "fake-metrics" else ()
    return _flag(name, default, help, kind=kind, multi_arg=True, **more)


class SimConfig(StrictModel):
    """Every simulator setting; aliases are the upstream flag / YAML key names."""

    # klog's Go flags other than -v: accepted for compatibility, no effect.
    ACCEPTED_FLAGS: ClassVar[tuple[FlagSpec, ...]] = klog_flags(with_v=False)

    config: str = _flag(
        "config",
        "",
        "YAML file whose keys are flag names; command-line flags override it",
        yaml=False,
        rule="loaded only when exactly one value follows `--config`",
        type_text="path",
    )
    port: int = _flag(
        "port",
        8000,
        "HTTP (and gRPC) port; rank i of data parallel uses port+i",
        rule="1..65535 (upstream: > 0); port + data-parallel-size − 1 <= 65535",
    )
    host: str = _flag(
        "host",
        "0.0.0.0",
        "Listen address (pyllmd extension; upstream always binds 0.0.0.0)",
        rule="an IPv4 address",
    )
    shutdown_timeout: float = _flag(
        "shutdown-timeout",
        20.0,
        "Seconds SIGTERM waits for in-flight requests before ending them with an error "
        "(pyllmd extension, vLLM's flag)",
        rule=">= 0, finite",
        type_text="float (seconds)",
    )
    model: str = _flag("model", "", "Base model name served (required)", rule="must not be empty")
    served_model_name: tuple[str, ...] = _list(
        "served-model-name",
        "Model names exposed by the API, space-separated; the first is reported in responses",
        rule="empty means `[<model>]`",
        type_text="list of strings",
    )
    lora_modules: tuple[LoraModule, ...] = _list(
        "lora-modules",
        'LoRA adapters loaded at start, each a JSON string {"name":..,"path":..,'
        '"base_model_name":..}, space-separated',
        rule="name not empty; base_model_name empty or equal to `--model`",
        type_text="list of JSON strings",
    )
    max_loras: int = _flag(
        "max-loras", 1, "LoRA adapters that may run at the same time", rule=">= 1"
    )
    max_cpu_loras: int = _flag(
        "max-cpu-loras",
        0,
        "LoRA adapters kept in CPU memory (0 means max-loras)",
        rule=">= max-loras (after 0 → max-loras)",
    )
    max_model_len: int = _flag(
        "max-model-len", 1024, "Context window: prompt plus completion tokens", rule=">= 1"
    )
    max_num_seqs: int = _flag("max-num-seqs", 5, "Requests processed at the same time", rule=">= 1")
    max_waiting_queue_length: int = _flag(
        "max-waiting-queue-length",
        1000,
        "Requests that may wait for a free slot (with --latency-calculator batch: unbounded "
        "unless given, as in vLLM)",
        rule=">= 1",
    )
    mode: str = _flag(
        "mode",
        "random",
        "Response text: `echo` repeats the prompt, `random` invents text",
        rule="`random` or `echo`",
    )
    seed: int = _flag(
        "seed",
        0,
        "Seed of the random generator (default: start time in ns)",
        type_text="int64",
        doc_default="start time in ns",
    )
    time_to_first_token: float = _flag(
        "time-to-first-token", 0.0, "Time before the first token", kind=D, rule=">= 0"
    )
    time_to_first_token_std_dev: float = _flag(
        "time-to-first-token-std-dev",
        0.0,
        "Standard deviation of time-to-first-token",
        kind=D,
        rule=">= 0 and <= 30% of time-to-first-token",
    )
    inter_token_latency: float = _flag(
        "inter-token-latency", 0.0, "Time between two generated tokens", kind=D, rule=">= 0"
    )
    inter_token_latency_std_dev: float = _flag(
        "inter-token-latency-std-dev",
        0.0,
        "Standard deviation of inter-token-latency",
        kind=D,
        rule=">= 0 and <= 30% of inter-token-latency",
    )
    kv_cache_transfer_latency: float = _flag(
        "kv-cache-transfer-latency",
        0.0,
        "Time to fetch the KV cache from a prefill pod (P/D, constant calculator)",
        kind=D,
        rule=">= 0",
    )
    kv_cache_transfer_latency_std_dev: float = _flag(
        "kv-cache-transfer-latency-std-dev",
        0.0,
        "Standard deviation of kv-cache-transfer-latency",
        kind=D,
        rule=">= 0 and <= 30% of kv-cache-transfer-latency",
    )
    prefill_overhead: float = _flag(
        "prefill-overhead",
        0.0,
        "Fixed prefill time; used when time-to-first-token is 0 or by `per-token`",
        kind=D,
        rule=">= 0",
    )
    prefill_time_per_token: float = _flag(
        "prefill-time-per-token", 0.0, "Prefill time per uncached prompt token", kind=D, rule=">= 0"
    )
    prefill_time_std_dev: float = _flag(
        "prefill-time-std-dev",
        0.0,
        "Standard deviation of the prefill time",
        kind=D,
        rule=">= 0 and <= 30% of prefill-time-per-token",
    )
    kv_cache_transfer_time_per_token: float = _flag(
        "kv-cache-transfer-time-per-token",
        0.0,
        "KV-cache transfer time per prompt token (P/D, per-token calculator)",
        kind=D,
        rule=">= 0",
    )
    kv_cache_transfer_time_std_dev: float = _flag(
        "kv-cache-transfer-time-std-dev",
        0.0,
        "Standard deviation of the KV-cache transfer time",
        kind=D,
        rule=">= 0 and <= 30% of kv-cache-transfer-time-per-token",
    )
    time_factor_under_load: float = _flag(
        "time-factor-under-load",
        1.0,
        "Latency multiplier reached when max-num-seqs requests run at once",
        rule=">= 1.0 and finite (upstream accepts NaN and Inf)",
    )
    latency_calculator: str = _flag(
        "latency-calculator",
        "",
        "Latency model: empty (load-aware default), `constant`, `per-token`, or `batch` (the "
        "step-level engine model of `pyllmd simulate`: vLLM's scheduler, GPU step times)",
        rule='one of `""`, `constant`, `per-token`, `batch`, or an installed `pyllmd.sim.latency` '
        "plugin's name ([plugins](plugins.md))",
    )
    # The batch latency model's settings (vLLM's names): `pyllmd simulate`, and the live
    # server with `--latency-calculator batch`.
    accelerator: str = _flag(
        "accelerator",
        "H100",
        "GPU of the batch latency model: a built-in name (H100, A100-80GB, L40S) or one of "
        "--accelerator-config",
        rule="a known accelerator (checked when the batch model is built)",
    )
    accelerator_config: str = _flag(
        "accelerator-config",
        "",
        "CSV file of further accelerators, with the columns of the built-in table and an "
        "optional network_GBps (batch latency model)",
        type_text="path",
    )
    tensor_parallel_size: int = _flag(
        "tensor-parallel-size",
        1,
        "GPUs one replica is sharded over (batch latency model)",
        rule=">= 1; attention heads divisible by it",
    )
    max_num_batched_tokens: int = _flag(
        "max-num-batched-tokens",
        2048,
        "Token budget of one engine step (chunked prefill; batch latency model)",
        rule=">= 1 and >= max-num-seqs (checked when the batch model is built)",
    )
    gpu_memory_utilization: float = _flag(
        "gpu-memory-utilization",
        0.9,
        "Fraction of GPU memory for weights, activations and KV blocks; sizes the KV cache when "
        "--kv-cache-size is not given (batch latency model)",
        rule="in (0, 1]",
    )
    kv_cache_dtype: str = _flag(
        "kv-cache-dtype",
        "auto",
        "KV cache data type: `auto` (the model's, 2 bytes) or an fp8 type (1 byte) "
        "(batch latency model)",
        rule="one of auto, bfloat16, float16, fp8, fp8_e4m3, fp8_e5m2",
    )
    enable_prefix_caching: bool = _flag(
        "enable-prefix-caching",
        True,
        "Reuse cached KV blocks of a shared prompt prefix (batch latency model)",
    )
    enable_chunked_prefill: bool = _flag(
        "enable-chunked-prefill",
        True,
        "Split long prefills over steps to fit the token budget (batch latency model)",
    )
    model_config_file: str = _flag(
        "model-config",
        "",
        "Hugging Face config.json of --model when it is not built in (batch latency model)",
        type_text="path",
    )
    latency_profile: str = _flag(
        "latency-profile",
        "",
        "Coefficients of the batch step-time model, YAML or JSON (default: the calibrated profile "
        "shipped in the package; batch latency model)",
        type_text="path",
    )
    kv_offloading_size: float = _flag(
        "kv-offloading-size",
        0.0,
        "GiB of CPU memory (all tensor-parallel ranks together) keeping the KV blocks evicted "
        "from the GPU's prefix cache, least recently used out; a prefix hit there is loaded "
        "over the host link before the prefill (batch model; 0: no CPU tier)",
        rule=">= 0, finite",
        type_text="float (GiB)",
    )
    max_tool_call_integer_param: int = _flag(
        "max-tool-call-integer-param",
        100,
        "Largest integer generated for a tool-call argument",
        rule=">= min-tool-call-integer-param",
    )
    min_tool_call_integer_param: int = _flag(
        "min-tool-call-integer-param", 0, "Smallest integer generated for a tool-call argument"
    )
    max_tool_call_number_param: float = _flag(
        "max-tool-call-number-param",
        100.0,
        "Largest number generated for a tool-call argument",
        rule=">= min-tool-call-number-param; finite",
    )
    min_tool_call_number_param: float = _flag(
        "min-tool-call-number-param",
        0.0,
        "Smallest number generated for a tool-call argument",
        rule="finite",
    )
    max_tool_call_array_param_length: int = _flag(
        "max-tool-call-array-param-length",
        5,
        "Longest array generated for a tool-call argument",
        rule=">= min-tool-call-array-param-length",
    )
    min_tool_call_array_param_length: int = _flag(
        "min-tool-call-array-param-length",
        1,
        "Shortest array generated for a tool-call argument",
        rule=">= 0",
    )
    tool_call_not_required_param_probability: int = _flag(
        "tool-call-not-required-param-probability",
        50,
        "Percent chance that an optional tool parameter is generated",
        rule="0..100",
    )
    object_tool_call_not_required_field_probability: int = _flag(
        "object-tool-call-not-required-field-probability",
        50,
        "Percent chance that an optional object field is generated",
        rule="0..100",
    )
    enable_kvcache: bool = _flag(
        "enable-kvcache",
        False,
        "Simulate the KV block cache and publish KV events over ZMQ",
        rule="needs env `POD_IP` (or YAML `ip`)",
    )
    kv_cache_size: int = _flag(
        "kv-cache-size",
        1024,
        "KV cache capacity in blocks (with --latency-calculator batch, when not given: from GPU "
        "memory, as vLLM computes it)",
        rule=">= 0",
    )
    block_size: int = _flag(
        "block-size", 16, "Tokens per KV block", rule="one of 8, 16, 32, 64, 128"
    )
    global_cache_hit_threshold: float = _flag(
        "global-cache-hit-threshold",
        0.0,
        "Default cache-hit threshold of requests that give none",
        rule="0..1; a YAML value is honoured (upstream ignores it)",
    )
    tokenizers_cache_dir: str = _flag(
        "tokenizers-cache-dir",
        "hf_cache",
        "Directory searched for a local tokenizer.json of --model (never downloaded)",
    )
    hash_seed: str = _flag(
        "hash-seed",
        "",
        "Seed of KV block hashes (default: env PYTHONHASHSEED)",
        env="PYTHONHASHSEED",
    )
    zmq_endpoint: str = _flag(
        "zmq-endpoint",
        "tcp://localhost:5557",
        "ZMQ address the KV-event publisher connects to; empty disables it",
        rule="a `tcp://` address ends in a port 1..65535 (checked at start; upstream does not)",
    )
    zmq_max_connect_attempts: int = _flag(
        "zmq-max-connect-attempts", 0, "ZMQ connect attempts before giving up", rule="0..10"
    )
    event_batch_size: int = _flag(
        "event-batch-size", 16, "KV events sent per ZMQ message at most", rule=">= 1"
    )
    fake_metrics: FakeMetrics | None = _list(
        "fake-metrics",
        "Metric values reported instead of real ones (JSON; see metrics.md)",
        rule="counts >= 0, kv-cache-usage 0..1, finish reasons valid",
        type_text="JSON string (YAML: mapping)",
    )
    failure_injection_rate: int = _flag(
        "failure-injection-rate",
        0,
        "Percent of completion requests answered with an error",
        rule="0..100",
    )
    failure_types: tuple[str, ...] = _list(
        "failure-types",
        "Error types to inject, space-separated (default: all)",
        rule="each of rate_limit, invalid_api_key, context_length, server_error, "
        "invalid_request, model_not_found",
        type_text="list of strings",
    )
    data_parallel_size: int = _flag(
        "data-parallel-size", 1, "Ranks to run, on consecutive ports", rule="1..8"
    )
    data_parallel_rank: int = _flag(
        "data-parallel-rank",
        -1,
        "Rank of this process when ranks run as separate processes",
        rule="<= 7",
    )
    dataset_path: str = _flag(
        "dataset-path",
        "",
        "SQLite file of responses (random mode)",
        rule="required when dataset-url is set; not with echo",
    )
    dataset_url: str = _flag(
        "dataset-url",
        "",
        "Where to download dataset-path from when it is missing",
        rule="not with echo",
    )
    dataset_in_memory: bool = _flag(
        "dataset-in-memory", False, "Load the whole dataset into memory"
    )
    dataset_table_name: str = _flag(
        "dataset-table-name", "llmd", "Table name inside the dataset file"
    )
    enable_sleep_mode: bool = _flag(
        "enable-sleep-mode", False, "Allow /sleep (needs env VLLM_SERVER_DEV_MODE=1)"
    )
    enable_request_id_headers: bool = _flag(
        "enable-request-id-headers", False, "Echo X-Request-Id and use it in response ids"
    )
    ssl_certfile: str = _flag(
        "ssl-certfile",
        "",
        "TLS certificate file",
        rule="together with ssl-keyfile",
        type_text="path",
    )
    ssl_keyfile: str = _flag(
        "ssl-keyfile",
        "",
        "TLS private key file",
        rule="together with ssl-certfile",
        type_text="path",
    )
    self_signed_certs: bool = _flag(
        "self-signed-certs",
        False,
        "Serve HTTPS with a generated self-signed certificate",
        rule="not with ssl-certfile/ssl-keyfile",
    )
    # Not flags: from the environment (and the undocumented YAML key `ip`).
    ip: str = setting("", "IP in the KV-event topic", env="POD_IP", key="ip")
    pod_name: str = setting("", "reported in x-inference-pod", env="POD_NAME")
    pod_namespace: str = setting("", "reported in x-inference-namespace", env="POD_NAMESPACE")
    dev_mode: bool = setting(False, "`1` enables dev mode", env="VLLM_SERVER_DEV_MODE")
    # klog verbosity (`-v N` / `--v N`): a logging option, not simulator behaviour.
    v: int = verbosity(KLOG_V_HELP, group="klog", alias="v")

    @property
    def display_model(self) -> str:
        """The name reported in responses and metrics for base-model requests."""
        return self.served_model_name[0] if self.served_model_name else self.model


# Float fields that are Go durations (flag/YAML text "100ms", deprecated bare int = ms).
DURATION_FLAGS = frozenset(r.flag for r in settings_of(SimConfig) if r.kind is D)


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration and the warnings to log at start-up."""

    config: SimConfig
    warnings: tuple[str, ...]


def sim_flag_specs() -> tuple[FlagSpec, ...]:
    """The simulator's pflag table: the model's flags, then klog's other flags."""
    return flag_specs(SimConfig)


def sim_usage(prog: str = PROG) -> str:
    """The `--help` text."""
    return usage_text(SimConfig, prog)


def load_config(
    argv: Sequence[str], env: Mapping[str, str], now_ns: int, prog: str = PROG
) -> LoadedConfig:
    """Defaults → YAML → command line → environment, validated.

    `argv` excludes the program name; `prog` is the name `--help` shows. Raises
    ConfigError (one line naming the flag and the rule) or HelpRequested (print
    its usage, exit 0).
    """
    from pyllmd.sim.config.load import load  # it imports this module

    return load(argv, env, now_ns, prog)


def config_to_json(cfg: SimConfig) -> str:
    """The effective configuration as one JSON line (durations as Go strings)."""
    data = cfg.model_dump(mode="json", by_alias=True)
    for alias in DURATION_FLAGS:
        data[alias] = format_duration(float(data[alias]))
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def flags_markdown() -> str:
    """docs/user-guide/admin/flags.md, generated from the model."""
    from pyllmd.sim.config.docs import render_flags_markdown  # it imports this module

    return render_flags_markdown()
