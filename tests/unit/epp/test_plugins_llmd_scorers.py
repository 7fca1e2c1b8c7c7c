"""llm-d scorers with request-lifecycle state: active-request, session-affinity, no-hit-lru
(check 51), and the hooks that drive them (`lifecycle.PluginHooks`, the servicer)."""

from __future__ import annotations

import base64
import logging
import random
from dataclasses import replace
from typing import Any

import pytest

from pyllmd.core.clock import VirtualClock
from pyllmd.core.promtext import parse_samples
from pyllmd.epp.config.loader import load_config_text
from pyllmd.epp.extproc import wire
from pyllmd.epp.extproc.lifecycle import PluginHooks
from pyllmd.epp.metrics import EppMetrics
from pyllmd.epp.options import load_options
from pyllmd.epp.plugins.scorer import (
    active_request_scorer,
    no_hit_lru_scorer,
    session_affinity_scorer,
)
from pyllmd.epp.run import build_epp
from pyllmd.epp.scheduling.interfaces import PrefixLookup as PrefixState
from pyllmd.epp.scheduling.registry import Handle, ParamError
from pyllmd.epp.scheduling.types import ProfileResult, SchedulingResult
from tests.unit.epp.plugin_helpers import endpoint, request, state
from tests.unit.epp.test_server import body_msg, headers_msg, resp_headers_msg, run

A, B, C = (endpoint(f"{n}-rank-0", f"10.0.0.{i}") for i, n in enumerate("abc", start=1))


def result_of(*targets: Any, prefill: Any = None) -> SchedulingResult:
    results = {"decode": ProfileResult(tuple(targets))}
    if prefill is not None:
        results["prefill"] = ProfileResult((prefill,))
    return SchedulingResult("decode", results)


def request_with_id(rid: str) -> Any:
    return replace(request(), request_id=rid)


def token(name: str) -> str:
    return base64.b64encode(name.encode()).decode()


# ------------------------------------------------------------------ active-request-scorer


def test_active_request_counts_and_scores() -> None:
    s = active_request_scorer.factory("ar", None, Handle())
    assert s.score(state(), request(), [A, B]) == {"ns/a-rank-0": 1.0, "ns/b-rank-0": 1.0}
    for rid in ("r1", "r2"):
        s.pre_request(state(), request_with_id(rid), result_of(A))
    s.pre_request(state(), request_with_id("r3"), result_of(B))
    # max over all tracked endpoints (2 on A): A → 0, B → 0.5, untracked C → 1
    assert s.score(state(), request(), [A, B, C]) == {
        "ns/a-rank-0": 0.0,
        "ns/b-rank-0": 0.5,
        "ns/c-rank-0": 1.0,
    }
    s.response_complete(request_with_id("r1"), result_of(A))
    s.response_complete(request_with_id("r3"), result_of(B))
    assert s.counts == {"ns/a-rank-0": 1}
    # B is no longer tracked; max is over tracked endpoints even if not candidates
    assert s.score(state(), request(), [B]) == {"ns/b-rank-0": 1.0}


def test_active_request_counts_first_target_of_every_profile() -> None:
    s = active_request_scorer.factory("ar", None, Handle())
    s.pre_request(state(), request(), result_of(A, B, prefill=C))
    assert s.counts == {"ns/a-rank-0": 1, "ns/c-rank-0": 1}
    s.response_complete(request(), result_of(A, B, prefill=C))
    assert s.counts == {}
    s.response_complete(request(), result_of(A))  # unknown request: nothing happens
    assert s.counts == {}


def test_active_request_entries_expire_after_the_timeout() -> None:
    s = active_request_scorer.factory("ar", {"requestTimeout": "30s"}, Handle())
    assert s.request_timeout == 30.0
    s.pre_request(state(now=100.0), request(), result_of(A))
    s.pre_request(state(now=120.0), request_with_id("r2"), result_of(B))
    assert s.score(state(now=129.9), request(), [A, B]) == {"ns/a-rank-0": 0.0, "ns/b-rank-0": 0.0}
    assert s.score(state(now=130.0), request(), [A, B]) == {"ns/a-rank-0": 1.0, "ns/b-rank-0": 0.0}
    assert s.counts == {"ns/b-rank-0": 1}
    s.response_complete(request(), result_of(A))  # already expired: no double release
    assert s.counts == {"ns/b-rank-0": 1}


