"""The batch model of one simulator pod from its settings (pure): scheduler settings, the
step-time model and the P/D KV transfer time.

`pyllmd sim --latency-calculator batch` builds its rank's engine with `build_engine_spec`,
and `pyllmd simulate` builds each variant's pods with it (from a stack file's args), so a
flag means the same in both. `--kv-cache-size` and `--max-waiting-queue-length` count only
when given explicitly: otherwise the block count comes from GPU memory, as vLLM computes it,
and the waiting queue is unbounded, as in vLLM.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pyllmd.core.errors import ConfigError
from pyllmd.sim.batch.architecture import (
    Architecture,
    check_max_model_len,
    from_hf_config,
    get_architecture,
    kv_blocks,
)
from pyllmd.sim.batch.hardware import (
    PD_TRANSFER_LATENCY_S,
    Accelerator,
    get_accelerator,
    load_accelerators,
)
from pyllmd.sim.batch.scheduler import SchedulerConfig
from pyllmd.sim.batch.steptime import Profile, StepModel, default_profile
from pyllmd.sim.config import SimConfig
from pyllmd.sim.config.profile import load_profile

__all__ = ["EngineSpec", "KVTransfer", "architecture", "build_engine_spec"]


@dataclass(frozen=True)
class KVTransfer:
    """P/D: the time a decode pod waits for a prompt's KV from the prefill pod when no
    `--kv-cache-transfer-*` flag sets it: a fixed latency plus the KV bytes of one GPU's
    shard over that GPU's network link (the shards of a TP group go in parallel)."""

    bytes_per_token: float  # KV bytes of one token on one GPU (its TP shard)
    network_bytes_per_s: float  # one GPU's network bandwidth, one direction
    latency_s: float = PD_TRANSFER_LATENCY_S

    def seconds(self, prompt_tokens: int) -> float:
        return self.latency_s + prompt_tokens * self.bytes_per_token / self.network_bytes_per_s


@dataclass(frozen=True)
class EngineSpec:
    """What one pod runs: scheduler settings, the step-time model and the KV transfer."""

    scheduler: SchedulerConfig
    step: StepModel
    profile: Profile
    transfer: KVTransfer | None = None


def architecture(cfg: SimConfig) -> Architecture:
    """The model's architecture: `--model-config` (a Hugging Face config.json), else built in."""
    if not cfg.model_config_file:
        return get_architecture(cfg.model)
    try:
        data = json.loads(Path(cfg.model_config_file).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"--model-config {cfg.model_config_file}: {e.strerror or e}") from None
    except ValueError as e:
        raise ConfigError(f"--model-config {cfg.model_config_file}: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--model-config {cfg.model_config_file}: must be a JSON object")
    return from_hf_config(data, cfg.model_config_file)


def build_engine_spec(
    cfg: SimConfig,
    kv_cache_size_given: bool,
    max_waiting_given: bool,
    profile: Profile | None = None,
) -> EngineSpec:
    """The batch model of a pod with settings `cfg` (with `profile` instead of its
    `--latency-profile` when given); ConfigError (one line) when it cannot run."""
    arch = architecture(cfg)
    extra = load_accelerators(cfg.accelerator_config) if cfg.accelerator_config else None
    acc = get_accelerator(cfg.accelerator, extra)
    tp = cfg.tensor_parallel_size
    arch.check_tp(tp)
    kv_bytes = 1.0 if cfg.kv_cache_dtype.startswith("fp8") else 2.0
    if cfg.max_num_batched_tokens < cfg.max_num_seqs:
        raise ConfigError(
            f"--max-num-batched-tokens ({cfg.max_num_batched_tokens}) must be greater than or "
            f"equal to --max-num-seqs ({cfg.max_num_seqs})"
        )
    if not cfg.enable_chunked_prefill and cfg.max_num_batched_tokens < cfg.max_model_len:
        raise ConfigError(
            f"--max-num-batched-tokens ({cfg.max_num_batched_tokens}) is smaller than "
            f"--max-model-len ({cfg.max_model_len}) without chunked prefill"
        )
    if kv_cache_size_given:
        blocks = cfg.kv_cache_size
        check_max_model_len(arch, tp, blocks, cfg.max_model_len, kv_bytes, cfg.block_size)
    else:
        blocks = kv_blocks(
            arch,
            tp,
            acc.memory_bytes,
            cfg.gpu_memory_utilization,
            cfg.max_num_batched_tokens,
            cfg.max_model_len,
            kv_bytes,
            cfg.block_size,
        )
    if profile is None:
        profile = load_profile(cfg.latency_profile) if cfg.latency_profile else default_profile()
    scheduler = SchedulerConfig(
        num_blocks=blocks,
        max_num_seqs=cfg.max_num_seqs,
        max_num_batched_tokens=cfg.max_num_batched_tokens,
        max_model_len=cfg.max_model_len,
        block_size=cfg.block_size,
        enable_prefix_caching=cfg.enable_prefix_caching,
        enable_chunked_prefill=cfg.enable_chunked_prefill,
        max_waiting=cfg.max_waiting_queue_length if max_waiting_given else None,
        max_loras=cfg.max_loras,
    )
    scheduler = replace(scheduler, **_cpu_tier(cfg, arch, acc, kv_bytes))
    step = StepModel(arch, acc, tp, profile, cfg.max_num_seqs, kv_bytes)
    transfer = KVTransfer(arch.kv_bytes_per_token(tp, kv_bytes), acc.network_gbps * 1e9)
    return EngineSpec(scheduler, step, profile, transfer)


def _cpu_tier(
    cfg: SimConfig, arch: Architecture, acc: Accelerator, kv_bytes: float
) -> dict[str, Any]:
    """The CPU KV tier of `--kv-offloading-size`: its size in blocks of one tensor-parallel
    rank (vLLM divides the GiB among the ranks) and the time to load one block back."""
    if cfg.kv_offloading_size <= 0:
        return {}
    tp = cfg.tensor_parallel_size
    per_block = arch.kv_bytes_per_token(tp, kv_bytes) * cfg.block_size
    blocks = int(cfg.kv_offloading_size * 2**30 / tp // per_block)
    return {"cpu_blocks": blocks, "cpu_block_load_s": per_block / (acc.host_gbps * 1e9)}
