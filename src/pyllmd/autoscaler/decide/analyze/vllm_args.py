"""vLLM engine arguments read from a Deployment's containers (spec §5.2, "vLLM argument parsing").

The V2 analyzer estimates a variant's compute-bound capacity from `--max-num-batched-tokens`,
`--max-num-seqs` and friends before any pod reports metrics. The parsing is deliberately as
simple as upstream's: `sh -c "<string>"` is split on spaces with plain single/double-quote
grouping (no escapes, no `$VAR`), which is why this is hand-written and not `shlex`
(`shlex` would honour backslashes and split on tabs/newlines, changing which flags are seen).
Numbers follow Go's `strconv` rules: a value that does not parse keeps the default.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import replace

from pyllmd.autoscaler.decide.model import Container, VllmParams

SHELLS = frozenset({"sh", "bash", "/bin/sh", "/bin/bash"})
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_FLOAT_WORDS = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity", "nan"})
_INT64_MAX = 2**63 - 1


def split_shell(text: str) -> list[str]:
    """Split a shell command string on spaces, grouping '…' and "…" (quotes removed)."""
    tokens: list[str] = []
    current: list[str] = []
    in_single = in_double = False
    for ch in text:
        if ch == "'" and not in_double:
            in_single = not in_single
        elif ch == '"' and not in_single:
            in_double = not in_double
        elif ch == " " and not in_single and not in_double:
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        tokens.append("".join(current))
    return tokens


def collect_args(command: Sequence[str], args: Sequence[str]) -> list[str]:
    """`command` + `args`; for a `sh -c "<string>"` invocation only the split string."""
    tokens = [*command, *args]
    for i in range(len(tokens) - 2):
        if tokens[i] in SHELLS and tokens[i + 1] == "-c":
            return split_shell(tokens[i + 2])
    return tokens


def normalize_key(flag: str) -> str:
    """`--gpu-memory-utilization` and `--gpu_memory_utilization` → `gpu_memory_utilization`."""
    return flag.lstrip("-").replace("-", "_")


def _go_int(text: str) -> int | None:
    """`strconv.ParseInt(text, 10, 64)`: optional sign, decimal digits, int64 range."""
    if not _INT.fullmatch(text):
        return None
    value = int(text)
    return value if -_INT64_MAX - 1 <= value <= _INT64_MAX else None


def _go_float(text: str) -> float | None:
    """`strconv.ParseFloat(text, 64)` for decimal forms and inf/nan; out of range fails."""
    if text.lower() in _FLOAT_WORDS:
        return float(text)
    if not _FLOAT.fullmatch(text):
        return None
    value = float(text)
    return None if math.isinf(value) else value


def _apply(params: VllmParams, key: str, value: str) -> VllmParams:
    """One recognised flag applied to `params`; anything else (or a bad number) is ignored."""
    if key == "gpu_memory_utilization":
        f = _go_float(value)
        return params if f is None else replace(params, gpu_memory_utilization=f)
    if key == "kv_cache_dtype":
        return replace(params, kv_cache_dtype=value)
    if key == "enforce_eager":
        return replace(params, enforce_eager=True)
    if key == "enable_chunked_prefill":
        return replace(params, enable_chunked_prefill=True)
    setter = _INT_SETTERS.get(key)
    if setter is not None:
        n = _go_int(value)
        return params if n is None else setter(params, n)
    return params


_INT_SETTERS: dict[str, Callable[[VllmParams, int], VllmParams]] = {
    "block_size": lambda p, n: replace(p, block_size=n),
    "tensor_parallel_size": lambda p, n: replace(p, tensor_parallel_size=n),
    "num_gpu_blocks_override": lambda p, n: replace(p, num_gpu_blocks_override=n),
    "max_num_batched_tokens": lambda p, n: replace(p, max_num_batched_tokens=n),
    "max_num_seqs": lambda p, n: replace(p, max_num_seqs=n),
    "max_model_len": lambda p, n: replace(p, max_model_len=n),
}


def parse_args(tokens: Sequence[str], params: VllmParams) -> VllmParams:
    """Apply `--key=value` / `--key value` / `--flag` tokens to `params`."""
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.startswith("--"):
            continue
        if "=" in token:
            flag, value = token.split("=", 1)
        else:
            flag, value = token, ""
            if i < len(tokens) and not tokens[i].startswith("--"):
                value = tokens[i]
                i += 1
        params = _apply(params, normalize_key(flag), value)
    return params


def parse_vllm_args(containers: Sequence[Container]) -> VllmParams:
    """The vLLM engine parameters a pod template implies (defaults = vLLM ≥ 0.8)."""
    params = VllmParams()
    v1_engine = True
    chunked_flag = False
    for container in containers:
        if container.env.get("VLLM_USE_V1") == "0":
            v1_engine = False
        params = parse_args(collect_args(container.command, container.args), params)
        chunked_flag = chunked_flag or params.enable_chunked_prefill
    # A V1 engine always runs chunked prefill; V0 only when the flag asks for it.
    return replace(params, v1_engine=v1_engine, enable_chunked_prefill=v1_engine or chunked_flag)
