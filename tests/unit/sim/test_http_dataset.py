"""Random mode with --dataset-path, seen through the openai client (spec §10.2)."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from pyllmd.sim.dataset.lookup import render_chat

from .conftest import SimFactory
from .dataset_helpers import build_with_tool, make_db, text_key, words


async def test_chat_with_the_tools_conversation_hits_its_dataset_row(
    start_sim: SimFactory, tmp_path: Path
) -> None:
    db = build_with_tool(tmp_path)
    sim = await start_sim("--dataset-path", str(db))
    reply = await sim.client.chat.completions.create(
        model="m",
        messages=[
            {"role": "user", "content": "Hello there, bot!"},
            {"role": "assistant", "content": "Hi, human. How are you today?"},
            {"role": "user", "content": "Fine, thanks."},
        ],
    )
    assert reply.choices[0].message.content == "Glad to hear it."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 5


async def test_first_turn_hits_for_chat_and_text_completions(
    start_sim: SimFactory, tmp_path: Path
) -> None:
    db = build_with_tool(tmp_path)
    sim = await start_sim("--dataset-path", str(db), "--dataset-in-memory")
    chat = await sim.client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Hello there, bot!"}]
    )
    text = await sim.client.completions.create(model="m", prompt="Hello there, bot!")
    assert chat.choices[0].message.content == "Hi, human. How are you today?"
    assert text.choices[0].text == "Hi, human. How are you today?"


async def test_text_block_content_keys_like_a_plain_string(
    start_sim: SimFactory, tmp_path: Path
) -> None:
    db = build_with_tool(tmp_path)
    sim = await start_sim("--dataset-path", str(db))
    reply = await sim.client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": [{"type": "text", "text": "Hello there, bot!"}]}],
    )
    assert reply.choices[0].message.content == "Hi, human. How are you today?"


async def test_chat_also_hits_rows_keyed_the_upstream_way(
    start_sim: SimFactory, tmp_path: Path
) -> None:
    # Upstream's chat key: the message texts joined by a space, tokenized.
    db = make_db(tmp_path / "d.sqlite3", [(text_key("Be brief. Hi"), ["Sure", "."])])
    sim = await start_sim("--dataset-path", str(db))
    reply = await sim.client.chat.completions.create(
        model="m",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    )
    assert reply.choices[0].message.content == "Sure."


async def test_rendered_key_wins_over_the_upstream_key(
    start_sim: SimFactory, tmp_path: Path
) -> None:
    rendered = render_chat([("user", "Hi")])
    rows = [(text_key("Hi"), ["plain"]), (text_key(rendered), ["templated"])]
    sim = await start_sim("--dataset-path", str(make_db(tmp_path / "d.sqlite3", rows)))
    reply = await sim.client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Hi"}]
    )
    assert reply.choices[0].message.content == "templated"


async def test_long_match_is_cut_to_max_tokens_with_length(
    start_sim: SimFactory, tmp_path: Path
) -> None:
    db = make_db(tmp_path / "d.sqlite3", [(text_key("q"), words(10))])
    sim = await start_sim("--dataset-path", str(db))
    reply = await sim.client.completions.create(model="m", prompt="q", max_tokens=4)
    assert reply.choices[0].text == "".join(words(4))
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 4


async def test_ignore_eos_pads_a_short_match_to_max_tokens(
    start_sim: SimFactory, tmp_path: Path
) -> None:
    db = make_db(tmp_path / "d.sqlite3", [(text_key("q"), words(3))])
    sim = await start_sim("--dataset-path", str(db))
    reply = await sim.client.completions.create(
        model="m", prompt="q", max_tokens=9, extra_body={"ignore_eos": True}
    )
    assert reply.choices[0].text.startswith("".join(words(3)))
    assert reply.usage is not None and reply.usage.completion_tokens == 9
    assert reply.choices[0].finish_reason == "length"


async def test_without_a_match_a_row_that_fits_is_used(
    start_sim: SimFactory, tmp_path: Path
) -> None:
    rows = [(text_key("other"), words(50, "long")), (text_key("x"), words(2, "short"))]
    sim = await start_sim("--dataset-path", str(make_db(tmp_path / "d.sqlite3", rows)))
    for _ in range(5):
        reply = await sim.client.completions.create(model="m", prompt="unknown", max_tokens=5)
        assert reply.choices[0].text == "short0 short1 "
        assert reply.choices[0].finish_reason == "stop"


async def test_without_max_tokens_the_limit_is_the_room_in_the_context(
    start_sim: SimFactory, tmp_path: Path
) -> None:
    db = make_db(tmp_path / "d.sqlite3", [(text_key("a b c"), words(20))])
    sim = await start_sim("--dataset-path", str(db), "--max-model-len", "10")
    reply = await sim.client.completions.create(model="m", prompt="a b c")
    assert reply.usage is not None and reply.usage.completion_tokens == 7
    assert reply.choices[0].finish_reason == "length"


async def test_streamed_dataset_response_carries_the_same_tokens(
    start_sim: SimFactory, tmp_path: Path
) -> None:
    db = build_with_tool(tmp_path)
    sim = await start_sim("--dataset-path", str(db))
    stream = await sim.client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Hello there, bot!"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Hi, human. How are you today?"


async def test_empty_dataset_answers_500_dataset_is_empty(
    start_sim: SimFactory, tmp_path: Path
) -> None:
    sim = await start_sim("--dataset-path", str(make_db(tmp_path / "d.sqlite3", [])))
    with pytest.raises(openai.InternalServerError) as err:
        await sim.client.completions.create(model="m", prompt="q", max_tokens=3)
    assert err.value.status_code == 500
    assert "Dataset is empty" in err.value.message
    # the worker was released: the server still answers
    resp = await sim.post("/v1/completions", {"model": "m", "prompt": "q"})
    assert resp.status == 500


async def test_corrupt_row_answers_500_not_a_traceback(
    start_sim: SimFactory, tmp_path: Path
) -> None:
    import sqlite3

    db = make_db(tmp_path / "d.sqlite3", [(text_key("q"), ["a"])])
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE llmd SET gen_tokens = '{not json'")
    sim = await start_sim("--dataset-path", str(db))
    resp = await sim.post("/v1/completions", {"model": "m", "prompt": "q"})
    assert resp.status == 500
    body = await resp.json()
    assert "gen_tokens is not JSON" in body["error"]["message"]
