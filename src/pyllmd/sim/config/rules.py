"""Validation of a loaded simulator configuration, in upstream's order and words.

The first failing rule wins. Each error is one line: upstream's text, prefixed
with `--<flag>: ` unless the text already names the flag. The rules run on a
provisional `SimConfig`; `normalize` then applies upstream's fill-ins
(served names, max-cpu-loras, finish reasons of fake counters).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pyllmd.core.errors import ConfigError
from pyllmd.core.flags import seconds_to_ns
from pyllmd.sim.engine import latency
from pyllmd.sim.engine.vocab import FAILURE_TYPES, FINISH_REASONS

if TYPE_CHECKING:
    from pyllmd.sim.config.model import FakeMetrics, SimConfig

BLOCK_SIZES = (8, 16, 32, 64, 128)
LATENCY_CALCULATORS = ("", "constant", "per-token", "batch")
KV_CACHE_DTYPES = ("auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2")
TTFT_BUCKETS = 22  # finite bucket bounds of vllm:time_to_first_token_seconds
TPOT_BUCKETS = 19  # finite bucket bounds of vllm:time_per_output_token_seconds
MAX_PORT = 65535

# (value flag, std-dev flag, value words, std-dev words, 30% text), in check order.
_LATENCIES = (
    ("inter-token-latency", "inter-token-latency-std-dev", "inter token latency",
     "inter token latency standard deviation",
     "inter token latency standard deviation cannot be more than 30% of inter token latency"),
    ("time-to-first-token", "time-to-first-token-std-dev", "time to first token",
     "time to first token standard deviation",
     "time to first token standard deviation cannot be more than 30% of time to first token"),
    ("prefill-time-per-token", "prefill-time-std-dev", "prefill time per token",
     "prefill time standard deviation",
     "prefill time standard deviation cannot be more than 30% of prefill time per token"),
    ("kv-cache-transfer-time-per-token", "kv-cache-transfer-time-std-dev",
     "kv-cache tranfer time per token", "kv-cache tranfer time standard deviation",
     "kv-cache tranfer time standard deviation cannot be more than 30% of kv-cache tranfer time"),
    ("kv-cache-transfer-latency", "kv-cache-transfer-latency-std-dev", "kv-cache tranfer time",
     "kv-cache tranfer time standard deviation",
     "kv-cache tranfer standard deviation cannot be more than 30% of kv-cache tranfer"),
)  # fmt: skip


def _fail(text: str, flag: str | None = None) -> ConfigError:
    return ConfigError(f"--{flag}: {text}" if flag else text)


def _f32(x: float) -> float:
    """Round to single precision, as upstream's float32 comparison does."""
    return float(struct.unpack("f", struct.pack("f", x))[0])


def std_dev_too_large(std_dev: float, value: float) -> bool:
    """Upstream's `float32(std) > 0.3*float32(value)` on nanosecond values."""
    std_ns, value_ns = _f32(seconds_to_ns(std_dev)), _f32(seconds_to_ns(value))
    return std_ns > _f32(_f32(0.3) * value_ns)


def _get(cfg: SimConfig, flag: str) -> float:
    value = getattr(cfg, flag.replace("-", "_"))
    assert isinstance(value, int | float)
    return float(value)


def _check_basics(cfg: SimConfig) -> None:
    if not cfg.model:
        raise _fail("model parameter is empty", "model")
    if cfg.mode not in ("random", "echo"):
        raise _fail(f"invalid mode '{cfg.mode}', valid values are 'random' and 'echo'", "mode")
    if not 0 < cfg.port <= MAX_PORT:  # upstream checks > 0 only; the listener refused more
        raise _fail(f"invalid port '{cfg.port}'", "port")
    _finite(cfg.shutdown_timeout, "shutdown-timeout")
    if cfg.shutdown_timeout < 0:
        raise _fail("shutdown timeout cannot be negative", "shutdown-timeout")


def _finite(value: float, flag: str) -> None:
    """NaN and ±Inf parse as Go floats but make no sense as a factor or a bound."""
    if not math.isfinite(value):
        raise _fail(f"must be a finite number, got {value}", flag)


def zmq_endpoint_error(endpoint: str) -> str | None:
    """What is wrong with a `tcp://` endpoint's port (libzmq would take 0 or 99999 and
    never connect); other transports and forms are left to libzmq at start-up."""
    scheme, sep, address = endpoint.partition("://")
    if not sep or scheme != "tcp":
        return None
    _, colon, port = address.rpartition(":")
    if not colon:
        return f"no port in '{endpoint}'"
    if not (port.isascii() and port.isdigit() and 0 < int(port) <= MAX_PORT):
        return f"invalid port '{port}' in '{endpoint}'"
    return None


