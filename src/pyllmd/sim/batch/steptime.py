"""Step time of a GPU engine step: a roofline over the step's work, plus fixed costs.

A step runs prefill chunks (new tokens with the context before them) and decode sequences (one
new token each) through every layer. Its time is

    t = t_step + (t_seq + t_sampler)·S + [t_layer·L if the step is not a captured decode graph]
        + R(t_linear_compute, t_weights) + R(t_attention_compute, t_kv)
        + t_allreduce·2L + t_gather                                   (TP > 1 only)

where R(a, b) = (a^p + b^p)^(1/p) is a smooth roofline (p → ∞ is max(a, b)) and:

- t_linear_compute = (linear FLOPs/token · T + head FLOPs · S) / (mfu_linear · peak FLOPS);
  decode-only steps pad T up to vLLM's CUDA-graph capture sizes;
- t_weights = (weights read every step + distinct experts E(1-(1-k/E)^T) · expert bytes per MoE
  layer) / (mbu_weights · HBM bandwidth);
- t_attention_compute = attention FLOPs per (query, context) pair · pairs / (mfu_attention · peak);
- t_kv = KV bytes of the context read + KV bytes written / (mbu_kv · HBM bandwidth);
- t_sampler = sampler_passes · vocab · 4 bytes / HBM bandwidth: the sampler's passes over
  each sequence's fp32 logits (a sort for top-p/top-k, softmax, the draw); every rank samples
  the whole vocabulary, so it does not shrink with TP;
- an all-reduce moves 2(tp-1)/tp · T · hidden · 2 bytes over the link, plus a latency of
  `allreduce_s` per other rank (tp − 1).

All quantities are per GPU (one tensor-parallel shard). The coefficients (`Profile`) are shared by
every accelerator and model: efficiencies are fractions of the accelerator's peaks.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from pyllmd.core.errors import ConfigError

from .architecture import Architecture
from .hardware import Accelerator


@dataclass(frozen=True)
class Profile:
    """Coefficients of the step-time model, shared by all accelerators and models."""

    mfu_linear: float = 0.6  # fraction of peak FLOPS reached by the linear layers
    mbu_weights: float = 0.8  # fraction of HBM bandwidth reading weights
    mfu_attention: float = 0.4  # fraction of peak FLOPS reached by attention
    mbu_kv: float = 0.6  # fraction of HBM bandwidth reading the KV cache
    roofline_p: float = 4.0  # smoothness of the roofline; 0 = max(compute, memory)
    step_s: float = 0.002  # fixed cost of every step (scheduler, launch, sampler)
    seq_s: float = 2e-5  # cost per sequence in the step (sampling, output processing)
    layer_s: float = 1e-5  # per layer, on steps that are not a captured decode CUDA graph
    allreduce_s: float = 1e-5  # latency of one all-reduce per other rank (× (tp − 1))
    link_efficiency: float = 0.7  # fraction of the link bandwidth an all-reduce reaches
    first_token_s: float = 0.005  # per request before its prefill: HTTP, tokenization
    last_token_s: float = 0.001  # per request after its last token
    sampler_passes: float = 0.0  # per sequence: HBM passes over its fp32 logits (vocab · 4 B)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, object], source: str = "profile") -> Profile:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"--latency-profile {source}: unknown key(s) {', '.join(unknown)}")
        values: dict[str, float] = {}
        for key, value in data.items():
            if isinstance(value, str):  # YAML 1.1 reads 1e-05 (no dot) as a string
                try:
                    value = float(value)
                except ValueError:
                    pass
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ConfigError(f"--latency-profile {source}: {key} must be a number >= 0")
            values[key] = float(value)
        return replace(cls(), **values)

    @classmethod
    def load(cls, path: str | Path, parse: Callable[[str], object] = json.loads) -> Profile:
        """The profile in `path`; `parse` (JSON here; YAML in `sim.config.profile`) raises
        ValueError on bad text. ConfigError (one line) otherwise."""
        try:
            data = parse(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"--latency-profile {path}: {e.strerror or e}") from None
        except ValueError as e:
            what = "JSON" if parse is json.loads else "YAML or JSON"
            raise ConfigError(f"--latency-profile {path}: not {what} ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"--latency-profile {path}: must be a mapping of coefficients")
        return cls.from_dict(data, str(path))


DEFAULT_PROFILE_PATH = Path(__file__).with_name("default_profile.json")


def default_profile() -> Profile:
    """The calibrated profile shipped in the package (the built-in defaults if absent)."""
    if DEFAULT_PROFILE_PATH.exists():
        return Profile.load(DEFAULT_PROFILE_PATH)
    return Profile()


def cuda_graph_sizes(max_num_seqs: int) -> list[int]:
    """vLLM's CUDA-graph capture sizes: 1, 2, 4, then steps of 8 to 256, then 16, up to 2·seqs."""
    top = min(2 * max_num_seqs, 512)
    sizes = [1, 2, 4, *range(8, 256, 8), *range(256, top + 1, 16)]
    return [s for s in sizes if s <= top]


