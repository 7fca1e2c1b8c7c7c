"""The dispatch gate: spec §7's saturation plus dispatches not yet visible in a scrape."""

from __future__ import annotations

import math
import random

import pytest

from pyllmd.epp.flowcontrol.gate import ARRIVAL_MARGIN, DispatchLog, gate_saturation
from pyllmd.epp.saturation import SaturationConfig, is_stale, saturation
from pyllmd.epp.scheduling.types import Endpoint, EndpointMetrics
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


def _reference_gate(
    endpoints: list[Endpoint], cfg: SaturationConfig, now: float, log: DispatchLog
) -> float:
    """The gate's rule written plainly, one endpoint and one dispatch group at a time."""
    if not endpoints:
        return 1.0
    total = 0.0
    for ep in endpoints:
        m = ep.metrics
        if is_stale(ep, cfg.metrics_staleness_threshold, now):
            total += 1.0
            continue
        waiting = m.waiting_queue_size + log.unseen(
            ep.namespaced_name, m.update_time - ARRIVAL_MARGIN
        )
        total += max(
            waiting / cfg.queue_depth_threshold,
            m.kv_cache_usage_percent / cfg.kv_cache_util_threshold,
        )
    return total / len(endpoints)


def test_the_gate_counts_exactly_as_its_rule_says_for_many_mixed_pools() -> None:
    """Endpoints scraped at different times (some stale, some never), several candidate
    sets in the dispatch log, ties and a NaN KV reading: the same float as the rule applied
    one endpoint at a time."""
    rnd = random.Random(7)
    cfg = SaturationConfig()
    for _ in range(300):
        now = rnd.uniform(1.0, 5.0)
        eps = []
        for i in range(rnd.randrange(0, 12)):
            updated = rnd.choice([0.0, now - 0.05, now - 0.05, now - 0.1, now - 3.0])
            kv = rnd.choice([0.0, 0.4, 0.8, rnd.random(), math.nan])
            eps.append(
                Endpoint(
                    f"p{i}-rank-0",
                    "ns",
                    f"p{i}",
                    "10.0.0.1",
                    8000,
                    metrics=EndpointMetrics(
                        waiting_queue_size=rnd.randrange(0, 8),
                        kv_cache_usage_percent=kv,
                        update_time=updated,
                    ),
                )  # fmt: skip
            )
        log = DispatchLog()
        names = [e.namespaced_name for e in eps]
        for _ in range(rnd.randrange(0, 6)):
            group = frozenset(rnd.sample(names, rnd.randrange(0, len(names) + 1)))
            for t in sorted(rnd.uniform(now - 0.3, now) for _ in range(rnd.randrange(1, 5))):
                log.record(group, t)
        got, want = gate_saturation(eps, cfg, now, log), _reference_gate(eps, cfg, now, log)
        assert got == want or (math.isnan(got) and math.isnan(want))
