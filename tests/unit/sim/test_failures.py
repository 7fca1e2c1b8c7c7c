"""Failure injection as a client sees it: status, message, param (spec §9)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from pyllmd.core.errors import error_body
from pyllmd.sim.engine.failures import failure_error, pick_failure
from pyllmd.sim.engine.vocab import FAILURE_TYPES


def test_failure_types_are_the_six_upstream_names() -> None:
    assert FAILURE_TYPES == (
        "rate_limit",
        "invalid_api_key",
        "context_length",
        "server_error",
        "invalid_request",
        "model_not_found",
    )


def test_sim_acc_46_failure_rate_limit() -> None:
    rng = random.Random(1)
    for _ in range(50):
        err = pick_failure(rng, 100, ("rate_limit",), "m")
        assert err is not None
        body = error_body(err.status, err.message, err.param)
        assert body == {
            "error": {
                "message": "Rate limit reached for m in organization org-xxx on requests per min "
                "(RPM): Limit 3, Used 3, Requested 1.",
                "type": "RateLimitError",
                "param": None,
                "code": 429,
            }
        }


def test_sim_acc_47_failure_invalid_api_key() -> None:
    err = pick_failure(random.Random(2), 100, ("invalid_api_key",), "m")
    assert err is not None
    assert (err.status, err.message, err.param) == (401, "Incorrect API key provided.", None)
    assert error_body(err.status, err.message)["error"]["type"] == "AuthenticationError"


@pytest.mark.parametrize(
    ("kind", "status", "message", "param"),
    [
        (
            "context_length",
            400,
            "This model's maximum context length is 4096 tokens. However, your messages "
            "resulted in 4500 tokens.",
            "messages",
        ),
        ("server_error", 503, "The server is overloaded or not ready yet.", None),
        ("invalid_request", 400, "Invalid request: missing required parameter 'model'.", "model"),
        ("model_not_found", 404, "The model 'm-nonexistent' does not exist", "model"),
    ],
)
def test_failure_texts(kind: str, status: int, message: str, param: str | None) -> None:
    err = failure_error(kind, "m")
    assert (err.status, err.message, err.param) == (status, message, param)


def test_rate_zero_never_fails_and_draws_nothing() -> None:
    rng = random.Random(3)
    state = rng.getstate()
    assert all(pick_failure(rng, 0, (), "m") is None for _ in range(100))
    assert rng.getstate() == state


def test_rate_is_a_percentage() -> None:
    rng = random.Random(4)
    failures = sum(pick_failure(rng, 30, (), "m") is not None for _ in range(10_000))
    assert 2_700 < failures < 3_300


def test_empty_types_use_all_six_uniformly() -> None:
    rng = random.Random(5)
    seen: Counter[int] = Counter()
    for _ in range(6_000):
        err = pick_failure(rng, 100, (), "m")
        assert err is not None
        seen[err.status] += 1
    # 400 covers two types (context_length, invalid_request)
    assert set(seen) == {429, 401, 400, 503, 404}
    assert 1_800 < seen[400] < 2_200
    assert all(800 < seen[s] < 1_200 for s in (429, 401, 503, 404))


def test_same_seed_same_failures() -> None:
    def run(seed: int) -> list[str | None]:
        rng = random.Random(seed)
        return [
            None
            if (e := pick_failure(rng, 50, ("rate_limit", "server_error"), "m")) is None
            else e.message
            for _ in range(100)
        ]

    assert run(7) == run(7)
