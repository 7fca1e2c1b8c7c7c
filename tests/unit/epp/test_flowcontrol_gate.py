"""The dispatch gate: spec §7's saturation plus dispatches not yet visible in a scrape."""

from __future__ import annotations

import pytest

from pyllmd.epp.flowcontrol.gate import ARRIVAL_MARGIN, DispatchLog, gate_saturation
from pyllmd.epp.saturation import SaturationConfig, saturation
from tests.unit.epp.plugin_helpers import endpoint

CFG = SaturationConfig(queue_depth_threshold=4, kv_cache_util_threshold=0.8)
NOW = 100.0


def test_without_dispatches_it_is_the_saturation_detector() -> None:
    eps = [
        endpoint("a-rank-0", waiting_queue_size=2, kv_cache_usage_percent=0.2, update_time=NOW),
        endpoint("b-rank-0", waiting_queue_size=0, kv_cache_usage_percent=0.6, update_time=NOW),
        endpoint("stale-rank-0", update_time=NOW - 1),
    ]
    log = DispatchLog()
    assert gate_saturation(eps, CFG, NOW, log) == pytest.approx(saturation(eps, CFG, NOW))
    assert gate_saturation([], CFG, NOW, log) == 1.0


def test_unscraped_dispatches_count_as_waiting_until_a_later_scrape() -> None:
    a = endpoint("a-rank-0", update_time=NOW)
    b = endpoint("b-rank-0", update_time=NOW)
    log = DispatchLog()
    both = frozenset({a.namespaced_name, b.namespaced_name})
    for _ in range(4):
        log.record(both, NOW + 0.001)
    # four requests split over two endpoints: 2 waiting each, threshold 4 → 0.5
    assert gate_saturation([a, b], CFG, NOW + 0.002, log) == pytest.approx(0.5)
    # a scrape that ended too soon after the dispatches is not trusted to show them
    early = endpoint("a-rank-0", update_time=NOW + 0.001 + ARRIVAL_MARGIN / 2)
    assert gate_saturation([early], CFG, NOW + 0.02, log) == pytest.approx(0.5)
    later = endpoint("a-rank-0", waiting_queue_size=1, update_time=NOW + 0.05)
    assert gate_saturation([later], CFG, NOW + 0.05, log) == pytest.approx(0.25)


def test_prune_forgets_old_dispatches() -> None:
    log = DispatchLog()
    log.record(frozenset({"ns/a"}), 1.0)
    log.record(frozenset({"ns/a"}), 2.0)
    log.record(frozenset(), 2.0)  # no candidates: nothing to count
    assert log.unseen("ns/a", 0.0) == 2
    log.prune(1.5)
    assert log.unseen("ns/a", 0.0) == 1
    log.prune(2.0)
    assert log.groups == {}
