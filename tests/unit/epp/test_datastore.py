"""Datastore and the pod → endpoint rules (spec §3.3)."""

from __future__ import annotations

from collections.abc import Sequence

from pyllmd.epp.datastore import (
    Datastore,
    endpoints_for_pod,
    endpoints_from_static,
    static_pod_name,
)
from pyllmd.epp.options import StaticEndpoint
from pyllmd.epp.scheduling.types import Endpoint, EndpointMetrics


def test_endpoints_per_target_port() -> None:
    eps = endpoints_for_pod("pod-a", "ns", "10.0.0.1", {"app": "x"}, True, False, [8000, 8001])
    assert [e.name for e in eps] == ["pod-a-rank-0", "pod-a-rank-1"]
    assert [e.hostport for e in eps] == ["10.0.0.1:8000", "10.0.0.1:8001"]
    assert [e.metrics_host for e in eps] == ["10.0.0.1:8000", "10.0.0.1:8001"]
    assert eps[0].namespaced_name == "ns/pod-a-rank-0"
    assert eps[0].pod_name == "pod-a" and eps[0].labels == {"app": "x"}


def test_two_pods_two_ports_make_four_endpoints() -> None:
    store = Datastore()
    for pod, ip in (("p1", "10.0.0.1"), ("p2", "10.0.0.2")):
        for ep in endpoints_for_pod(pod, "ns", ip, {}, True, False, [8000, 8001]):
            store.upsert(ep)
    assert [e.name for e in store.snapshot()] == [
        "p1-rank-0",
        "p1-rank-1",
        "p2-rank-0",
        "p2-rank-1",
    ]


def test_not_ready_or_deleting_pods_have_no_endpoints() -> None:
    assert endpoints_for_pod("p", "ns", "10.0.0.1", {}, False, False, [8000]) == []
    assert endpoints_for_pod("p", "ns", "10.0.0.1", {}, True, True, [8000]) == []
    assert endpoints_for_pod("p", "ns", "", {}, True, False, [8000]) == []


def test_metrics_port_override_only_with_one_target_port() -> None:
    one = endpoints_for_pod("p", "ns", "10.0.0.1", {}, True, False, [8000], 9100)
    assert one[0].metrics_host == "10.0.0.1:9100" and one[0].port == 8000
    two = endpoints_for_pod("p", "ns", "10.0.0.1", {}, True, False, [8000, 8001], 9100)
    assert [e.metrics_host for e in two] == ["10.0.0.1:8000", "10.0.0.1:8001"]
    v6 = endpoints_for_pod("p", "ns", "fd00::1", {}, True, False, [8000])
    assert v6[0].metrics_host == "[fd00::1]:8000"


def test_labels_are_copied() -> None:
    labels = {"a": "1"}
    ep = endpoints_for_pod("p", "ns", "10.0.0.1", labels, True, False, [8000])[0]
    labels["a"] = "2"
    assert ep.labels == {"a": "1"}


class Recorder:
    def __init__(self) -> None:
        self.added: list[str] = []
        self.removed: list[str] = []

    def __call__(self, added: Sequence[Endpoint], removed: Sequence[str]) -> None:
        self.added += [e.namespaced_name for e in added]
        self.removed += list(removed)


def test_upsert_remove_metrics_and_notifications() -> None:
    store = Datastore()
    rec = Recorder()
    store.subscribe(rec)
    ep = endpoints_for_pod("p", "ns", "10.0.0.1", {}, True, False, [8000])[0]
    store.upsert(ep)
    store.upsert(ep)  # no change, no notification
    assert rec.added == ["ns/p-rank-0"]
    assert store.update_metrics("ns/p-rank-0", EndpointMetrics(waiting_queue_size=3))
    assert store.snapshot()[0].metrics.waiting_queue_size == 3
    # A label change keeps the metrics and does not restart the scraper.
    store.upsert(endpoints_for_pod("p", "ns", "10.0.0.1", {"x": "y"}, True, False, [8000])[0])
    assert rec.added == ["ns/p-rank-0"]
    assert store.snapshot()[0].labels == {"x": "y"}
    assert store.snapshot()[0].metrics.waiting_queue_size == 3
    # A new address re-announces the endpoint (the scraper restarts it).
    store.upsert(endpoints_for_pod("p", "ns", "10.0.0.9", {}, True, False, [8000])[0])
    assert rec.added == ["ns/p-rank-0", "ns/p-rank-0"]
    assert store.remove("ns/p-rank-0") and not store.remove("ns/p-rank-0")
    assert rec.removed == ["ns/p-rank-0"]
    assert not store.update_metrics("ns/p-rank-0", EndpointMetrics())
    assert store.snapshot() == [] and len(store) == 0


def test_snapshot_rebuilt_only_after_change() -> None:
    store = Datastore()
    store.upsert(endpoints_for_pod("p", "ns", "10.0.0.1", {}, True, False, [8000])[0])
    first = store.snapshot_tuple()
    assert store.snapshot_tuple() is first
    store.update_metrics("ns/p-rank-0", EndpointMetrics(running_requests_size=2))
    second = store.snapshot_tuple()
    assert second is not first and second[0].metrics.running_requests_size == 2
    listed = store.snapshot()
    listed.clear()
    assert len(store.snapshot()) == 1


def test_static_endpoints_sync_at_once() -> None:
    entries = [
        StaticEndpoint("10.0.0.1", 8000, {"llm-d.ai/role": "decode"}),
        StaticEndpoint("::1", 9000),
    ]
    eps = endpoints_from_static(entries, "dev")
    assert [e.namespaced_name for e in eps] == ["dev/10-0-0-1-8000-rank-0", "dev/1-9000-rank-0"]
    assert eps[0].labels == {"llm-d.ai/role": "decode"}
    assert eps[1].hostport == "[::1]:9000"
    store = Datastore()
    assert not store.synced
    store.set_static(eps)
    assert store.synced and len(store.snapshot()) == 2
    store.clear()
    assert not store.synced and store.snapshot() == []
    assert static_pod_name("Host.Example", 80) == "host-example-80"


def test_replace_all_keeps_survivor_metrics() -> None:
    store = Datastore()
    a, b = endpoints_from_static(
        [StaticEndpoint("10.0.0.1", 1), StaticEndpoint("10.0.0.2", 1)], "ns"
    )
    store.set_static([a, b])
    store.update_metrics(a.namespaced_name, EndpointMetrics(waiting_queue_size=7))
    c = endpoints_from_static([StaticEndpoint("10.0.0.3", 1)], "ns")[0]
    store.replace_all([a, c])
    snap = store.snapshot()
    assert [e.address for e in snap] == ["10.0.0.1", "10.0.0.3"]
    assert snap[0].metrics.waiting_queue_size == 7
