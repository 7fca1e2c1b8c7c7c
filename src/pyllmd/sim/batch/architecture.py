"""A model's architecture from its Hugging Face `config.json`, and what a GPU step needs of it.

Derived per tensor-parallel shard: weight bytes (split into the part every step reads and the
experts, read only when touched), FLOPs per token, KV bytes per token, attention FLOPs per
context token; and vLLM's start-up checks (heads divisible by TP, the model fits, the KV block
count from memory and its max-model-len check).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyllmd.core.errors import ConfigError

GIB = float(2**30)
BLOCK_SIZE = 16


@dataclass(frozen=True)
class Architecture:
    """The figures of a decoder-only transformer that set its cost on a GPU."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int  # dense MLP width, or each expert's (and the shared expert's) width
    vocab: int
    intermediate_dense: int = 0  # MLP width of the dense layers of an MoE model (0 = intermediate)
    experts: int = 0  # routed experts per MoE layer (0 = dense model)
    experts_per_token: int = 0
    moe_every: int = 1  # every n-th layer is MoE (1 = all)
    shared_expert: bool = False
    weight_bytes: float = 2.0  # bytes per linear-layer weight (1 for FP8 checkpoints)
    tied_embeddings: bool = False
    max_position: int = 0

    # ---- structure -------------------------------------------------------------------------
    @property
    def fp8(self) -> bool:
        return self.weight_bytes < 2.0

    @property
    def moe_layers(self) -> int:
        return self.layers // self.moe_every if self.experts else 0

    @property
    def dense_layers(self) -> int:
        return self.layers - self.moe_layers

    @property
    def attention_params(self) -> int:
        q_o = 2 * self.hidden * self.heads * self.head_dim
        k_v = 2 * self.hidden * self.kv_heads * self.head_dim
        return q_o + k_v

    @property
    def expert_params(self) -> int:
        """One expert (gate, up and down projections), or the dense MLP of a dense model."""
        return 3 * self.hidden * self.intermediate

    @property
    def dense_mlp_params(self) -> int:
        width = (
            self.intermediate_dense
            if self.experts and self.intermediate_dense
            else self.intermediate
        )
        return 3 * self.hidden * width

    @property
    def embedding_params(self) -> int:
        """Input embedding plus the LM head (one matrix when tied)."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def always_read_linear_params(self) -> int:
        """Linear weights every step reads: attention, dense MLPs, shared experts, routers."""
        per_moe = (self.expert_params if self.shared_expert else 0) + self.hidden * self.experts
        return (
            self.layers * self.attention_params
            + self.dense_layers * self.dense_mlp_params
            + self.moe_layers * per_moe
        )

    @property
    def routed_expert_params(self) -> int:
        return self.moe_layers * self.experts * self.expert_params

    @property
    def total_params(self) -> int:
        return self.always_read_linear_params + self.routed_expert_params + self.embedding_params

    @property
    def weight_bytes_total(self) -> float:
        """Checkpoint bytes: linear layers at `weight_bytes`, embeddings and LM head in 16 bits."""
        linear = self.always_read_linear_params + self.routed_expert_params
        return linear * self.weight_bytes + self.embedding_params * 2.0

    # ---- per tensor-parallel shard ---------------------------------------------------------
    def check_tp(self, tp: int) -> None:
        """vLLM's rules for the TP degree (one line, as a ConfigError)."""
        if tp < 1:
            raise ConfigError(f"--tensor-parallel-size must be >= 1, got {tp}")
        if self.heads % tp:
            raise ConfigError(
                f"Total number of attention heads ({self.heads}) must be divisible by "
                f"tensor parallel size ({tp})."
            )
        if self.kv_heads % tp and tp % self.kv_heads:
            raise ConfigError(
                f"Total number of key/value heads ({self.kv_heads}) must be divisible by "
                f"tensor parallel size ({tp}), or tensor parallel size by it."
            )

    def kv_heads_per_shard(self, tp: int) -> int:
        """KV heads on one GPU: replicated when TP exceeds the KV head count."""
        return max(1, self.kv_heads // tp)

    def kv_bytes_per_token(self, tp: int, kv_dtype_bytes: float = 2.0) -> float:
        """KV cache bytes of one token on one GPU, all layers (K and V)."""
        return 2.0 * self.kv_heads_per_shard(tp) * self.head_dim * kv_dtype_bytes * self.layers

    def weight_bytes_per_gpu(self, tp: int) -> float:
        return self.weight_bytes_total / tp

    def always_read_bytes(self, tp: int) -> float:
        """Weight bytes one GPU reads on every step (the LM head included)."""
        head = self.vocab * self.hidden * 2.0
        return (self.always_read_linear_params * self.weight_bytes + head) / tp

    def expert_bytes(self, tp: int) -> float:
        """Bytes of one routed expert of one layer on one GPU (experts are TP-sharded)."""
        return self.expert_params * self.weight_bytes / tp

    def linear_flops_per_token(self, tp: int) -> float:
        """Matrix-multiply FLOPs of one token on one GPU, LM head excluded."""
        active = self.always_read_linear_params + self.moe_layers * self.experts_per_token * (
            self.expert_params
        )
        return 2.0 * active / tp

    def head_flops_per_sequence(self, tp: int) -> float:
        """LM-head FLOPs of one sampled position on one GPU."""
        return 2.0 * self.vocab * self.hidden / tp

    def attention_flops_per_context_token(self, tp: int) -> float:
        """QK^T and AV FLOPs of one query token against one context token, all layers, one GPU."""
        return 4.0 * (self.heads // tp) * self.head_dim * self.layers

    def distinct_experts(self, tokens: int) -> float:
        """Expected routed experts touched per MoE layer by `tokens` tokens: E(1-(1-k/E)^n)."""
        if not self.experts or tokens <= 0:
            return 0.0
        e = float(self.experts)
        return e * (1.0 - (1.0 - self.experts_per_token / e) ** tokens)

    def activation_reserve_bytes(self, tp: int, max_num_batched_tokens: int) -> float:
        """Memory vLLM's profiling run keeps outside weights and KV (activations, sampler, CUDA).

        A fit to the published KV block counts of the calibration set: a fixed 1.25 GiB, the MLP
        activations of one full token budget, and the sampler's logits buffers per vocab entry.
        """
        width = max(self.intermediate, self.intermediate_dense) // tp
        return 1.25 * GIB + 4.0 * max_num_batched_tokens * width + 5000.0 * self.vocab


def kv_blocks(
    arch: Architecture,
    tp: int,
    memory_bytes: float,
    gpu_memory_utilization: float,
    max_num_batched_tokens: int,
    max_model_len: int,
    kv_dtype_bytes: float = 2.0,
    block_size: int = BLOCK_SIZE,
) -> int:
    """vLLM's KV block count: memory × utilization − weights − activation reserve, per GPU.

    Raises ConfigError with vLLM's message when the model does not fit or one sequence of
    `max_model_len` tokens does not fit.
    """
    arch.check_tp(tp)
    if not 0 < gpu_memory_utilization <= 1:
        raise ConfigError(
            f"--gpu-memory-utilization must be in (0, 1], got {gpu_memory_utilization}"
        )
    budget = memory_bytes * gpu_memory_utilization
    weights = arch.weight_bytes_per_gpu(tp)
    if weights >= budget:
        raise ConfigError(
            f"model {arch.name} does not fit: {weights / GIB:.2f} GiB of weights per GPU at "
            f"tensor parallel size {tp}, more than {budget / GIB:.2f} GiB "
            f"(memory × --gpu-memory-utilization)"
        )
    available = budget - weights - arch.activation_reserve_bytes(tp, max_num_batched_tokens)
    if available <= 0:
        raise ConfigError(
            "No available memory for the cache blocks. Try increasing `gpu_memory_utilization` "
            "when initializing the engine."
        )
    per_block = arch.kv_bytes_per_token(tp, kv_dtype_bytes) * block_size
    blocks = int(available // per_block)
    check_max_model_len(arch, tp, blocks, max_model_len, kv_dtype_bytes, block_size)
    return blocks


def check_max_model_len(
    arch: Architecture,
    tp: int,
    blocks: int,
    max_model_len: int,
    kv_dtype_bytes: float = 2.0,
    block_size: int = BLOCK_SIZE,
) -> None:
    """vLLM's check that one request of `max_model_len` tokens fits in the KV cache."""
    if blocks * block_size >= max_model_len:
        return
    per_token = arch.kv_bytes_per_token(tp, kv_dtype_bytes)
    needed = max_model_len * per_token / GIB
    available = blocks * block_size * per_token / GIB
    estimated = blocks * block_size
    raise ConfigError(
        f"To serve at least one request with the models's max seq len ({max_model_len}), "
        f"({needed:.2f} GiB KV cache is needed, which is larger than the available KV cache "
        f"memory ({available:.2f} GiB). Based on the available memory, the estimated maximum "
        f"model length is {estimated}. Try increasing `gpu_memory_utilization` or decreasing "
        "`max_model_len` when initializing the engine."
    )


# ---- Hugging Face config.json -------------------------------------------------------------

_FP8_HINTS = ("fp8", "float8", "float-quantized")


def _int(cfg: dict[str, Any], key: str, name: str, default: int | None = None) -> int:
    value = cfg.get(key, default)
    if value is None:
        raise ConfigError(f"--model-config {name}: missing key {key}")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"--model-config {name}: key {key} must be a non-negative integer")
    return value


def _is_fp8(cfg: dict[str, Any]) -> bool:
    quant = cfg.get("quantization_config")
    if not isinstance(quant, dict):
        return False
    text = str(quant).lower()
    return any(h in text for h in _FP8_HINTS)


def from_hf_config(cfg: dict[str, Any], name: str = "config.json") -> Architecture:
    """An Architecture from a `config.json` dict (multimodal configs: their `text_config`)."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"--model-config {name}: must be a JSON object")
    text = cfg.get("text_config")
    inner: dict[str, Any] = {**cfg, **text} if isinstance(text, dict) else cfg
    layers = _int(inner, "num_hidden_layers", name)
    hidden = _int(inner, "hidden_size", name)
    heads = _int(inner, "num_attention_heads", name)
    if not layers or not hidden or not heads:
        raise ConfigError(
            f"--model-config {name}: num_hidden_layers, hidden_size and num_attention_heads "
            "must be > 0"
        )
    kv_heads = _int(inner, "num_key_value_heads", name, heads) or heads
    head_dim = inner.get("head_dim") or hidden // heads
    experts = int(inner.get("num_local_experts") or inner.get("num_experts") or 0)
    moe_every = int(inner.get("interleave_moe_layer_step") or inner.get("decoder_sparse_step") or 1)
    model_type = str(inner.get("model_type", cfg.get("model_type", "")))
    return Architecture(
        name=name,
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=int(head_dim),
        intermediate=_int(inner, "intermediate_size", name),
        intermediate_dense=int(inner.get("intermediate_size_mlp") or 0),
        vocab=_int(inner, "vocab_size", name),
        experts=experts,
        experts_per_token=int(inner.get("num_experts_per_tok") or 0) if experts else 0,
        moe_every=max(1, moe_every),
        shared_expert=bool(experts) and model_type.startswith("llama4"),
        weight_bytes=1.0 if (_is_fp8(cfg) or _is_fp8(inner)) else 2.0,
        tied_embeddings=bool(inner.get("tie_word_embeddings", cfg.get("tie_word_embeddings"))),
        max_position=int(inner.get("max_position_embeddings") or 0),
    )


def _llama(
    layers: int, hidden: int, heads: int, kv: int, inter: int, vocab: int, pos: int
) -> dict[str, Any]:
    return {
        "model_type": "llama",
        "num_hidden_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "head_dim": 128,
        "intermediate_size": inter,
        "vocab_size": vocab,
        "max_position_embeddings": pos,
        "tie_word_embeddings": False,
    }


def _moe(cfg: dict[str, Any], experts: int, per_token: int) -> dict[str, Any]:
    return {
        **cfg,
        "model_type": "mixtral",
        "num_local_experts": experts,
        "num_experts_per_tok": per_token,
    }


# The checkpoints of the calibration set (their config.json fields that matter here).
BUILTIN_CONFIGS: dict[str, dict[str, Any]] = {
    "meta-llama/Llama-2-7b-hf": _llama(32, 4096, 32, 32, 11008, 32000, 4096),
    "meta-llama/Llama-2-70b-hf": _llama(80, 8192, 64, 8, 28672, 32000, 4096),
    "codellama/CodeLlama-34b-Instruct-hf": _llama(48, 8192, 64, 8, 22016, 32000, 16384),
    "mistralai/Mixtral-8x7B-v0.1": _moe(_llama(32, 4096, 32, 8, 14336, 32000, 32768), 8, 2),
    "mistralai/Mixtral-8x22B-Instruct-v0.1": _moe(
        _llama(56, 6144, 48, 8, 16384, 32768, 65536), 8, 2
    ),
    "mistralai/Mixtral-8x22B-v0.1": _moe(_llama(56, 6144, 48, 8, 16384, 32000, 65536), 8, 2),
    "Qwen/Qwen3-14B": _llama(40, 5120, 40, 8, 17408, 151936, 40960),
    "meta-llama/Llama-3.1-8B-Instruct": _llama(32, 4096, 32, 8, 14336, 128256, 131072),
    "RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic": {
        "model_type": "llama4",
        "quantization_config": {"quant_method": "compressed-tensors", "format": "float-quantized"},
        "text_config": {
            **_llama(48, 5120, 40, 8, 8192, 202048, 10485760),
            "model_type": "llama4_text",
            "intermediate_size_mlp": 16384,
            "num_local_experts": 16,
            "num_experts_per_tok": 1,
            "interleave_moe_layer_step": 1,
        },
    },
    "meta-llama/Llama-3.1-70B-Instruct": _llama(80, 8192, 64, 8, 28672, 128256, 131072),
    "mistralai/Mistral-Nemo-Instruct-2407": _llama(40, 5120, 32, 8, 14336, 131072, 131072),
    "Qwen/Qwen2.5-7B-Instruct": _llama(28, 3584, 28, 4, 18944, 152064, 32768),
    "01-ai/Yi-34B": _llama(60, 7168, 56, 8, 20480, 64000, 4096),
}

BUILTIN: dict[str, Architecture] = {
    name: from_hf_config(cfg, name) for name, cfg in BUILTIN_CONFIGS.items()
}


def get_architecture(model: str) -> Architecture:
    """A built-in architecture by its Hugging Face name (case-insensitive; the part after / too)."""
    if model in BUILTIN:
        return BUILTIN[model]
    for name, arch in BUILTIN.items():
        if model.lower() in (name.lower(), name.split("/")[-1].lower()):
            return arch
    known = ", ".join(sorted(BUILTIN))
    raise ConfigError(
        f"--model {model!r}: no built-in architecture (known: {known}); give its config.json "
        "with --model-config"
    )
