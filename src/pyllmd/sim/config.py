"""The simulator's configuration: one frozen model for flags, YAML and environment.

Field aliases are upstream's kebab-case flag names, so a llm-d-inference-sim
command line or YAML file works unchanged. Durations are float seconds.

The model is the single source of truth: the pflag table (`sim_flag_specs`),
the YAML key types, `--help` and docs/user-guide/admin/flags.md
(`flags_markdown`, or `python -m pyllmd.sim.config --markdown`) are all derived
from its fields plus the texts in `config_help`. `load_config` applies
defaults → YAML (`--config`) → command line → environment, then validates
(`config_rules`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pyllmd.core.errors import ConfigError, one_line
from pyllmd.core.flags import (
    FlagKind,
    FlagSpec,
    format_duration,
    klog_flags,
    parse_flags,
    prescan_values,
    usage,
)
from pyllmd.sim.config_help import FLAG_DOCS
from pyllmd.sim.config_rules import normalize, validate
from pyllmd.sim.config_yaml import YamlKind, deprecation_warning, read_yaml_config


class StrictModel(BaseModel):
    """Frozen model that rejects unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class LoraModule(StrictModel):
    """A LoRA adapter registered at start-up (`--lora-modules`)."""

    name: str
    path: str = ""
    base_model_name: str = ""


class FakeLora(StrictModel):
    """One fake `vllm:lora_requests_info` series."""

    running: str = ""
    waiting: str = ""
    timestamp: float = 0.0


class FakeMetrics(StrictModel):
    """Values reported instead of real ones (`--fake-metrics`)."""

    running_requests: int = Field(0, alias="running-requests")
    waiting_requests: int = Field(0, alias="waiting-requests")
    kv_cache_usage: float = Field(0.0, alias="kv-cache-usage")
    loras: tuple[FakeLora, ...] = ()
    ttft_buckets_values: tuple[int, ...] | None = Field(None, alias="ttft-buckets-values")
    tpot_buckets_values: tuple[int, ...] | None = Field(None, alias="tpot-buckets-values")
    e2erl_buckets_values: tuple[int, ...] | None = Field(None, alias="e2erl-buckets-values")
    queue_time_buckets_values: tuple[int, ...] | None = Field(
        None, alias="queue-time-buckets-values"
    )
    inf_time_buckets_values: tuple[int, ...] | None = Field(None, alias="inf-time-buckets-values")
    prefill_time_buckets_values: tuple[int, ...] | None = Field(
        None, alias="prefill-time-buckets-values"
    )
    decode_time_buckets_values: tuple[int, ...] | None = Field(
        None, alias="decode-time-buckets-values"
    )
    request_prompt_tokens: tuple[int, ...] | None = Field(None, alias="request-prompt-tokens")
    request_generation_tokens: tuple[int, ...] | None = Field(
        None, alias="request-generation-tokens"
    )
    request_params_max_tokens: tuple[int, ...] | None = Field(
        None, alias="request-params-max-tokens"
    )
    request_max_generation_tokens: tuple[int, ...] | None = Field(
        None, alias="request-max-generation-tokens"
    )
    total_prompt_tokens: int | None = Field(None, alias="total-prompt-tokens")
    total_generation_tokens: int | None = Field(None, alias="total-generation-tokens")
    request_success_total: dict[str, int] | None = Field(None, alias="request-success-total")


