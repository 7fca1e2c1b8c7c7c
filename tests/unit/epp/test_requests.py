"""Request parsing/validation, immediate-response format and usage extraction (spec §2.3, §2.5)."""

from __future__ import annotations

import orjson
import pytest

from pyllmd.epp.requests import (
    CHAT_COMPLETIONS,
    COMPLETIONS,
    CONVERSATIONS,
    RESPONSES,
    EppError,
    SseUsage,
    Usage,
    api_type,
    body_chunks,
    extract_usage,
    forwarded_body,
    forwarded_headers,
    json_usage,
    parse_request,
)

CHAT = {":path": "/v1/chat/completions"}
COMPL = {":path": "/v1/completions"}


def _error(raw: bytes, headers: dict[str, str]) -> EppError:
    with pytest.raises(EppError) as info:
        parse_request(raw, headers)
    return info.value


@pytest.mark.parametrize(
    ("headers", "api"),
    [
        ({":path": "/v1/chat/completions"}, CHAT_COMPLETIONS),
        ({":path": "/v1/completions?x=1"}, COMPLETIONS),
        ({":path": "/v1/responses"}, RESPONSES),
        ({":path": "/v1/conversations/abc"}, CONVERSATIONS),
        ({":path": "/other"}, COMPLETIONS),
        ({"x-original-path": "/v1/responses"}, RESPONSES),
        ({"x-forwarded-path": "/v1/chat/completions"}, CHAT_COMPLETIONS),
        ({}, COMPLETIONS),
    ],
)
def test_api_type_from_path_headers(headers: dict[str, str], api: str) -> None:
    assert api_type(headers) == api


def test_epp_acc_25_not_json_is_bad_request() -> None:
    err = _error(b"not json", COMPL)
    assert err.status == 400
    assert err.body.startswith(b"inference gateway: BadRequest - Error unmarshaling request body")


def test_json_that_is_not_an_object_is_bad_request() -> None:
    assert _error(b"[1,2]", COMPL).message == "Error unmarshaling request body"


def test_epp_acc_26_missing_model() -> None:
    err = _error(b'{"prompt":"hi"}', COMPL)
    assert (err.status, err.body) == (
        400,
        b"inference gateway: BadRequest - model not found in request body",
    )


def test_epp_acc_27_chat_with_empty_messages() -> None:
    err = _error(b'{"model":"m","messages":[]}', CHAT)
    assert err.status == 400
    assert err.body == (
        b"inference gateway: BadRequest - failed to extract request data: "
        b"inference gateway: BadRequest - "
        b"invalid chat completions request: must have valid messages field"
    )


def test_epp_acc_28_completions_without_prompt() -> None:
    err = _error(b'{"model":"m"}', COMPL)
    assert err.status == 400
    assert err.body.endswith(b"invalid completions request: must have prompt field")


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/completions", {"prompt": ["a", "b"]}, "must have prompt field"),
        ("/v1/completions", {"prompt": ""}, "must have prompt field"),
        ("/v1/chat/completions", {"messages": [{"content": 3}]}, "valid messages field"),
        (
            "/v1/chat/completions",
            {"messages": [{"content": [{"type": 5}]}]},
            "valid messages field",
        ),
        ("/v1/responses", {}, "invalid responses request: must have input field"),
        ("/v1/conversations", {"items": []}, "invalid conversations request: must have items"),
        # a field of the wrong type fails upstream's typed decoding: the API's one message
        ("/v1/completions", {"prompt": "hi", "cache_salt": 1}, "must have prompt field"),
        ("/v1/chat/completions", {"messages": ["hi"]}, "valid messages field"),
        (
            "/v1/chat/completions",
            {"messages": [{"content": [{"type": "text", "text": 5}]}]},
            "valid messages field",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"content": [{"type": "image_url", "image_url": "http://x"}]}]},
            "valid messages field",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"content": "hi"}], "cache_salt": ["s"]},
            "valid messages field",
        ),
        ("/v1/responses", {"input": "x", "cache_salt": 2}, "must have input field"),
        ("/v1/conversations", {"items": [{"role": 1}]}, "must have items field"),
        ("/v1/conversations", {"items": [{}], "metadata": []}, "must have items field"),
    ],
)
def test_invalid_bodies_per_api(path: str, body: dict[str, object], message: str) -> None:
    err = _error(orjson.dumps({"model": "m", **body}), {":path": path})
    assert err.status == 400
    assert message in err.message


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"prompt": "hi", "cache_salt": "s"}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]},
        ),
        ("/v1/responses", {"input": "hello"}),
        ("/v1/conversations", {"items": [{"type": "message"}]}),
        # JSON null decodes to Go's zero value: accepted wherever a typed field is
        ("/v1/completions", {"prompt": "hi", "cache_salt": None}),
        ("/v1/chat/completions", {"messages": [None, {"role": None, "content": None}]}),
        # any block type (upstream checks none: vLLM knows more than the four the EPP reads)
        ("/v1/chat/completions", {"messages": [{"content": [{"type": "audio_url"}, None]}]}),
        (
            "/v1/chat/completions",
            {"messages": [{"content": [{"type": "image_url", "image_url": None, "text": None}]}]},
        ),
        ("/v1/responses", {"input": ["a"], "instructions": 1, "tools": "t", "cache_salt": None}),
        ("/v1/conversations", {"items": [None, {"content": 3}], "metadata": None}),
    ],
)
def test_valid_bodies_per_api(path: str, body: dict[str, object]) -> None:
    parsed = parse_request(orjson.dumps({"model": "m", **body}), {":path": path})
    assert parsed.incoming_model == parsed.target_model == "m"


