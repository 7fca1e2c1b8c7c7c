"""The prior of the step-time coefficients: physical values that come from no calibration run.

`pyllmd calibrate` draws every fit toward this prior (maximum a posteriori on the logarithms
of the coefficients, see `pyllmd.simulate.calibrate.fit_lm`): a fit on few runs stays near it
and a fit on many runs follows the data. A coefficient that the runs of a fit cannot identify
(an all-reduce latency from single-GPU runs, prefill compute efficiency from prompts that are
prefix-cache hits) stays at its prior value. The shipped profile and the hold-out refits are the
same fit from the same prior, so a hold-out refit never starts from (or is pulled toward) a
profile that has seen the runs it predicts.

Each value is a typical figure for vLLM on a data-centre GPU as published by the kernel and
library authors (GEMM, FlashAttention, NCCL) and measured on vLLM's own hot paths, not a number
read off the calibration set. `spread` is the prior's standard deviation of the natural log of
the coefficient: 0.3 means the value is known within about ×1.35, 1.0 within ×2.7.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .steptime import Profile


@dataclass(frozen=True)
class PriorTerm:
    """One coefficient's prior: its typical value, the spread of its log, and why."""

    value: float
    spread: float
    reason: str


PRIOR: dict[str, PriorTerm] = {
    "mfu_linear": PriorTerm(
        0.6,
        0.3,
        "large BF16/FP8 GEMMs (cuBLAS, CUTLASS) reach 60-75 % of the dense peak; the linear "
        "layers of a step also run smaller, less efficient shapes",
    ),
    "mbu_weights": PriorTerm(
        0.75,
        0.2,
        "a memory-bound GEMM streaming weights (decode) reaches 70-85 % of HBM bandwidth",
    ),
    "mfu_attention": PriorTerm(
        0.35,
        0.4,
        "FlashAttention-2's forward pass reaches 35-50 % of peak FLOPS on H100/A100, less on "
        "the short, ragged chunks of chunked prefill",
    ),
    "mbu_kv": PriorTerm(
        0.6,
        0.3,
        "paged-attention decode kernels gather 16-token KV blocks and reach 50-70 % of HBM "
        "bandwidth",
    ),
    "step_s": PriorTerm(
        1e-3,
        0.7,
        "vLLM's per-step CPU work (scheduling, input preparation, sampler, launching the "
        "graph) is about a millisecond",
    ),
    "seq_s": PriorTerm(
        1e-5,
        1.0,
        "per sequence and step: input and output bookkeeping, detokenization, a few to a few "
        "tens of microseconds",
    ),
    "layer_s": PriorTerm(
        3e-5,
        1.0,
        "a step outside a captured CUDA graph launches about ten kernels per layer at a few "
        "microseconds each",
    ),
    "allreduce_s": PriorTerm(
        5e-6,
        0.7,
        "a small all-reduce over NVLink (vLLM's custom all-reduce, NCCL's low-latency "
        "protocol) costs a few microseconds per rank it passes",
    ),
    "link_efficiency": PriorTerm(
        0.7,
        0.2,
        "NCCL's bus bandwidth reaches 70-80 % of the NVLink or PCIe peak",
    ),
    "first_token_s": PriorTerm(
        3e-3,
        0.7,
        "HTTP, tokenization and the hop from the API server to the engine core: a few "
        "milliseconds per request",
    ),
    "last_token_s": PriorTerm(
        5e-4,
        1.0,
        "the final streamed chunk and the end of the response through the API server",
    ),
    "sampler_passes": PriorTerm(
        60.0,
        0.5,
        "vLLM applies the checkpoint's generation_config sampling defaults (top-p, top-k); its "
        "PyTorch top-k/top-p path sorts each sequence's fp32 logits row (a segmented radix sort "
        "of key and index: about 35 row-sized passes) and then runs softmax, cumulative sum, "
        "mask, scatter, temperature and the exponential draw over it (about 20 more)",
    ),
}
# roofline_p is not a prior: the fit does not move it. 4 is a smooth roofline: a GEMM between
# the memory and the compute bound (a decode batch of a few dozen to a few hundred tokens) runs
# below both peaks at once, which max(compute, memory) (0) does not see
PRIOR_ROOFLINE_P = 4.0


def prior_profile() -> Profile:
    """The prior's values as a profile: what the model predicts before any calibration."""
    values = {name: term.value for name, term in PRIOR.items()}
    return replace(Profile(), roofline_p=PRIOR_ROOFLINE_P, **values)
