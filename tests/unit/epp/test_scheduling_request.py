"""Request parsing into the scheduler's request type, as plain functions of the core."""

from __future__ import annotations

import pytest

from pyllmd.epp.requests import EppError, parse_request, scheduling_request

HEADERS = {":path": "/v1/chat/completions", "x-gateway-model-name-rewrite": "base"}


def test_a_parsed_body_becomes_the_scheduler_request() -> None:
    raw = b'{"model": "alias", "messages": [{"role": "user", "content": "hi"}]}'
    parsed = parse_request(raw, HEADERS)
    request = scheduling_request(parsed, HEADERS, "req-1", priority=2)
    assert (request.request_id, request.incoming_model, request.target_model) == (
        "req-1",
        "alias",
        "base",
    )
    assert request.api == "chat-completions" and request.priority == 2
    assert request.body == {"model": "alias", "messages": [{"role": "user", "content": "hi"}]}
    assert request.headers == HEADERS and request.headers is not HEADERS


def test_a_body_without_model_is_refused_before_any_scheduling() -> None:
    with pytest.raises(EppError, match="model not found in request body"):
        parse_request(b'{"prompt": "hi"}', {})
