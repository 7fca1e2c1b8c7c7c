"""Saturation detector and legacy admission (spec §7; checks 41, 42)."""

from __future__ import annotations

import pytest

from pyllmd.epp.saturation import SATURATED_MESSAGE, SaturationConfig, admit, is_stale, saturation
from pyllmd.epp.scheduling.types import Endpoint
from tests.unit.epp.plugin_helpers import endpoint

CFG = SaturationConfig()
NOW = 1000.0


def fresh(name: str, **metrics: object) -> Endpoint:
    return endpoint(name, update_time=NOW - 0.05, **metrics)


def test_epp_acc_41_sheddable_dropped_when_queues_full() -> None:
    eps = [fresh("a-rank-0", waiting_queue_size=5), fresh("b-rank-0", waiting_queue_size=7)]
    assert admit(-1, eps, CFG, NOW) == SATURATED_MESSAGE
    assert admit(0, eps, CFG, NOW) is None
    assert SATURATED_MESSAGE == "system saturated, sheddable request dropped"


def test_epp_acc_42_stale_metrics_count_as_saturated() -> None:
    eps = [endpoint("a-rank-0", update_time=NOW - 0.3), endpoint("b-rank-0", update_time=0.0)]
    assert saturation(eps, CFG, NOW) == 1.0
    assert admit(-1, eps, CFG, NOW) == SATURATED_MESSAGE
    assert admit(5, eps, CFG, NOW) is None


def test_saturation_is_mean_of_max_ratios() -> None:
    eps = [
        fresh("a-rank-0", waiting_queue_size=1, kv_cache_usage_percent=0.4),  # max(0.2, 0.5)
        fresh("b-rank-0", waiting_queue_size=4, kv_cache_usage_percent=0.0),  # 0.8
    ]
    assert saturation(eps, CFG, NOW) == pytest.approx(0.65)
    assert admit(-1, eps, CFG, NOW) is None


def test_empty_candidate_set_is_saturated() -> None:
    assert saturation([], CFG, NOW) == 1.0
    assert admit(-1, [], CFG, NOW) == SATURATED_MESSAGE


def test_is_stale_boundary() -> None:
    ep = endpoint("a-rank-0", update_time=NOW - 0.25)
    assert not is_stale(ep, 0.25, NOW)
    assert is_stale(ep, 0.25, NOW + 0.125)
    assert is_stale(endpoint("never-rank-0"), 10.0, NOW)
