"""The real openai client, sync and async, streaming and not, parses every kind of response."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from .conftest import serve_in_thread


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_in_thread(["--inter-token-latency", "1ms", "--time-to-first-token", "2ms"]) as url:
        yield url + "/v1"


MESSAGES = [{"role": "user", "content": "Tell me something."}]


def test_sync_chat_and_text(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0)
    chat = client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=10)  # type: ignore[arg-type]
    assert chat.choices[0].message.role == "assistant"
    assert chat.usage is not None and 1 <= chat.usage.completion_tokens <= 10
    assert chat.choices[0].message.content
    assert chat.choices[0].finish_reason in ("stop", "length")
    text = client.completions.create(model="m", prompt="Say hi", max_tokens=10)
    assert text.object == "text_completion" and text.choices[0].text


def test_sync_streaming_with_usage(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0)
    stream = client.chat.completions.create(
        model="m",
        messages=MESSAGES,
        max_tokens=8,
        stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    content_chunks = [c for c in chunks[:-1] if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == usage.completion_tokens
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")


async def test_async_streaming_text(base_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0)
    stream = await client.completions.create(model="m", prompt="Go", max_tokens=6, stream=True)
    texts = [c.choices[0].text async for c in stream if c.choices]
    assert "".join(texts)
    await client.close()


async def test_async_errors_are_typed(base_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0)
    with pytest.raises(openai.NotFoundError) as e:
        await client.chat.completions.create(model="nope", messages=MESSAGES)  # type: ignore[arg-type]
    assert e.value.status_code == 404
    with pytest.raises(openai.BadRequestError):
        await client.completions.create(model="m", prompt="x", max_tokens=0)
    await client.close()
