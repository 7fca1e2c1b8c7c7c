"""`--latency-calculator batch` through the openai client: replies, streams, usage, refusals."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator

import openai
import pytest

from pyllmd.simulate.deployment import build_engine_spec, variant_from_args

from .conftest import serve_in_thread

MODEL = "meta-llama/Llama-2-7b-hf"
ARGS = ["--model", MODEL, "--latency-calculator", "batch", "--max-model-len", "4096"]
PROMPT = "one two three four five six seven eight nine ten " * 8  # 80 tokens: 5 full blocks


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_in_thread(ARGS) as url:
        yield url + "/v1"


def test_whole_reply_with_usage_and_prefix_cache_hits(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0)
    first = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=7, extra_body={"ignore_eos": True}
    )
    assert first.choices[0].finish_reason == "length"
    assert first.usage is not None
    assert (first.usage.prompt_tokens, first.usage.completion_tokens) == (80, 7)
    again = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=7, extra_body={"ignore_eos": True}
    )
    assert again.usage is not None and again.usage.prompt_tokens_details is not None
    assert again.usage.prompt_tokens_details.cached_tokens == 64  # all but the last token


def test_chat_stream_sends_one_chunk_per_token_then_usage(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Tell me something."}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    content = [c for c in chunks[:-1] if c.choices and c.choices[0].delta.content]
    assert len(content) == usage.completion_tokens
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")


def test_cache_config_info_shows_the_block_count_computed_from_gpu_memory(base_url: str) -> None:
    spec = build_engine_spec(variant_from_args("pod", ARGS))
    assert spec.scheduler.num_blocks != 1024  # not the --kv-cache-size default
    url = base_url.removesuffix("/v1") + "/metrics"
    metrics = urllib.request.urlopen(url, timeout=10).read().decode()
    info = [line for line in metrics.splitlines() if line.startswith("vllm:cache_config_info")]
    assert info == [
        f'vllm:cache_config_info{{block_size="16",num_gpu_blocks="{spec.scheduler.num_blocks}"}} 1'
    ]


def test_too_long_a_request_is_refused_before_it_is_queued(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="maximum context length is 4096"):
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4090)


def test_a_bounded_waiting_queue_answers_429() -> None:
    """One request runs (max 1 sequence), one waits (queue of 1): of three more, two get 429."""
    args = [*ARGS, "--max-num-seqs", "1", "--max-waiting-queue-length", "1"]

    async def burst(url: str) -> tuple[list[str], int]:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0)

        async def one() -> str:
            try:
                await client.completions.create(
                    model=MODEL, prompt=PROMPT, max_tokens=60, extra_body={"ignore_eos": True}
                )
            except openai.RateLimitError:
                return "429"
            return "ok"

        try:
            running = await client.completions.create(
                model=MODEL,
                prompt=PROMPT,
                max_tokens=200,
                stream=True,
                extra_body={"ignore_eos": True},
            )
            chunks = 0
            async for _ in running:  # the first chunk: it holds the only sequence slot
                chunks += 1
                break
            results = await asyncio.gather(*(one() for _ in range(3)))
            async for _ in running:
                chunks += 1
            return sorted(results), chunks
        finally:
            await client.close()

    with serve_in_thread(args) as url:
        results, chunks = asyncio.run(burst(url))
    assert results == ["429", "429", "ok"]
    assert chunks >= 200


def test_steps_preemptions_and_kv_usage_are_in_the_metrics() -> None:
    # 64 blocks of 16 tokens: four requests of 80 + 200 tokens (18 blocks each) cannot all stay
    args = [*ARGS, "--max-model-len", "1024", "--kv-cache-size", "64", "--max-num-seqs", "4"]

    async def load(url: str) -> tuple[list[int], str]:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0)

        async def one(i: int) -> int:
            r = await client.completions.create(
                model=MODEL, prompt=f"{i} {PROMPT}", max_tokens=200, extra_body={"ignore_eos": True}
            )
            assert r.usage is not None
            return r.usage.completion_tokens

        try:
            tokens = await asyncio.gather(*(one(i) for i in range(4)))
        finally:
            await client.close()
        metrics = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
        return list(tokens), metrics

    with serve_in_thread(args) as url:
        tokens, metrics = asyncio.run(load(url))
    assert tokens == [200] * 4
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in metrics.splitlines()
        if line.startswith("vllm:") and " " in line
    }
    label = f'{{model_name="{MODEL}"}}'
    assert values[f"vllm:num_preemptions_total{label}"] >= 1
    assert values[f"vllm:iteration_tokens_total_count{label}"] >= 200
    assert values[f"vllm:iteration_tokens_total_sum{label}"] >= 4 * (81 + 199)
    assert values[f"vllm:kv_cache_usage_perc{label}"] == 0  # every block freed at the end


@pytest.mark.parametrize(("offload", "cached"), [("0", 0), ("1", 64)])
def test_a_prefix_evicted_from_the_gpu_comes_back_from_the_cpu_tier(
    offload: str, cached: int
) -> None:
    """8 GPU blocks: a 120-token prompt evicts the first prompt's blocks; with a CPU tier
    (`--kv-offloading-size` GiB) the first prompt's 4 full blocks are hits when it returns."""
    args = [*ARGS[:-2], "--max-model-len", "128", "--kv-cache-size", "8"]
    args += ["--kv-offloading-size", offload]
    other = "ten nine eight seven six five four three two one " * 12

    def send(client: openai.OpenAI, prompt: str, tokens: int) -> int:
        reply = client.completions.create(
            model=MODEL, prompt=prompt, max_tokens=tokens, extra_body={"ignore_eos": True}
        )
        details = reply.usage.prompt_tokens_details if reply.usage else None
        return (details.cached_tokens or 0) if details else 0

    with serve_in_thread(args) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        send(client, PROMPT, 2)
        send(client, other, 8)
        assert send(client, PROMPT, 2) == cached