def test_active_request_same_request_id_twice_is_released_twice() -> None:
    s = active_request_scorer.factory("ar", None, Handle())
    s.pre_request(state(), request(), result_of(A))
    s.pre_request(state(), request(), result_of(B))
    s.response_complete(request(), result_of(A))
    s.response_complete(request(), result_of(B))
    assert s.counts == {}


@pytest.mark.parametrize("text", ["", "soon", "-5s", "0s"])
def test_active_request_bad_timeouts_fall_back_to_two_minutes(
    text: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        s = active_request_scorer.factory("ar", {"requestTimeout": text}, Handle())
    assert s.request_timeout == 120.0
    assert bool(caplog.records) == bool(text)


def test_active_request_timeout_must_be_a_string() -> None:
    with pytest.raises(ParamError) as err:
        active_request_scorer.factory("ar", {"requestTimeout": 30}, Handle())
    assert str(err.value).startswith(
        "failed to parse the parameters of the 'active-request-scorer' scorer - json: "
    )


# ------------------------------------------------------------------ session-affinity-scorer


def test_epp_acc_51_session_affinity_scores_the_named_endpoint() -> None:
    s = session_affinity_scorer.factory("sa", None, Handle())
    pods = [endpoint(f"pod-rank-{i}", port=8000 + i) for i in range(3)]
    req = request(headers={"x-session-token": token("ns/pod-rank-0")})
    assert s.score(state(), req, pods) == {
        "ns/pod-rank-0": 1.0,
        "ns/pod-rank-1": 0.0,
        "ns/pod-rank-2": 0.0,
    }


@pytest.mark.parametrize("value", [None, "", "%%%not-base64", token("ns/elsewhere-rank-0")])
def test_session_affinity_without_a_usable_token_scores_zero(value: str | None) -> None:
    s = session_affinity_scorer.factory("sa", None, Handle())
    headers = {} if value is None else {"x-session-token": value}
    assert set(s.score(state(), request(headers=headers), [A, B]).values()) == {0.0}


def test_session_affinity_sets_the_token_on_the_response() -> None:
    s = session_affinity_scorer.factory("sa", None, Handle())
    headers: dict[str, str] = {"content-type": "application/json"}
    s.response_received(request(), result_of(B, A), headers)
    assert headers["x-session-token"] == token("ns/b-rank-0")


# ------------------------------------------------------------------ no-hit-lru-scorer


def cold_state() -> Any:
    return state()


def warm_state() -> Any:
    st = state()
    st.prefix["prefix-cache-scorer"] = PrefixState((1, 2), {"ns/x-rank-0": 1}, 16)
    return st


def test_no_hit_lru_warm_request_is_neutral() -> None:
    s = no_hit_lru_scorer.factory("lru", None, Handle())
    st = warm_state()
    assert s.score(st, request(), [A, B]) == {"ns/a-rank-0": 0.5, "ns/b-rank-0": 0.5}
    s.pre_request(st, request(), result_of(A))
    assert list(s.lru) == []  # warm requests do not touch the LRU


def test_no_hit_lru_state_without_hits_is_cold() -> None:
    s = no_hit_lru_scorer.factory("lru", None, Handle())
    st = state()
    st.prefix["prefix-cache-scorer"] = PrefixState((1, 2), {}, 16)
    assert s.score(st, request(), [A, B]) == {"ns/a-rank-0": 1.0, "ns/b-rank-0": 0.0}


def test_no_hit_lru_cold_requests_rotate_over_endpoints() -> None:
    s = no_hit_lru_scorer.factory("lru", None, Handle())
    eps = [A, B, C]
    assert s.score(cold_state(), request(), eps) == {
        "ns/a-rank-0": 1.0,
        "ns/b-rank-0": 0.5,
        "ns/c-rank-0": 0.0,
    }
    picked = []
    for _ in range(4):
        st = cold_state()
        scores = s.score(st, request(), eps)
        best = max(eps, key=lambda e: scores[e.namespaced_name])
        s.pre_request(st, request(), result_of(best))
        picked.append(best.name)
    assert picked == ["a-rank-0", "b-rank-0", "c-rank-0", "a-rank-0"]
    # LRU now (oldest first): b, c, a → never-used none; ranks 0, 1, 2
    assert s.score(cold_state(), request(), eps) == {
        "ns/b-rank-0": 1.0,
        "ns/c-rank-0": 0.5,
        "ns/a-rank-0": 0.0,
    }


def test_no_hit_lru_ranks_count_non_candidates_and_floor_at_zero() -> None:
    s = no_hit_lru_scorer.factory("lru", None, Handle())
    for name in ("x", "y", "a", "b"):
        s.touch(f"ns/{name}-rank-0")
    # candidates A, B, C: C never used (rank 0); A at LRU position 2, B at 3
    scores = s.score(cold_state(), request(), [A, B, C])
    assert scores == {"ns/c-rank-0": 1.0, "ns/a-rank-0": 0.0, "ns/b-rank-0": 0.0}
    assert s.score(cold_state(), request(), [A]) == {"ns/a-rank-0": 1.0}


def test_no_hit_lru_marks_primary_and_prefill_targets() -> None:
    s = no_hit_lru_scorer.factory("lru", {"lruSize": 2}, Handle())
    st = cold_state()
    s.score(st, request(), [A, B, C])
    s.pre_request(st, request(), result_of(A, prefill=B))
    assert list(s.lru) == ["ns/a-rank-0", "ns/b-rank-0"]
    s.touch("ns/c-rank-0")  # capacity 2: the oldest is evicted
    assert list(s.lru) == ["ns/b-rank-0", "ns/c-rank-0"]


def test_no_hit_lru_parameters() -> None:
    s = no_hit_lru_scorer.factory("lru", {"lruSize": -3, "prefixPluginName": "p"}, Handle())
    assert (s.lru_size, s.prefix_plugin_name) == (1024, "p")
    st = state()
    st.prefix["p"] = PrefixState((1,), {"ns/a-rank-0": 1}, 16)
    assert set(s.score(st, request(), [A, B]).values()) == {0.5}
    with pytest.raises(ParamError, match="'no-hit-lru-scorer' scorer - json: "):
        no_hit_lru_scorer.factory("lru", {"lruSize": "big"}, Handle())


# ------------------------------------------------------------------ hooks and servicer


def test_plugin_hooks_time_and_isolate_plugins() -> None:
    class Broken:
        type_name, name = "broken", "broken"

        def response_received(self, *args: Any) -> None:
            raise RuntimeError("boom")

    metrics = EppMetrics("p")
    sa = session_affinity_scorer.factory("sa", None, Handle())
    hooks = PluginHooks([Broken(), sa], metrics)
    headers: dict[str, str] = {}
    hooks.response_received(request(), result_of(A), headers)
    assert headers == {"x-session-token": token("ns/a-rank-0")}
    points = {
        (s.labels["extension_point"], s.labels["plugin_name"])
        for s in parse_samples(metrics.render().decode())
        if s.name == "inference_extension_plugin_duration_seconds_count"
    }
    assert {("ResponseReceived", "broken"), ("ResponseReceived", "sa")} <= points


CONFIG = """
plugins:
- type: session-affinity-scorer
- type: active-request-scorer
schedulingProfiles:
- name: default
  plugins:
  - {pluginRef: session-affinity-scorer, weight: 10}
  - {pluginRef: active-request-scorer, weight: 1}
"""


async def fake_fetch(url: str) -> str:
    return "vllm:num_requests_waiting 0\n"


async def test_servicer_returns_the_session_token_and_releases_active_requests() -> None:
    options = load_options(["--static-endpoints=10.0.0.1:8000,10.0.0.2:8000"], {})
    epp = build_epp(
        options, load_config_text(CONFIG), clock=VirtualClock(100.0), rng=random.Random(5),
        fetch=fake_fetch,
    )  # fmt: skip
    names = [e.namespaced_name for e in epp.datastore.snapshot()]
    chosen = names[1]
    msgs = [
        headers_msg({"x-session-token": token(chosen)}),
        body_msg(b'{"model":"m","prompt":"hi"}'),
        resp_headers_msg({":status": "200", "content-type": "application/json"}),
    ]
    scorer = epp.config.plugins["active-request-scorer"]
    replies = await run(epp.servicer, msgs)
    sent = wire.headers_of(replies[0], "request_headers")
    assert sent["x-gateway-destination-endpoint"] == "10.0.0.2:8000"
    back = wire.headers_of(replies[-1], "response_headers")
    assert back["x-session-token"] == token(chosen)
    assert back["x-went-into-resp-headers"] == "true"
    assert scorer.counts == {}  # type: ignore[attr-defined]  # stream ended: released