class SimConfig(StrictModel):
    """Every simulator option; aliases are the upstream flag / YAML key names."""

    config: str = ""
    port: int = 8000
    # pyllmd extension: upstream always binds every IPv4 interface.
    host: str = "0.0.0.0"
    # pyllmd extension (vLLM's flag name, seconds): how long SIGTERM drains in-flight requests.
    shutdown_timeout: float = Field(20.0, alias="shutdown-timeout")
    model: str = ""
    served_model_name: tuple[str, ...] = Field((), alias="served-model-name")
    lora_modules: tuple[LoraModule, ...] = Field((), alias="lora-modules")
    max_loras: int = Field(1, alias="max-loras")
    max_cpu_loras: int = Field(0, alias="max-cpu-loras")
    max_model_len: int = Field(1024, alias="max-model-len")
    max_num_seqs: int = Field(5, alias="max-num-seqs")
    max_waiting_queue_length: int = Field(1000, alias="max-waiting-queue-length")
    mode: str = "random"
    seed: int = 0
    time_to_first_token: float = Field(0.0, alias="time-to-first-token")
    time_to_first_token_std_dev: float = Field(0.0, alias="time-to-first-token-std-dev")
    inter_token_latency: float = Field(0.0, alias="inter-token-latency")
    inter_token_latency_std_dev: float = Field(0.0, alias="inter-token-latency-std-dev")
    kv_cache_transfer_latency: float = Field(0.0, alias="kv-cache-transfer-latency")
    kv_cache_transfer_latency_std_dev: float = Field(0.0, alias="kv-cache-transfer-latency-std-dev")
    prefill_overhead: float = Field(0.0, alias="prefill-overhead")
    prefill_time_per_token: float = Field(0.0, alias="prefill-time-per-token")
    prefill_time_std_dev: float = Field(0.0, alias="prefill-time-std-dev")
    kv_cache_transfer_time_per_token: float = Field(0.0, alias="kv-cache-transfer-time-per-token")
    kv_cache_transfer_time_std_dev: float = Field(0.0, alias="kv-cache-transfer-time-std-dev")
    time_factor_under_load: float = Field(1.0, alias="time-factor-under-load")
    latency_calculator: str = Field("", alias="latency-calculator")
    max_tool_call_integer_param: int = Field(100, alias="max-tool-call-integer-param")
    min_tool_call_integer_param: int = Field(0, alias="min-tool-call-integer-param")
    max_tool_call_number_param: float = Field(100.0, alias="max-tool-call-number-param")
    min_tool_call_number_param: float = Field(0.0, alias="min-tool-call-number-param")
    max_tool_call_array_param_length: int = Field(5, alias="max-tool-call-array-param-length")
    min_tool_call_array_param_length: int = Field(1, alias="min-tool-call-array-param-length")
    tool_call_not_required_param_probability: int = Field(
        50, alias="tool-call-not-required-param-probability"
    )
    object_tool_call_not_required_field_probability: int = Field(
        50, alias="object-tool-call-not-required-field-probability"
    )
    enable_kvcache: bool = Field(False, alias="enable-kvcache")
    kv_cache_size: int = Field(1024, alias="kv-cache-size")
    block_size: int = Field(16, alias="block-size")
    global_cache_hit_threshold: float = Field(0.0, alias="global-cache-hit-threshold")
    tokenizers_cache_dir: str = Field("hf_cache", alias="tokenizers-cache-dir")
    hash_seed: str = Field("", alias="hash-seed")
    zmq_endpoint: str = Field("tcp://localhost:5557", alias="zmq-endpoint")
    zmq_max_connect_attempts: int = Field(0, alias="zmq-max-connect-attempts")
    event_batch_size: int = Field(16, alias="event-batch-size")
    fake_metrics: FakeMetrics | None = Field(None, alias="fake-metrics")
    failure_injection_rate: int = Field(0, alias="failure-injection-rate")
    failure_types: tuple[str, ...] = Field((), alias="failure-types")
    data_parallel_size: int = Field(1, alias="data-parallel-size")
    data_parallel_rank: int = Field(-1, alias="data-parallel-rank")
    dataset_path: str = Field("", alias="dataset-path")
    dataset_url: str = Field("", alias="dataset-url")
    dataset_in_memory: bool = Field(False, alias="dataset-in-memory")
    dataset_table_name: str = Field("llmd", alias="dataset-table-name")
    enable_sleep_mode: bool = Field(False, alias="enable-sleep-mode")
    enable_request_id_headers: bool = Field(False, alias="enable-request-id-headers")
    ssl_certfile: str = Field("", alias="ssl-certfile")
    ssl_keyfile: str = Field("", alias="ssl-keyfile")
    self_signed_certs: bool = Field(False, alias="self-signed-certs")
    # Not flags: from the environment (and the undocumented YAML key `ip`).
    ip: str = ""
    pod_name: str = ""
    pod_namespace: str = ""
    dev_mode: bool = False
    # klog verbosity (`-v N` / `--v N`): a logging option, not simulator behaviour.
    v: int = Field(2, alias="v")

    @property
    def display_model(self) -> str:
        """The name reported in responses and metrics for base-model requests."""
        return self.served_model_name[0] if self.served_model_name else self.model


