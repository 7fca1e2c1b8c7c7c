"""GIE and llm-d scorers (checks 44-47, 50)."""

from __future__ import annotations

import pytest

from pyllmd.epp.config.loader import load_config_text
from pyllmd.epp.plugins.scorer import (
    kv_cache_utilization_scorer,
    load_aware_scorer,
    lora_affinity_scorer,
    queue_scorer,
    running_requests_size_scorer,
)
from pyllmd.epp.scheduling.registry import Handle
from tests.unit.epp.plugin_helpers import endpoint, request, state


def test_epp_acc_44_queue_scorer_min_max() -> None:
    eps = [endpoint(f"e{i}-rank-0", waiting_queue_size=q) for i, q in enumerate((0, 5, 10))]
    scorer = queue_scorer.factory("q", None, Handle())
    scores = scorer.score(state(), request(), eps)
    assert [scores[ep.namespaced_name] for ep in eps] == [1.0, 0.5, 0.0]
    same = [endpoint(f"e{i}-rank-0", waiting_queue_size=3) for i in range(3)]
    assert set(scorer.score(state(), request(), same).values()) == {1.0}


def test_running_requests_scorer_uses_running_size() -> None:
    eps = [
        endpoint("a-rank-0", running_requests_size=2),
        endpoint("b-rank-0", running_requests_size=6),
    ]
    scores = running_requests_size_scorer.factory("r", None, Handle()).score(
        state(), request(), eps
    )
    assert scores == {"ns/a-rank-0": 1.0, "ns/b-rank-0": 0.0}


def test_epp_acc_45_kv_cache_utilization_scorer() -> None:
    scorer = kv_cache_utilization_scorer.factory("kv", None, Handle())
    scores = scorer.score(state(), request(), [endpoint("a-rank-0", kv_cache_usage_percent=0.3)])
    assert scores["ns/a-rank-0"] == pytest.approx(0.7)


def test_epp_acc_46_lora_affinity_scorer() -> None:
    scorer = lora_affinity_scorer.factory("lora", None, Handle())
    eps = [
        endpoint("active-rank-0", active_models=frozenset({"m"}), max_active_models=1),
        endpoint("room-rank-0", active_models=frozenset({"x"}), max_active_models=4),
        endpoint(
            "waiting-rank-0",
            active_models=frozenset({"x"}),
            waiting_models=frozenset({"m"}),
            max_active_models=2,
        ),
        endpoint("full-rank-0", active_models=frozenset({"x", "y"}), max_active_models=2),
    ]
    scores = scorer.score(state(), request(model="m"), eps)
    assert [scores[ep.namespaced_name] for ep in eps] == [1.0, 0.8, 0.6, 0.0]


def test_epp_acc_50_load_aware_scorer() -> None:
    scorer = load_aware_scorer.factory("la", {"threshold": 128}, Handle())
    eps = [endpoint(f"e{q}-rank-0", waiting_queue_size=q) for q in (0, 64, 500)]
    scores = scorer.score(state(), request(), eps)
    assert [scores[ep.namespaced_name] for ep in eps] == [0.5, 0.25, 0.0]


def test_load_aware_threshold_non_positive_means_default() -> None:
    assert load_aware_scorer.factory("la", {"threshold": 0}, Handle()).threshold == 128
    assert load_aware_scorer.factory("la", {"Threshold": 10, "x": 1}, Handle()).threshold == 10


def test_load_aware_threshold_type_mismatch_fails_config() -> None:
    text = "plugins:\n- type: load-aware-scorer\n  parameters: {threshold: high}\n"
    with pytest.raises(Exception) as err:
        load_config_text(text)
    assert "failed to create plugin 'load-aware-scorer' (type: load-aware-scorer): json: " in str(
        err.value
    )
    assert "cannot unmarshal string" in str(err.value)