@dataclass(frozen=True)
class Chunk:
    """Prefill work of one sequence in a step: `tokens` new tokens after `context` cached ones."""

    tokens: int
    context: int


class StepModel:
    """Step time for one (architecture, accelerator, TP, profile), with the constants folded.

    `time()` is the hot path of a replay (called per engine step); `step_time()` is the same
    function over explicit chunks and decode contexts.
    """

    def __init__(
        self,
        arch: Architecture,
        acc: Accelerator,
        tp: int,
        profile: Profile,
        max_num_seqs: int = 256,
        kv_dtype_bytes: float = 2.0,
    ) -> None:
        arch.check_tp(tp)
        self.arch, self.acc, self.tp, self.profile = arch, acc, tp, profile
        p = profile
        peak = acc.flops_for(arch.fp8)
        bw = acc.hbm_bytes_per_s
        self.graph_sizes = cuda_graph_sizes(max_num_seqs)
        self.max_graph = self.graph_sizes[-1]
        # seconds per unit of work
        self.s_per_linear_token = arch.linear_flops_per_token(tp) / (p.mfu_linear * peak)
        self.s_per_head_seq = arch.head_flops_per_sequence(tp) / (p.mfu_linear * peak)
        self.s_weights = arch.always_read_bytes(tp) / (p.mbu_weights * bw)
        self.s_per_expert = arch.moe_layers * arch.expert_bytes(tp) / (p.mbu_weights * bw)
        self.s_per_pair = arch.attention_flops_per_context_token(tp) / (p.mfu_attention * peak)
        self.s_per_kv_token = arch.kv_bytes_per_token(tp, kv_dtype_bytes) / (p.mbu_kv * bw)
        self.power = p.roofline_p
        self.fixed = p.step_s
        # the sampler reads each sequence's logits row (the full vocabulary, fp32) many times
        self.s_per_seq = p.seq_s + p.sampler_passes * arch.vocab * 4.0 / bw
        self.eager = p.layer_s * arch.layers
        if tp > 1:
            link = acc.link_gbps * 1e9 * max(p.link_efficiency, 1e-6)
            ring = 2.0 * (tp - 1) / tp
            # a small all-reduce's latency grows with the ranks it passes through
            self.comm_fixed = (2 * arch.layers + 1) * p.allreduce_s * (tp - 1)
            self.s_comm_token = 2 * arch.layers * ring * arch.hidden * 2.0 / link
            self.s_comm_seq = (tp - 1) / tp * arch.vocab * 2.0 / link
        else:
            self.comm_fixed = self.s_comm_token = self.s_comm_seq = 0.0
        # a decode step reads as many KV entries as it has attention pairs, and the roofline is
        # homogeneous (R(a·x, b·x) = x·R(a, b)): its attention term is one factor times the pairs
        self.s_per_decode_pair = self._roof(self.s_per_pair, self.s_per_kv_token)
        self._decode: dict[int, Callable[[float], float]] = {}

    def _roof(self, a: float, b: float) -> float:
        p = self.power
        if p <= 0:
            return a if a > b else b
        hi = a if a > b else b
        if hi <= 0.0:
            return 0.0
        total: float = (a / hi) ** p + (b / hi) ** p
        return hi * math.pow(total, 1.0 / p)

    def padded(self, tokens: int) -> int:
        if tokens > self.max_graph:
            return tokens
        return self.graph_sizes[bisect.bisect_left(self.graph_sizes, tokens)]

    def time(
        self, tokens: int, pairs: float, kv_tokens: float, seqs: int, decode_only: bool
    ) -> float:
        """Seconds for a step of `tokens` new tokens over `seqs` sequences.

        `pairs`: attention (query, key) pairs, Σ over new tokens of the context they see;
        `kv_tokens`: KV entries read (Σ context) plus written (tokens).
        """
        if tokens <= 0:
            return 0.0
        if decode_only:
            if tokens <= self.max_graph:
                tokens = self.graph_sizes[bisect.bisect_left(self.graph_sizes, tokens)]
            t = self.fixed
        else:
            t = self.fixed + self.eager
        linear = self.s_per_linear_token * tokens + self.s_per_head_seq * seqs
        weights = self.s_weights
        if self.s_per_expert:
            weights += self.s_per_expert * self.arch.distinct_experts(tokens)
        p = self.power
        if p <= 0:
            att = self.s_per_pair * pairs
            kv = self.s_per_kv_token * kv_tokens
            t += (linear if linear > weights else weights) + (att if att > kv else kv)
        elif pairs == kv_tokens:  # a decode step: see s_per_decode_pair
            t += self._roof(linear, weights) + self.s_per_decode_pair * pairs
        else:
            t += self._roof(linear, weights) + self._roof(
                self.s_per_pair * pairs, self.s_per_kv_token * kv_tokens
            )
        if self.tp > 1:
            t += self.comm_fixed + self.s_comm_token * tokens + self.s_comm_seq * seqs
        return t + self.s_per_seq * seqs

    def decode(self, seqs: int) -> Callable[[float], float]:
        """`time` of a decode-only step of `seqs` sequences as a function of its pairs alone
        (the KV entries read equal them), the same number to the last bit: a run of decode
        steps changes only its contexts, and this is the replay's innermost call."""
        fn = self._decode.get(seqs)
        if fn is None:
            fn = self._decode[seqs] = self._decode_fn(seqs)
        return fn

    def _decode_fn(self, seqs: int) -> Callable[[float], float]:
        tokens = self.padded(seqs)
        linear = self.s_per_linear_token * tokens + self.s_per_head_seq * seqs
        weights = self.s_weights
        if self.s_per_expert:
            weights += self.s_per_expert * self.arch.distinct_experts(tokens)
        if self.power > 0:
            lw = self._roof(linear, weights)
            c = self.s_per_decode_pair
        else:
            lw = linear if linear > weights else weights
            # max(a·p, b·p) is the larger factor times p (rounding keeps the order)
            c = self.s_per_pair if self.s_per_pair > self.s_per_kv_token else self.s_per_kv_token
        fixed = self.fixed
        last = self.s_per_seq * seqs
        if self.tp > 1:
            comm = self.comm_fixed + self.s_comm_token * tokens + self.s_comm_seq * seqs
            return lambda pairs: fixed + (lw + c * pairs) + comm + last
        return lambda pairs: fixed + (lw + c * pairs) + last

    def step_time(self, prefills: Sequence[Chunk], decode_contexts: Sequence[int]) -> float:
        """Seconds for a step of these prefill chunks and decode sequences (context lengths)."""
        tokens = len(decode_contexts)
        pairs = 0.0
        kv = 0.0
        for c in prefills:
            tokens += c.tokens
            pairs += c.tokens * c.context + c.tokens * (c.tokens + 1) / 2.0
            kv += c.context + c.tokens
        for ctx in decode_contexts:
            pairs += ctx + 1
            kv += ctx + 1
        seqs = len(prefills) + len(decode_contexts)
        return self.time(tokens, pairs, kv, seqs, decode_only=not prefills)


def step_time(
    prefills: Sequence[Chunk],
    decode_contexts: Sequence[int],
    arch: Architecture,
    acc: Accelerator,
    tp: int,
    profile: Profile,
    max_num_seqs: int = 256,
) -> float:
    """Seconds of one engine step (see the module docstring for the model)."""
    return StepModel(arch, acc, tp, profile, max_num_seqs).step_time(prefills, decode_contexts)