def _check_latencies(cfg: SimConfig) -> None:
    for flag, std_flag, words, std_words, too_large in _LATENCIES:
        if flag == "prefill-time-per-token" and cfg.prefill_overhead < 0:
            raise _fail("prefill overhead cannot be negative", "prefill-overhead")
        value, std_dev = _get(cfg, flag), _get(cfg, std_flag)
        if value < 0:
            raise _fail(f"{words} cannot be negative", flag)
        if std_dev < 0:
            raise _fail(f"{std_words} cannot be negative", std_flag)
        if std_dev_too_large(std_dev, value):
            raise _fail(too_large, std_flag)
    _finite(cfg.time_factor_under_load, "time-factor-under-load")
    if cfg.time_factor_under_load < 1.0:
        raise _fail("time factor under load cannot be less than 1.0", "time-factor-under-load")


def _check_sizes(cfg: SimConfig) -> None:
    if cfg.max_loras < 1:
        raise _fail("max LoRAs cannot be less than 1", "max-loras")
    cpu_loras = cfg.max_cpu_loras or cfg.max_loras
    if cpu_loras < cfg.max_loras:
        raise _fail("max CPU LoRAs cannot be less than max LoRAs", "max-cpu-loras")
    if cfg.max_model_len < 1:
        raise _fail("max model len cannot be less than 1", "max-model-len")
    if cfg.max_num_seqs < 1:
        raise _fail("max num seqs cannot be less than 1", "max-num-seqs")
    if cfg.max_waiting_queue_length < 1:
        raise _fail("max waiting queue size cannot be less than 1", "max-waiting-queue-length")
    for lora in cfg.lora_modules:
        if not lora.name:
            raise _fail("empty LoRA name", "lora-modules")
        if lora.base_model_name and lora.base_model_name != cfg.model:
            raise _fail(
                f"unknown base model '{lora.base_model_name}' for LoRA '{lora.name}'",
                "lora-modules",
            )


def _check_tools(cfg: SimConfig) -> None:
    pairs = (
        ("Integer", "integer-param", cfg.max_tool_call_integer_param,
         cfg.min_tool_call_integer_param),
        ("Number", "number-param", cfg.max_tool_call_number_param,
         cfg.min_tool_call_number_param),
        ("ArrayParamLength", "array-param-length", cfg.max_tool_call_array_param_length,
         cfg.min_tool_call_array_param_length),
    )  # fmt: skip
    _finite(cfg.max_tool_call_number_param, "max-tool-call-number-param")
    _finite(cfg.min_tool_call_number_param, "min-tool-call-number-param")
    for go_name, flag, high, low in pairs:
        param = go_name if go_name == "ArrayParamLength" else go_name + "Param"
        if high < low:
            raise _fail(  # the min flag is named too: either may be the wrong one
                f"MaxToolCall{param} cannot be less than MinToolCall{param} "
                f"(--min-tool-call-{flag})",
                f"max-tool-call-{flag}",
            )
    if cfg.min_tool_call_array_param_length < 0:
        raise _fail(
            "MinToolCallArrayParamLength cannot be negative", "min-tool-call-array-param-length"
        )
    if not 0 <= cfg.tool_call_not_required_param_probability <= 100:
        raise _fail(
            "ToolCallNotRequiredParamProbability should be between 0 and 100",
            "tool-call-not-required-param-probability",
        )
    if not 0 <= cfg.object_tool_call_not_required_field_probability <= 100:
        raise _fail(
            "ObjectToolCallNotRequiredParamProbability should be between 0 and 100",
            "object-tool-call-not-required-field-probability",
        )


def _check_kv_and_failures(cfg: SimConfig) -> None:
    if cfg.block_size not in BLOCK_SIZES:
        raise _fail(
            "token block size should be one of the following: 8, 16, 32, 64, 128", "block-size"
        )
    if cfg.kv_cache_size < 0:
        raise _fail("KV cache size cannot be negative", "kv-cache-size")
    if cfg.event_batch_size < 1:
        raise _fail("event batch size cannot less than 1", "event-batch-size")
    if not 0 <= cfg.failure_injection_rate <= 100:
        raise _fail("failure injection rate should be between 0 and 100", "failure-injection-rate")
    for failure in cfg.failure_types:
        if failure not in FAILURE_TYPES:
            raise _fail(
                f"invalid failure type '{failure}', valid types are: {', '.join(FAILURE_TYPES)}",
                "failure-types",
            )
    if cfg.zmq_max_connect_attempts > 10:
        raise _fail("zmq retries times cannot be more than 10", "zmq-max-connect-attempts")
    if cfg.zmq_max_connect_attempts < 0:
        raise _fail("zmq retries times cannot be negative", "zmq-max-connect-attempts")
    if (zmq_error := zmq_endpoint_error(cfg.zmq_endpoint)) is not None:
        raise _fail(zmq_error, "zmq-endpoint")


