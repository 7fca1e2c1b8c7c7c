"""The simulator's JSON-valued settings: `--lora-modules` and `--fake-metrics`.

Their models (nested in `SimConfig`) and their parsing from JSON strings (command
line) or YAML values, with JSON's typing rules: ints stay ints, unknown keys are
dropped, and an error names the flag or key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pyllmd.core.errors import ConfigError

__all__ = [
    "FakeLora",
    "FakeMetrics",
    "LoraModule",
    "StrictModel",
    "parse_fake_metrics",
    "parse_lora_modules",
]


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