def test_unchanged_model_keeps_client_bytes() -> None:
    raw = b'{ "prompt": "hi",  "model": "m" }'
    assert forwarded_body(raw, parse_request(raw, COMPL)) == raw


def test_epp_acc_33_rewrite_header_changes_body_model() -> None:
    raw = b'{"prompt":"hi","model":"m1"}'
    parsed = parse_request(raw, {**COMPL, "x-gateway-model-name-rewrite": "m2"})
    assert (parsed.incoming_model, parsed.target_model) == ("m1", "m2")
    assert forwarded_body(raw, parsed) == b'{"model":"m2","prompt":"hi"}'  # sorted keys


def test_system_owned_headers_are_not_forwarded() -> None:
    headers = {
        "x-gateway-destination-endpoint": "1.2.3.4:1",
        "x-gateway-model-name-rewrite": "m2",
        "Content-Length": "5",
        "x-gateway-inference-objective": "o",
        "x-custom": "keep",
    }
    assert forwarded_headers(headers) == {"x-custom": "keep"}


def test_body_chunks() -> None:
    assert list(body_chunks(b"")) == [(b"", True)]
    data = bytes(range(256)) * 500  # 128000 bytes → 3 chunks
    pieces = list(body_chunks(data))
    assert [len(c) for c, _ in pieces] == [62000, 62000, 4000]
    assert [eos for _, eos in pieces] == [False, False, True]
    assert b"".join(c for c, _ in pieces) == data


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            {"object": "chat.completion", "usage": {"prompt_tokens": 7, "completion_tokens": 3}},
            (7, 3),
        ),
        ({"object": "response", "usage": {"input_tokens": 4, "output_tokens": 5}}, (4, 5)),
        (
            {"object": "text_completion", "usage": {"input_tokens": 4, "completion_tokens": 1}},
            (0, 1),
        ),
        ({"object": "x", "usage": {"prompt_tokens": 2, "output_tokens": 6}}, (2, 6)),
    ],
)
def test_usage_names_follow_object(response: dict[str, object], expected: tuple[int, int]) -> None:
    usage = extract_usage(response)
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == expected


def test_usage_cached_tokens_and_absent_usage() -> None:
    body = b'{"object":"chat.completion","usage":{"prompt_tokens":7,"completion_tokens":3,'
    body += b'"total_tokens":10,"prompt_token_details":{"cached_tokens":4}}}'
    assert json_usage(body) == (Usage(7, 3, 10, 4), True)
    assert json_usage(b'{"object":"chat.completion"}') == (None, True)
    assert json_usage(b"garbage") == (None, False)


def test_sse_usage_across_split_lines() -> None:
    sse = SseUsage()
    final = b'data: {"object":"chat.completion.chunk","usage":{"prompt_tokens":5,'
    sse.feed(b'data: {"object":"chat.completion.chunk","choices":[]}\n\n' + final[:30])
    assert sse.usage is None
    sse.feed(final[30:] + b'"completion_tokens":7,"total_tokens":12}}\n\n')
    assert sse.usage == Usage(5, 7, 12, 0)
    assert not sse.done
    sse.feed(b"data: [DONE]\n\n")
    assert sse.done


def test_sse_usage_ignores_zero_total() -> None:
    sse = SseUsage()
    sse.feed(b'data: {"object":"chat.completion.chunk","usage":{"total_tokens":0}}\n')
    sse.finish()
    assert sse.usage is None
