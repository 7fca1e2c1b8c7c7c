"""Property-based: malformed and hostile bodies never crash the simulator or leak a traceback.

Every reply must be a valid response or a well-formed OpenAI error, and the
server must keep serving afterwards.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import serve_in_thread

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "model",
    "prompt",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "ignore_eos",
    "kv_transfer_params",
    "cache_hit_threshold",
    "tools",
    "tool_choice",
    "logprobs",
    "top_logprobs",
]
field_values = st.fixed_dictionaries({}, optional={f: json_values for f in FIELDS})
plausible = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["m", "x", ""]),
        "prompt": st.text(max_size=200),
        "messages": st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(["user", "system"]),
                    "content": st.text(max_size=50)
                    | st.lists(
                        st.fixed_dictionaries(
                            {
                                "type": st.sampled_from(["text", "image_url"]),
                                "text": st.text(max_size=20),
                            }
                        ),
                        max_size=3,
                    ),
                }
            ),
            max_size=3,
        ),
    },
    optional={
        "stream": st.booleans(),
        "max_tokens": st.integers(-5, 3000),
        "ignore_eos": st.booleans(),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    },
)
bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | field_values.map(lambda v: json.dumps(v).encode())
    | plausible.map(lambda v: json.dumps(v).encode())
)
POST_PATHS = ["/v1/chat/completions", "/v1/completions", "/tokenize"]
GET_PATHS = ["/v1/models", "/health", "/ready", "/metrics"]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_in_thread(["--max-model-len", "2048"]) as url:
        yield url


@dataclass
class Reply:
    status_code: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def request(base_url: str, method: str, path: str, body: bytes | None = None) -> Reply:
    """One HTTP exchange with the stdlib client (no redirects, no retries)."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        return Reply(resp.status, headers, resp.read().decode("utf-8", "replace"))
    finally:
        conn.close()


def assert_well_formed(resp: Reply) -> None:
    assert resp.status_code in (200, 400, 404, 405, 429), resp.text
    assert "Traceback" not in resp.text
    if resp.status_code == 200:
        if resp.headers["content-type"].startswith("text/event-stream"):
            events = [e for e in resp.text.split("\n\n") if e]
            assert events[-1] == "data: [DONE]"
            for e in events[:-1]:
                json.loads(e.removeprefix("data: "))
        elif resp.headers["content-type"].startswith("application/json"):
            json.loads(resp.text)
        return
    if resp.status_code == 405:
        assert resp.text == "Method Not Allowed"
        return
    body: Any = resp.json()
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str)
    assert err["code"] == resp.status_code
    assert "param" in err


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(POST_PATHS), body=bodies)
def test_hostile_bodies_get_well_formed_replies(base_url: str, path: str, body: bytes) -> None:
    assert_well_formed(request(base_url, "POST", path, body))
    assert request(base_url, "GET", "/health").status_code == 200


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(GET_PATHS), method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
def test_other_endpoints_and_methods(base_url: str, path: str, method: str) -> None:
    resp = request(base_url, method, path, b"{]")
    assert resp.status_code == (200 if method == "GET" else 405)