PROG = "llm-d-inference-sim"
# Float fields that are Go durations (flag/YAML text "100ms", deprecated bare int = ms).
DURATION_FLAGS = frozenset(
    {
        "time-to-first-token",
        "time-to-first-token-std-dev",
        "inter-token-latency",
        "inter-token-latency-std-dev",
        "kv-cache-transfer-latency",
        "kv-cache-transfer-latency-std-dev",
        "prefill-overhead",
        "prefill-time-per-token",
        "prefill-time-std-dev",
        "kv-cache-transfer-time-per-token",
        "kv-cache-transfer-time-std-dev",
    }
)
_ENV_FIELDS = frozenset({"ip", "pod_name", "pod_namespace", "dev_mode"})
_KLOG = frozenset(spec.name for spec in klog_flags())
_YAML_KIND: dict[FlagKind, YamlKind] = {
    FlagKind.BOOL: "bool",
    FlagKind.INT: "int",
    FlagKind.FLOAT: "float",
    FlagKind.STRING: "string",
    FlagKind.DURATION: "duration",
}


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration and the warnings to log at start-up."""

    config: SimConfig
    warnings: tuple[str, ...]


def _flag_fields() -> dict[str, str]:
    """Flag name -> SimConfig field name, in declaration order (klog's `v` excluded)."""
    return {
        field.alias or name: name
        for name, field in SimConfig.model_fields.items()
        if name not in _ENV_FIELDS and name != "v"
    }


def _kind(alias: str, annotation: object) -> FlagKind:
    if annotation is bool:
        return FlagKind.BOOL
    if annotation is int:
        return FlagKind.INT
    if annotation is float:
        return FlagKind.DURATION if alias in DURATION_FLAGS else FlagKind.FLOAT
    if annotation is str:
        return FlagKind.STRING
    return FlagKind.STRING_LIST  # served names, LoRA JSON strings, fake-metrics JSON


def sim_flag_specs() -> tuple[FlagSpec, ...]:
    """The simulator's pflag table, derived from SimConfig plus klog's flags."""
    specs: list[FlagSpec] = []
    for alias, name in _flag_fields().items():
        field = SimConfig.model_fields[name]
        kind = _kind(alias, field.annotation)
        multi = kind is FlagKind.STRING_LIST
        default = field.default if not multi else ()
        specs.append(FlagSpec(alias, kind, default, FLAG_DOCS[alias].help, multi_arg=multi))
    v_default = SimConfig.model_fields["v"].default
    return tuple(specs) + klog_flags(default_v=int(v_default))


def _yaml_kinds() -> dict[str, YamlKind]:
    """YAML key -> value type: every flag except `config` and klog's, plus `ip`."""
    kinds: dict[str, YamlKind] = {"ip": "string"}
    for alias, name in _flag_fields().items():
        annotation = SimConfig.model_fields[name].annotation
        if alias == "config":
            continue
        if annotation == tuple[str, ...]:
            kinds[alias] = "strings"
        elif annotation == tuple[LoraModule, ...]:
            kinds[alias] = "json-strings"
        elif alias == "fake-metrics":
            kinds[alias] = "mapping"
        else:
            kinds[alias] = _YAML_KIND[_kind(alias, annotation)]
    return kinds


def sim_usage(prog: str = PROG) -> str:
    """The `--help` text."""
    return usage(sim_flag_specs(), prog)


# ---------------------------------------------------------------- JSON-valued options


def _strict(model: type[BaseModel], data: dict[str, Any], where: str) -> Any:
    """Validate JSON-like data with JSON typing rules (ints stay ints, unknown keys dropped)."""
    known = {field.alias or name for name, field in model.model_fields.items()}
    kept = {k: v for k, v in data.items() if k in known}
    try:
        return model.model_validate_json(orjson.dumps(kept), strict=True)
    except (ValidationError, TypeError) as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{where}: invalid value for '{loc}': {first['msg']}") from None
        raise ConfigError(f"{where}: {exc}") from None


def _json(item: object, where: str) -> object:
    if not isinstance(item, str):
        return item
    try:
        return json.loads(item)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: invalid JSON {item!r}: {exc}") from None


def parse_lora_modules(items: Sequence[object], where: str) -> tuple[LoraModule, ...]:
    """LoRA adapters from JSON strings (or mappings, from YAML)."""
    loras = []
    for item in items:
        data = _json(item, where)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {item!r}")
        loras.append(_strict(LoraModule, data, where))
    return tuple(loras)


def parse_fake_metrics(source: object, where: str, from_yaml: bool = False) -> FakeMetrics | None:
    """`--fake-metrics` from its JSON string, or the YAML mapping (`loras` as JSON strings)."""
    data = _json(source, where)
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object")
    data = dict(data)
    if from_yaml:  # upstream reads the initial token totals from JSON only
        data.pop("total-prompt-tokens", None)
        data.pop("total-generation-tokens", None)
    loras = data.get("loras")
    if isinstance(loras, list):
        parsed = [_json(lora, where) for lora in loras]
        keep = ("running", "waiting", "timestamp")
        data["loras"] = [
            {k: v for k, v in p.items() if k in keep} if isinstance(p, dict) else p for p in parsed
        ]
    fake: FakeMetrics = _strict(FakeMetrics, data, where)
    return fake


# ---------------------------------------------------------------- loading


def _read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError(f"failed to read configuration file: open {path}: {reason}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"failed to read configuration file: {path}: {exc}") from None


def _from_yaml(argv: Sequence[str], values: dict[str, object], warnings: list[str]) -> None:
    """Apply `--config` (pre-scanned: loaded only when exactly one value follows it)."""
    paths = prescan_values(argv, "config")
    if paths is None:
        return
    if len(paths) != 1:
        warnings.append(f"--config: {len(paths)} values given, no configuration file loaded")
        return
    try:
        found, yaml_warnings = read_yaml_config(_read_file(paths[0]), _yaml_kinds())
    except ConfigError as e:  # upstream's text, naming the flag
        raise ConfigError(f"--config: {e}") from None
    warnings.extend(yaml_warnings)
    fields = _flag_fields()
    for key, value in found.items():
        name = fields.get(key, key)  # `ip` is its own field name
        if key == "lora-modules":
            value = parse_lora_modules(value if isinstance(value, tuple) else (), key)
        elif key == "fake-metrics":
            value = parse_fake_metrics(value, key, from_yaml=True)
        # Deliberate deviation: upstream re-registers --global-cache-hit-threshold with
        # default 0, which silently discards the YAML value; we honour it.
        values[name] = value


def _from_cli(
    argv: Sequence[str], values: dict[str, object], warnings: list[str], prog: str
) -> None:
    parsed = parse_flags(argv, sim_flag_specs(), prog)
    fields = _flag_fields()
    for flag, value in parsed.values.items():
        if flag == "config" or (flag in _KLOG and flag != "v"):
            continue  # config was pre-scanned; klog options are accepted and ignored
        items = value if isinstance(value, tuple) else ()
        if flag == "lora-modules":
            value = parse_lora_modules(items, "--lora-modules")
        elif flag == "fake-metrics":
            if not items:
                raise ConfigError("flag needs an argument: --fake-metrics")
            value = parse_fake_metrics(items[0], "--fake-metrics")
        values[fields.get(flag, flag)] = value
    for flag, raw in parsed.deprecated_ms.items():
        warnings.append(deprecation_warning(flag, raw))


def load_config(
    argv: Sequence[str], env: Mapping[str, str], now_ns: int, prog: str = PROG
) -> LoadedConfig:
    """Defaults → YAML → command line → environment, validated.

    `argv` excludes the program name; `prog` is the name `--help` shows. Raises
    ConfigError (one line naming the flag and the rule) or HelpRequested (print
    its usage, exit 0).
    """
    try:
        return _load(argv, env, now_ns, prog)
    except ConfigError as e:  # values quoted in the text must not break the line
        raise ConfigError(one_line(str(e))) from None


def _load(argv: Sequence[str], env: Mapping[str, str], now_ns: int, prog: str) -> LoadedConfig:
    warnings: list[str] = []
    values: dict[str, object] = {"seed": now_ns, "ip": env.get("POD_IP", "")}
    _from_yaml(argv, values, warnings)
    _from_cli(argv, values, warnings, prog)
    if not values.get("hash_seed"):
        values["hash_seed"] = env.get("PYTHONHASHSEED", "")
    values["pod_name"] = env.get("POD_NAME", "")
    values["pod_namespace"] = env.get("POD_NAMESPACE", "")
    values["dev_mode"] = env.get("VLLM_SERVER_DEV_MODE") == "1"
    try:
        cfg = SimConfig.model_validate(values)
    except ValidationError as exc:  # values are typed above; this guards programming errors
        raise ConfigError(str(exc).splitlines()[0]) from None
    validate(cfg)
    return LoadedConfig(normalize(cfg), tuple(warnings))


def config_to_json(cfg: SimConfig) -> str:
    """The effective configuration as one JSON line (durations as Go strings)."""
    data = cfg.model_dump(mode="json", by_alias=True)
    for alias in DURATION_FLAGS:
        data[alias] = format_duration(float(data[alias]))
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def flags_markdown() -> str:
    """docs/user-guide/admin/flags.md, generated from the flag table."""
    from pyllmd.sim.config_docs import render_flags_markdown  # it imports this module

    return render_flags_markdown()


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        sys.stdout.write(flags_markdown())
    else:
        sys.stdout.write(sim_usage())
