"""The virtual-time PromQL evaluator: what Prometheus' answers depend on beyond the samples
(staleness markers, which OpenMetrics cannot carry into the differential e2e test), and its
errors. The differential test against Debian's Prometheus is tests/e2e/test_promql_differential.py.
"""

from __future__ import annotations

import math

import pytest

from pyllmd.simulate.promql import STALE_NAN, Evaluator, SeriesStore, Unsupported, is_stale
from pyllmd.simulate.promql.store import labels_of


def _store() -> tuple[SeriesStore, set]:
    store = SeriesStore()
    seen: set = set()
    for i in range(10):  # two pods every 15 s; pod b is gone from the 6th scrape on
        samples = [(labels_of("kv", {"pod": "a"}), 0.1 * i)]
        if i < 5:
            samples.append((labels_of("kv", {"pod": "b"}), 0.5))
        seen = store.scrape({"namespace": "ns"}, samples, i * 15_000, seen)
    return store, seen


def test_a_series_gone_from_a_scrape_gets_a_staleness_marker_and_disappears() -> None:
    store, _ = _store()
    ev = Evaluator(store)
    pods = lambda q, t: sorted(dict(p.labels)["pod"] for p in ev.instant(q, t))  # noqa: E731
    assert pods("kv", 60) == ["a", "b"]
    assert pods("kv", 75) == ["a"]  # marked stale at 75 s: gone at once, not after 5 minutes
    assert ev.instant('count_over_time(kv{pod="b"}[5m])', 130) != []  # markers are skipped
    assert ev.instant('count_over_time(kv{pod="b"}[5m])', 130)[0].value == 5.0  # type: ignore[index,union-attr]


def test_the_staleness_marker_is_a_nan_of_its_own() -> None:
    assert is_stale(STALE_NAN)
    assert not is_stale(math.nan)
    assert not is_stale(1.0)


def test_the_scrape_adds_the_target_labels() -> None:
    store, seen = _store()
    assert all(dict(labels)["namespace"] == "ns" for labels in seen)
    ans = Evaluator(store).answer('sum by (namespace) (kv{namespace="ns"})', 60)
    assert ans == {
        "resultType": "vector",
        "result": [{"metric": {"namespace": "ns"}, "value": [60, "0.9"]}],
    }


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("quantile(0.5, kv)", "unsupported PromQL aggregation quantile"),
        ("label_replace(kv, 'a', 'b', 'c', 'd')", "unsupported PromQL function label_replace()"),
        ("kv @ 100", "the @ modifier"),
    ],
)
def test_what_is_not_covered_is_named(query: str, words: str) -> None:
    store, _ = _store()
    with pytest.raises(Unsupported, match=words.replace("(", r"\(").replace(")", r"\)")):
        Evaluator(store).instant(query, 60)


def test_a_query_that_does_not_parse_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="bad PromQL 'sum by'"):
        Evaluator(SeriesStore()).instant("sum by", 0)


def test_samples_must_not_go_back_in_time() -> None:
    store = SeriesStore()
    store.add(labels_of("x", {}), 2000, 1.0)
    with pytest.raises(ValueError, match="older"):
        store.add(labels_of("x", {}), 1000, 1.0)