def _fake_metric_errors(fake: FakeMetrics) -> Iterator[str]:
    """Every broken fake-metrics rule, in upstream's order (the caller takes the first)."""
    if fake.running_requests < 0 or fake.waiting_requests < 0:
        yield "fake metrics request counters cannot be negative"
    if not 0 <= fake.kv_cache_usage <= 1:
        yield "fake metrics KV cache usage must be between 0 and 1"
    for values, limit, long_name in (
        (fake.ttft_buckets_values, TTFT_BUCKETS, "time-to-first-token"),
        (fake.tpot_buckets_values, TPOT_BUCKETS, "time-per-output-token"),
    ):
        if values is not None and len(values) > limit + 1:
            yield f"fake {long_name} array is too long"
        if values is not None and any(v < 0 for v in values):
            yield f"{long_name} fake metrics should contain only non-negative values"
    for reason, count in (fake.request_success_total or {}).items():
        if count < 0:
            yield f"fake metrics request-success-total.{reason} cannot be negative, got {count}"
        if reason not in FINISH_REASONS:
            yield (
                f"invalid finish reason in request-success-total: {reason} "
                f"(valid reasons: [{' '.join(FINISH_REASONS)}])"
            )
    for key in (
        "request-prompt-tokens",
        "request-generation-tokens",
        "request-params-max-tokens",
        "request-max-generation-tokens",
        "e2erl-buckets-values",
        "queue-time-buckets-values",
        "inf-time-buckets-values",
        "prefill-time-buckets-values",
        "decode-time-buckets-values",
    ):
        if any(v < 0 for v in getattr(fake, key.replace("-", "_")) or ()):
            yield f"fake metrics {key} cannot contain negative values"


def _check_rest(cfg: SimConfig) -> None:
    if cfg.fake_metrics is not None:
        for text in _fake_metric_errors(cfg.fake_metrics):
            raise _fail(text, "fake-metrics")
    if not 1 <= cfg.data_parallel_size <= 8:
        raise _fail("data parallel size must be between 1 and 8", "data-parallel-size")
    if cfg.data_parallel_rank > 7:
        raise _fail("data parallel rank must be between 0 and 7", "data-parallel-rank")
    last = cfg.port + cfg.data_parallel_size - 1
    if last > MAX_PORT:
        raise _fail(
            f"invalid port '{last}' (rank {cfg.data_parallel_size - 1} listens on --port + "
            f"{cfg.data_parallel_size - 1})",
            "data-parallel-size",
        )
    if bool(cfg.ssl_certfile) != bool(cfg.ssl_keyfile):
        raise _fail("both ssl-certfile and ssl-keyfile must be provided together")
    if cfg.self_signed_certs and (cfg.ssl_certfile or cfg.ssl_keyfile):
        raise _fail("cannot use both self-signed-certs and explicit ssl-certfile/ssl-keyfile")
    if cfg.dataset_url and not cfg.dataset_path:
        raise _fail("dataset-path is required when dataset-url is set")
    if cfg.mode == "echo" and (cfg.dataset_path or cfg.dataset_url):
        raise _fail("dataset cannot be defined in echo mode", "mode")
    if cfg.latency_calculator not in LATENCY_CALCULATORS:
        # an installed plugin's name: imported now, so that a broken one fails at start-up
        if latency.plugin_calculator(cfg.latency_calculator) is None:
            raise _fail(latency.unknown_calculator(cfg.latency_calculator))
    if cfg.tensor_parallel_size < 1:
        raise _fail("must be 1 or more", "tensor-parallel-size")
    if cfg.max_num_batched_tokens < 1:
        raise _fail("must be 1 or more", "max-num-batched-tokens")
    if not 0 < cfg.gpu_memory_utilization <= 1 or math.isnan(cfg.gpu_memory_utilization):
        raise _fail("must be in (0, 1]", "gpu-memory-utilization")
    if cfg.kv_cache_dtype not in KV_CACHE_DTYPES:
        raise _fail(
            f"unknown type {cfg.kv_cache_dtype!r} (one of {', '.join(KV_CACHE_DTYPES)})",
            "kv-cache-dtype",
        )
    if not cfg.kv_offloading_size >= 0 or math.isinf(cfg.kv_offloading_size):
        raise _fail("must be a finite number of GiB >= 0", "kv-offloading-size")
    if not 0 <= cfg.global_cache_hit_threshold <= 1:
        raise _fail(
            "global cache hit threshold must be between in range [0, 1]",
            "global-cache-hit-threshold",
        )
    if cfg.enable_kvcache and not cfg.ip:
        raise _fail("IP should be defined in the environment (POD_IP)", "enable-kvcache")


def validate(cfg: SimConfig) -> None:
    """Raise ConfigError for the first rule `cfg` breaks."""
    _check_basics(cfg)
    _check_latencies(cfg)
    _check_sizes(cfg)
    _check_tools(cfg)
    _check_kv_and_failures(cfg)
    _check_rest(cfg)


def normalize(cfg: SimConfig) -> SimConfig:
    """Upstream's fill-ins after validation: served names, CPU LoRAs, finish reasons."""
    update: dict[str, object] = {}
    if not cfg.served_model_name:
        update["served_model_name"] = (cfg.model,)
    if cfg.max_cpu_loras == 0:
        update["max_cpu_loras"] = cfg.max_loras
    fake = cfg.fake_metrics
    if fake is not None and fake.request_success_total is not None:
        totals = {r: fake.request_success_total.get(r, 0) for r in FINISH_REASONS}
        update["fake_metrics"] = fake.model_copy(update={"request_success_total": totals})
    return cfg.model_copy(update=update) if update else cfg
