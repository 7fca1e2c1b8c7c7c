"""The pure flow-control core (spec §8): bands, fairness, ordering, capacity, TTL, removal."""

from __future__ import annotations

import pytest

from pyllmd.core.errors import ConfigError
from pyllmd.epp.config.schema import FlowControlSpec, PriorityBand
from pyllmd.epp.config.sections import flow_control_config
from pyllmd.epp.flowcontrol.bands import (
    DEFAULT_BAND_MAX_BYTES,
    DYNAMIC_BAND_NAME,
    BandConfig,
    FlowControlConfig,
)
from pyllmd.epp.flowcontrol.policies import EDF, ROUND_ROBIN
from pyllmd.epp.flowcontrol.queues import FlowKey, FlowQueues, Outcome, QueueItem, Rejection


def _open(_: QueueItem[str]) -> bool:
    return True


def _closed(_: QueueItem[str]) -> bool:
    return False


def _queued(q: FlowQueues[str], key: FlowKey, size: int, now: float, name: str) -> QueueItem[str]:
    item = q.enqueue(key, size, now, name)
    assert isinstance(item, QueueItem), item
    return item


def _drain_order(q: FlowQueues[str]) -> list[str]:
    out = []
    while (item := q.dispatch(_open)) is not None:
        assert item.outcome is Outcome.DISPATCHED
        out.append(item.payload)
    return out


def test_higher_priority_band_is_always_dispatched_first() -> None:
    q: FlowQueues[str] = FlowQueues(FlowControlConfig())
    _queued(q, FlowKey("a", 0), 10, 0.0, "low-1")
    _queued(q, FlowKey("a", -5), 10, 1.0, "sheddable")
    _queued(q, FlowKey("b", 10), 10, 2.0, "high-1")
    _queued(q, FlowKey("a", 0), 10, 3.0, "low-2")
    _queued(q, FlowKey("c", 10), 10, 4.0, "high-2")
    assert _drain_order(q) == ["high-1", "high-2", "low-1", "low-2", "sheddable"]
    assert len(q) == 0 and q.bytes == 0


def test_global_strict_fairness_serves_the_oldest_head_across_flows() -> None:
    q: FlowQueues[str] = FlowQueues(FlowControlConfig())
    for t, flow in enumerate(["a", "b", "a", "a", "c", "b"]):
        _queued(q, FlowKey(flow, 0), 1, float(t), f"{flow}{t}")
    assert _drain_order(q) == ["a0", "b1", "a2", "a3", "c4", "b5"]


def test_round_robin_fairness_gives_each_flow_a_turn() -> None:
    q: FlowQueues[str] = FlowQueues(FlowControlConfig(fairness_policy=ROUND_ROBIN))
    for t, flow in enumerate(["a", "a", "a", "b", "c", "b"]):
        _queued(q, FlowKey(flow, 0), 1, float(t), f"{flow}{t}")
    assert _drain_order(q) == ["a0", "b3", "c4", "a1", "b5", "a2"]


def test_edf_orders_by_deadline_and_puts_requests_without_ttl_last() -> None:
    q: FlowQueues[str] = FlowQueues(FlowControlConfig(ordering_policy=EDF))
    key = FlowKey("a", 0)
    q.enqueue(key, 1, 0.0, "no-ttl", ttl=0)
    q.enqueue(key, 1, 1.0, "late", ttl=10)  # deadline 11
    q.enqueue(key, 1, 2.0, "soon", ttl=3)  # deadline 5
    q.enqueue(key, 1, 3.0, "no-ttl-2", ttl=0)
    assert _drain_order(q) == ["soon", "late", "no-ttl", "no-ttl-2"]


def test_band_capacity_rejects_and_frees_on_dispatch() -> None:
    cfg = FlowControlConfig(bands={10: BandConfig(10, "priority-10", 100)})
    q: FlowQueues[str] = FlowQueues(cfg)
    _queued(q, FlowKey("a", 10), 60, 0.0, "first")
    refused = q.enqueue(FlowKey("b", 10), 50, 0.0, "second")
    assert isinstance(refused, Rejection)
    assert refused.outcome is Outcome.REJECTED_CAPACITY
    assert "priority-10" in refused.message and "60 queued + 50 > 100 bytes" in refused.message
    _queued(q, FlowKey("b", 10), 40, 0.0, "exactly-full")
    assert q.band_bytes(10) == 100
    _queued(q, FlowKey("a", 0), 500, 0.0, "other band")  # bands are separate
    assert _drain_order(q)[:1] == ["first"]
    assert q.band_bytes(10) == 0


