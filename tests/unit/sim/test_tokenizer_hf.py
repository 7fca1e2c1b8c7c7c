"""A Hugging Face tokenizer found on disk (never downloaded), end to end (spec §12.1)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer

from pyllmd.core.clock import SteppingClock
from pyllmd.core.errors import ConfigError
from pyllmd.core.tokenize import (
    HFTokenizer,
    SimpleTokenizer,
    find_tokenizer_file,
    load_tokenizer,
)
from pyllmd.sim.config import load_config
from pyllmd.sim.dataset.tool import main as tool_main
from pyllmd.sim.run import RUNNER_OPTIONS, build_app

from .dataset_helpers import write_word_tokenizer

SENTENCES = ["hello there bot", "hi human how are you", "fine thanks", "glad to hear it"]


def test_token_strings_are_the_input_slices_of_the_offsets(tmp_path: Path) -> None:
    tok = HFTokenizer(write_word_tokenizer(tmp_path, SENTENCES))
    ids, strs = tok.encode("hello  there zzz")
    assert strs == ["hello", "there", "zzz"]
    assert ids[:2] == [1, 2] and ids[2] == 0  # unknown word: [UNK]
    assert tok.count("hello there") == 2
    assert tok.tokens("fine thanks") == ["fine", "thanks"]


def test_model_directory_wins(tmp_path: Path) -> None:
    model_dir = tmp_path / "local-model"
    path = write_word_tokenizer(model_dir, SENTENCES)
    write_word_tokenizer(tmp_path / "cache" / str(model_dir).lstrip("/"), ["other"])
    assert find_tokenizer_file(str(model_dir), str(tmp_path / "cache")) == path


def test_cache_dir_model_subdirectory(tmp_path: Path) -> None:
    path = write_word_tokenizer(tmp_path / "org" / "name", SENTENCES)
    assert find_tokenizer_file("org/name", str(tmp_path)) == path


def test_hub_cache_layout_prefers_the_main_ref(tmp_path: Path) -> None:
    repo = tmp_path / "models--org--name"
    old = write_word_tokenizer(repo / "snapshots" / "aaa", SENTENCES)
    newer = write_word_tokenizer(repo / "snapshots" / "bbb", SENTENCES)
    os.utime(old, (1, 1))
    assert find_tokenizer_file("org/name", str(tmp_path)) == newer
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("aaa\n")
    assert find_tokenizer_file("org/name", str(tmp_path)) == old


def test_nothing_on_disk_means_the_simple_tokenizer(tmp_path: Path) -> None:
    assert find_tokenizer_file("org/name", str(tmp_path)) is None
    assert isinstance(load_tokenizer("org/name", str(tmp_path)), SimpleTokenizer)
    assert isinstance(load_tokenizer("m", ""), SimpleTokenizer)


def test_a_broken_tokenizer_file_is_a_startup_error(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "tokenizer.json").write_text("{ not a tokenizer")
    with pytest.raises(ConfigError, match="cannot load tokenizer") as err:
        load_tokenizer("m", str(tmp_path))
    assert "\n" not in str(err.value)


# ------------------------------------------------------------ through the server

Start = Callable[..., Awaitable[openai.AsyncOpenAI]]


@pytest.fixture
async def hf_sim(tmp_path: Path) -> AsyncIterator[Start]:
    """Factory: an in-process simulator whose tokenizer is loaded like `serve` loads it."""
    started: list[tuple[TestServer, openai.AsyncOpenAI]] = []

    async def start(*args: str) -> openai.AsyncOpenAI:
        cfg = load_config(["--model", "m", "--seed", "1", *args], {}, 0).config
        tokenizer = load_tokenizer(cfg.model, cfg.tokenizers_cache_dir)
        assert isinstance(tokenizer, HFTokenizer)
        app = build_app(cfg, cfg.port, SteppingClock(), tokenizer)
        server = TestServer(app, host="127.0.0.1", **RUNNER_OPTIONS)
        await server.start_server()
        client = openai.AsyncOpenAI(
            base_url=str(server.make_url("/v1")), api_key="none", max_retries=0
        )
        started.append((server, client))
        return client

    yield start
    for server, client in started:
        await client.close()
        await server.close()


async def test_usage_and_tokenize_count_hf_tokens(hf_sim: Start, tmp_path: Path) -> None:
    write_word_tokenizer(tmp_path / "cache" / "m", SENTENCES)
    client = await hf_sim("--tokenizers-cache-dir", str(tmp_path / "cache"), "--mode", "echo")
    reply = await client.completions.create(model="m", prompt="hello there, bot")
    assert reply.usage is not None and reply.usage.prompt_tokens == 4  # hello there , bot
    assert reply.choices[0].text == "hellothere,bot"  # offsets cover no spaces
    async with (
        aiohttp.ClientSession() as http,
        http.post(str(client.base_url).replace("/v1/", "/tokenize"), json={"prompt": "fine"}) as r,
    ):
        body = json.loads(await r.text())
    assert body["count"] == 1 and body["tokens"] == [SENTENCES_VOCAB_FINE]


SENTENCES_VOCAB_FINE = 9  # [UNK]=0, hello..you=1..8, fine=9


async def test_dataset_built_with_the_same_hf_tokenizer_hits(hf_sim: Start, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    write_word_tokenizer(cache / "m", [*SENTENCES, "### user assistant : ,"])
    src = tmp_path / "conv.jsonl"
    conv = {
        "messages": [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi human"},
        ]
    }
    src.write_text(json.dumps(conv) + "\n")
    out = tmp_path / "out"
    argv = ["--model", "m", "--tokenizers-cache-dir", str(cache), "--input-file", str(src)]
    assert tool_main([*argv, "--output-path", str(out)]) == 0
    db = out / "inference-sim-dataset.sqlite3"
    client = await hf_sim("--tokenizers-cache-dir", str(cache), "--dataset-path", str(db))
    reply = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hello"}]
    )
    assert reply.choices[0].message.content == "hihuman"  # HF token strings, no spaces
    assert reply.usage is not None and reply.usage.completion_tokens == 2
