"""Architectures from config.json, derived sizes, and vLLM's start-up checks."""

from __future__ import annotations

import pytest

from pyllmd.core.errors import ConfigError
from pyllmd.sim.batch.architecture import (
    BUILTIN,
    GIB,
    Architecture,
    from_hf_config,
    get_architecture,
    kv_blocks,
)
from pyllmd.sim.batch.hardware import get_accelerator

H100 = get_accelerator("H100").memory_bytes


@pytest.mark.parametrize(
    ("model", "billions"),
    [
        ("meta-llama/Llama-2-7b-hf", 6.74),
        ("meta-llama/Llama-3.1-8B-Instruct", 8.03),
        ("meta-llama/Llama-3.1-70B-Instruct", 70.55),
        ("mistralai/Mixtral-8x7B-v0.1", 46.7),
        ("mistralai/Mixtral-8x22B-Instruct-v0.1", 140.6),
        ("Qwen/Qwen2.5-7B-Instruct", 7.62),
        ("01-ai/Yi-34B", 34.39),
        ("RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic", 107.8),
    ],
)
def test_parameter_counts_match_the_published_sizes(model: str, billions: float) -> None:
    assert get_architecture(model).total_params / 1e9 == pytest.approx(billions, rel=0.01)


def test_all_thirteen_calibration_models_are_built_in_and_found_by_short_name() -> None:
    assert len(BUILTIN) == 13
    assert get_architecture("llama-2-7b-hf") is BUILTIN["meta-llama/Llama-2-7b-hf"]


def test_unknown_model_is_one_line_pointing_at_model_config() -> None:
    with pytest.raises(
        ConfigError, match=r"^--model 'gpt-5': no built-in architecture .*--model-config$"
    ):
        get_architecture("gpt-5")


def test_gqa_head_dim_default_and_tied_embeddings_from_config_json() -> None:
    arch = from_hf_config(
        {
            "num_hidden_layers": 2,
            "hidden_size": 1024,
            "num_attention_heads": 16,
            "intermediate_size": 4096,
            "vocab_size": 1000,
            "tie_word_embeddings": True,
        }
    )
    assert arch.kv_heads == 16 and arch.head_dim == 64  # defaults: heads, hidden / heads
    assert arch.embedding_params == 1000 * 1024  # tied: one matrix
    # K and V, 16 heads of 64, 2 bytes, 2 layers; halved per GPU at TP 2
    assert arch.kv_bytes_per_token(1) == 2 * 16 * 64 * 2 * 2
    assert arch.kv_bytes_per_token(2) == arch.kv_bytes_per_token(1) / 2


def test_moe_fp8_and_shared_expert_of_llama4() -> None:
    scout = BUILTIN["RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic"]
    assert scout.experts == 16 and scout.experts_per_token == 1 and scout.shared_expert
    assert scout.fp8 and scout.weight_bytes == 1.0
    # active parameters: about 17 B (the name says so)
    active = scout.linear_flops_per_token(1) / 2 + scout.embedding_params
    assert active / 1e9 == pytest.approx(17.2, rel=0.03)
    # distinct experts touched grow towards E: E(1-(1-k/E)^n)
    assert scout.distinct_experts(1) == pytest.approx(1.0)
    assert scout.distinct_experts(1000) == pytest.approx(16.0, abs=1e-6)
    mixtral = BUILTIN["mistralai/Mixtral-8x7B-v0.1"]
    assert mixtral.distinct_experts(2) == pytest.approx(8 * (1 - (6 / 8) ** 2))


def test_kv_heads_are_replicated_when_tp_exceeds_them() -> None:
    qwen = BUILTIN["Qwen/Qwen2.5-7B-Instruct"]  # 28 heads, 4 KV heads
    qwen.check_tp(4)
    assert qwen.kv_heads_per_shard(4) == 1
    arch = Architecture("x", 2, 1024, 16, 2, 64, 4096, 1000)
    arch.check_tp(8)
    assert arch.kv_heads_per_shard(8) == 1  # replicated


def test_heads_not_divisible_by_tp_is_vllms_message() -> None:
    with pytest.raises(ConfigError) as e:
        BUILTIN["Qwen/Qwen2.5-7B-Instruct"].check_tp(3)
    assert str(e.value) == (
        "Total number of attention heads (28) must be divisible by tensor parallel size (3)."
    )


@pytest.mark.parametrize(
    ("model", "tp", "mbt", "published"),
    [
        ("meta-llama/Llama-2-7b-hf", 1, 2048, 7463),
        ("meta-llama/Llama-3.1-70B-Instruct", 4, 8192, 30251),
        ("meta-llama/Llama-3.1-70B-Instruct", 4, 2048, 30425),
        ("mistralai/Mistral-Nemo-Instruct-2407", 1, 2048, 19251),
        ("mistralai/Mistral-Nemo-Instruct-2407", 2, 1024, 48009),
        ("Qwen/Qwen2.5-7B-Instruct", 1, 2048, 65352),
        ("01-ai/Yi-34B", 2, 2048, 20793),
    ],
)
def test_kv_blocks_from_memory_are_within_one_percent_of_vllms(
    model: str, tp: int, mbt: int, published: int
) -> None:
    blocks = kv_blocks(get_architecture(model), tp, H100, 0.9, mbt, 4096)
    assert blocks == pytest.approx(published, rel=0.01)


def test_a_model_that_does_not_fit_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^model meta-llama/Llama-3.1-70B-Instruct does not fit"):
        kv_blocks(get_architecture("meta-llama/Llama-3.1-70B-Instruct"), 1, H100, 0.9, 2048, 4096)


def test_no_room_for_the_cache_is_vllms_message() -> None:
    arch = get_architecture("meta-llama/Llama-2-7b-hf")  # 12.55 GiB of weights
    with pytest.raises(ConfigError, match=r"^No available memory for the cache blocks\."):
        kv_blocks(arch, 1, 14 * GIB, 0.95, 2048, 4096)


def test_max_model_len_beyond_the_blocks_is_vllms_message() -> None:
    arch = get_architecture("meta-llama/Llama-2-7b-hf")  # 0.5 MiB of KV per token
    with pytest.raises(ConfigError) as e:
        kv_blocks(arch, 1, 16 * GIB, 0.95, 2048, 4096)
    msg = str(e.value)
    assert msg.startswith(
        "To serve at least one request with the models's max seq len (4096), (2.00 GiB KV cache "
        "is needed, which is larger than the available KV cache memory ("
    )
    assert "the estimated maximum model length is" in msg and "\n" not in msg