def test_global_capacity_counts_every_band() -> None:
    q: FlowQueues[str] = FlowQueues(FlowControlConfig(max_bytes=100))
    _queued(q, FlowKey("a", 0), 70, 0.0, "a")
    refused = q.enqueue(FlowKey("a", 5), 40, 0.0, "b")
    assert isinstance(refused, Rejection) and "70 queued + 40 > 100" in refused.message
    _queued(q, FlowKey("a", 0), 0, 0.0, "empty body always fits")


def test_unlisted_priority_gets_a_dynamic_band_from_the_default() -> None:
    cfg = FlowControlConfig(default_band_max_bytes=10)
    assert cfg.band(3) == BandConfig(3, DYNAMIC_BAND_NAME, 10)
    q: FlowQueues[str] = FlowQueues(cfg)
    _queued(q, FlowKey("a", 3), 10, 0.0, "fits")
    assert isinstance(q.enqueue(FlowKey("a", 3), 1, 0.0, "over"), Rejection)


def test_ttl_eviction_at_the_deadline() -> None:
    q: FlowQueues[str] = FlowQueues(FlowControlConfig(default_ttl=2.0))
    a = _queued(q, FlowKey("a", 0), 5, 0.0, "a")
    b = _queued(q, FlowKey("a", 0), 5, 1.0, "b")
    c = q.enqueue(FlowKey("a", 0), 5, 1.0, "c", ttl=0)  # explicit: no TTL
    assert isinstance(c, QueueItem) and c.deadline is None
    assert q.next_deadline() == 2.0
    assert q.expire(1.999) == []
    assert q.expire(2.0) == [a] and a.outcome is Outcome.EVICTED_TTL
    assert q.next_deadline() == 3.0
    assert q.expire(10.0) == [b]
    assert q.next_deadline() is None
    assert len(q) == 1 and q.bytes == 5


def test_removed_item_leaves_no_trace_and_is_not_expired_later() -> None:
    q: FlowQueues[str] = FlowQueues(FlowControlConfig(default_ttl=1.0))
    a = _queued(q, FlowKey("a", 7), 5, 0.0, "a")
    assert q.remove(a, Outcome.EVICTED_CONTEXT_CANCELLED)
    assert a.outcome is Outcome.EVICTED_CONTEXT_CANCELLED
    assert not q.remove(a, Outcome.EVICTED_OTHER)  # only once
    assert q.expire(5.0) == [] and q.next_deadline() is None
    assert len(q) == 0 and q.bytes == 0 and q.band_bytes(7) == 0
    assert q.dispatch(_open) is None


def test_closed_gate_blocks_lower_bands_too() -> None:
    q: FlowQueues[str] = FlowQueues(FlowControlConfig())
    _queued(q, FlowKey("a", 1), 1, 0.0, "high")
    _queued(q, FlowKey("a", 0), 1, 0.0, "low")
    seen: list[str] = []

    def only_low(item: QueueItem[str]) -> bool:
        seen.append(item.payload)
        return item.payload == "low"

    assert q.dispatch(only_low) is None
    assert seen == ["high"]  # the low band was not even offered
    assert q.dispatch(_closed) is None and len(q) == 2


def test_drain_evicts_everything_in_dispatch_order() -> None:
    q: FlowQueues[str] = FlowQueues(FlowControlConfig())
    _queued(q, FlowKey("a", 0), 1, 0.0, "low")
    _queued(q, FlowKey("a", 2), 1, 1.0, "high")
    drained = q.drain(Outcome.EVICTED_OTHER)
    assert [i.payload for i in drained] == ["high", "low"]
    assert all(i.outcome is Outcome.EVICTED_OTHER for i in drained) and len(q) == 0


def test_config_defaults_and_validation() -> None:
    assert flow_control_config(None) == FlowControlConfig()
    cfg = flow_control_config(
        FlowControlSpec(
            max_bytes=0,
            default_request_ttl=30.0,
            default_priority_band=PriorityBand(0, 0),
            priority_bands=(PriorityBand(10, 500), PriorityBand(-1, 0)),
        )
    )
    assert cfg.default_ttl == 30.0 and cfg.max_bytes == 0
    assert cfg.default_band_max_bytes == DEFAULT_BAND_MAX_BYTES
    assert cfg.band(10) == BandConfig(10, "priority-10", 500)
    assert cfg.band(-1) == BandConfig(-1, "priority--1", DEFAULT_BAND_MAX_BYTES)
    bad = [
        (FlowControlSpec(max_bytes=-1), "maxBytes cannot be negative"),
        (FlowControlSpec(default_request_ttl=-1.0), "defaultRequestTTL cannot be negative"),
        (FlowControlSpec(priority_bands=(PriorityBand(1, -5),)), "priorityBands[0].maxBytes"),
        (
            FlowControlSpec(priority_bands=(PriorityBand(1, 1), PriorityBand(1, 2))),
            "duplicate priority level 1",
        ),
    ]
    for spec, message in bad:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            flow_control_config(spec)
