"""vLLM argument parsing for V2 capacity estimates (spec §5.2 "vLLM argument parsing")."""

from __future__ import annotations

import pytest

from pyllmd.autoscaler.decide.analyze.vllm_args import (
    collect_args,
    normalize_key,
    parse_vllm_args,
    split_shell,
)
from pyllmd.autoscaler.decide.model import Container, VllmParams


def parse(
    *args: str, command: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> VllmParams:
    return parse_vllm_args([Container(command=command, args=args, env=env or {})])


def test_defaults() -> None:
    p = parse_vllm_args([])
    assert p == VllmParams(enable_chunked_prefill=True)
    assert p.effective_max_batched_tokens == 8192
    assert parse("serve", "model").effective_max_batched_tokens == 8192


@pytest.mark.parametrize(
    "args",
    [
        ("--max-num-seqs=64",),
        ("--max-num-seqs", "64"),
        ("--max_num_seqs", "64"),
        ("---max-num-seqs=64",),
    ],
)
def test_key_forms(args: tuple[str, ...]) -> None:
    assert parse(*args).max_num_seqs == 64


@pytest.mark.parametrize(
    ("args", "field", "value"),
    [
        (("--gpu-memory-utilization", "0.85"), "gpu_memory_utilization", 0.85),
        (("--block-size=32",), "block_size", 32),
        (("--kv-cache-dtype", "fp8"), "kv_cache_dtype", "fp8"),
        (("--tensor-parallel-size", "4"), "tensor_parallel_size", 4),
        (("--num-gpu-blocks-override", "1000"), "num_gpu_blocks_override", 1000),
        (("--max-num-batched-tokens", "4096"), "max_num_batched_tokens", 4096),
        (("--max-model-len", "32768"), "max_model_len", 32768),
        (("--enforce-eager",), "enforce_eager", True),
        (("--block-size", "+8"), "block_size", 8),
    ],
)
def test_recognised_keys(args: tuple[str, ...], field: str, value: object) -> None:
    assert getattr(parse(*args), field) == value


@pytest.mark.parametrize(
    "args",
    [
        ("--max-num-seqs", "sixty"),
        ("--max-num-seqs=6.4",),
        ("--max-num-seqs", " 64"),
        ("--max-num-seqs=1_000",),
        ("--max-num-seqs=99999999999999999999",),
        ("--max-num-seqs",),
    ],
)
def test_bad_numbers_keep_default(args: tuple[str, ...]) -> None:
    assert parse(*args).max_num_seqs == 256


@pytest.mark.parametrize(
    ("text", "ok"), [("0.9", True), ("1e-1", True), ("abc", False), ("1e999", False)]
)
def test_float_parsing(text: str, ok: bool) -> None:
    expected = float(text) if ok else 0.9
    assert parse("--gpu-memory-utilization", text).gpu_memory_utilization == expected


def test_flag_followed_by_flag_has_no_value() -> None:
    p = parse("--enforce-eager", "--max-num-seqs", "8")
    assert p.enforce_eager and p.max_num_seqs == 8


def test_value_token_is_consumed() -> None:
    # `--enforce-eager model` swallows "model" as its value; `--kv-cache-dtype` without value → "".
    p = parse("--enforce-eager", "model", "--kv-cache-dtype")
    assert p.enforce_eager
    assert p.kv_cache_dtype == ""


def test_non_flag_tokens_ignored() -> None:
    assert parse("vllm", "serve", "-x", "7", "--max-num-seqs", "12").max_num_seqs == 12


@pytest.mark.parametrize("shell", ["sh", "bash", "/bin/sh", "/bin/bash"])
def test_shell_command_string(shell: str) -> None:
    c = Container(
        command=(shell, "-c"),
        args=("exec vllm serve m --max-num-seqs 32 --max-model-len='4096' --ignored-after",),
    )
    p = parse_vllm_args([c])
    assert p.max_num_seqs == 32
    assert p.max_model_len == 4096


def test_shell_string_replaces_other_tokens() -> None:
    tokens = collect_args(("/bin/sh", "-c", "vllm --a 1"), ("--max-num-seqs", "9"))
    assert tokens == ["vllm", "--a", "1"]


def test_shell_without_string_is_plain() -> None:
    assert collect_args(("sh", "-c"), ()) == ["sh", "-c"]


def test_split_shell_quotes() -> None:
    assert split_shell("a  'b c' \"d 'e'\" f\"g h\"") == ["a", "b c", "d 'e'", "fg h"]
    assert split_shell("a\tb") == ["a\tb"]
    assert split_shell('x \\"y z\\"') == ["x", "\\y z\\"]


def test_normalize_key() -> None:
    assert normalize_key("--gpu-memory-utilization") == "gpu_memory_utilization"


def test_later_container_overwrites() -> None:
    p = parse_vllm_args(
        [
            Container(args=("--max-num-seqs", "8", "--block-size", "32")),
            Container(
                args=(
                    "--max-num-seqs",
                    "16",
                )
            ),
        ]
    )
    assert (p.max_num_seqs, p.block_size) == (16, 32)


@pytest.mark.parametrize(
    ("env", "args", "v1", "chunked", "batched"),
    [
        ({}, (), True, True, 8192),
        ({"VLLM_USE_V1": "1"}, (), True, True, 8192),
        ({"VLLM_USE_V1": ""}, (), True, True, 8192),
        ({"VLLM_USE_V1": "false"}, (), True, True, 8192),
        ({"VLLM_USE_V1": "0"}, (), False, False, 2048),
        ({"VLLM_USE_V1": "0"}, ("--max-model-len", "8192"), False, False, 8192),
        ({"VLLM_USE_V1": "0"}, ("--max-model-len", "2048"), False, False, 2048),
        ({"VLLM_USE_V1": "0"}, ("--enable-chunked-prefill",), False, True, 2048),
        ({"VLLM_USE_V1": "0"}, ("--enable-chunked-prefill", "false"), False, True, 2048),
        ({"VLLM_USE_V1": "0"}, ("--max-num-batched-tokens", "512"), False, False, 512),
        ({}, ("--max-num-batched-tokens", "16384"), True, True, 16384),
    ],
)
def test_engine_version_and_batched_tokens(
    env: dict[str, str], args: tuple[str, ...], v1: bool, chunked: bool, batched: int
) -> None:
    p = parse(*args, env=env)
    assert (p.v1_engine, p.enable_chunked_prefill, p.effective_max_batched_tokens) == (
        v1,
        chunked,
        batched,
    )


def test_v0_env_on_any_container() -> None:
    p = parse_vllm_args(
        [Container(args=("--max-num-seqs", "4")), Container(env={"VLLM_USE_V1": "0"})]
    )
    assert not p.v1_engine and p.max_num_seqs == 4
