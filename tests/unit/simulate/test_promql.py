"""The virtual-time PromQL evaluator: what Prometheus' answers depend on beyond the samples
(staleness markers, which OpenMetrics cannot carry into the differential e2e test), and its
errors. The differential test against Debian's Prometheus is tests/e2e/test_promql_differential.py.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyllmd.simulate.promql import STALE_NAN, Evaluator, SeriesStore, Unsupported, is_stale
from pyllmd.simulate.promql.store import labels_of
from pyllmd.simulate.promql.values import Point


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


def test_a_batch_answers_as_each_query_alone() -> None:
    """`instant_many` evaluates a subexpression its queries share once; the answers are the
    ones `instant` gives, series for series and bit for bit."""
    store, _ = _store()
    for i in range(10):
        for le, share in (("0.1", 0.3), ("1", 0.8), ("+Inf", 1.0)):
            labels = labels_of("lat_bucket", {"pod": "a", "le": le, "namespace": "ns"})
            store.add(labels, i * 15_000, float(round(7 * i * share)))
        reset = 0 if i == 6 else 1  # a restart: the counter starts again
        store.add(labels_of("done_total", {"pod": "a"}), i * 15_000 + 7, float(3 * i * reset))
        store.add(labels_of("done_total", {"pod": "c"}), i * 15_000 + 9, 2.5 * i)
    queries = [
        "rate(done_total[1m])",
        "increase(done_total[45s])",
        "delta(kv[1m])",
        "rate(kv[1m])",  # pod b's markers: the per-series code
        "sum by (pod) (rate(done_total[2m]))",
        "histogram_quantile(0.5, sum by (le) (rate(lat_bucket[1m])))",
        "histogram_quantile(0.99, sum by (le) (rate(lat_bucket[1m])))",
        "sum by (pod) (kv)",
        "max by (pod) (kv)",
        "sum by (pod) (kv) / 2",
        "count_over_time(kv[5m])",
        "count_over_time(kv[5m]) + 1",
    ]
    for t in (30, 60, 75, 130):
        alone = [Evaluator(store).instant(q, t) for q in queries]
        assert Evaluator(store).instant_many(queries, t) == alone
        assert alone[5] != alone[6] and alone[10]  # the quantiles differ; pod b's markers skipped
        assert len(alone[0]) == 2  # type: ignore[arg-type]


def test_a_staleness_marker_overwritten_at_the_same_time_counts_no_more() -> None:
    """The store counts a series' markers (a range function skips them only where there are
    any): a marker replaced by a sample of the same millisecond is no marker."""
    store = SeriesStore()
    x = labels_of("x", {})
    store.add(x, 0, 1.0)
    store.add(x, 15_000, STALE_NAN)
    store.add(x, 15_000, 2.0)
    store.add(x, 30_000, 3.0)
    assert Evaluator(store).instant("count_over_time(x[1m])", 30) == [Point((), 3.0)]
    store.add(x, 45_000, STALE_NAN)
    assert Evaluator(store).instant("count_over_time(x[1m])", 45)[0].value == 3.0  # type: ignore[index,union-attr]


@given(
    st.lists(  # per series: (gap to the next sample in ms, increment, 0: a marker, 1: a reset)
        st.lists(
            st.tuples(
                st.integers(1, 40_000),
                st.floats(-1e3, 1e6, allow_nan=False),
                st.integers(0, 9),
            ),
            min_size=1,
            max_size=30,
        ),
        min_size=1,
        max_size=6,
    ),
    st.lists(st.integers(0, 600_000), min_size=1, max_size=5),
)
@settings(max_examples=150, deadline=None)
def test_a_batchs_rates_are_each_series_rates_bit_for_bit(
    series: list[list[tuple[int, float, int]]], times: list[int]
) -> None:
    """`instant_many` computes rate, increase and delta of every series of a selector at once
    (numpy), and aggregates them by series number; the values are the per-series code's, bit
    for bit, in the same order."""
    store = SeriesStore()
    for k, samples in enumerate(series):
        t, value = 0, 0.0
        for gap, step, kind in samples:
            t += gap
            value = 0.0 if kind == 1 else value + step
            labels = labels_of("c", {"pod": str(k), "zone": str(k % 2)})
            store.add(labels, t, STALE_NAN if kind == 0 else value)
    queries = [f"{f}(c[{r}])" for f in ("rate", "increase", "delta") for r in ("1m", "95s")]
    queries += [  # aggregated: grouped by series number, not by each point's labels
        "sum by (zone) (rate(c[1m]))",
        "max without (pod) (increase(c[95s]))",
        "avg by (pod) (delta(c[1m]))",
        "count(rate(c[1m]))",
        "min by (zone, pod) (rate(c[95s]))",
    ]
    for at in times:
        alone = [Evaluator(store).instant(q, at / 1000) for q in queries]
        batch = Evaluator(store).instant_many(queries, at / 1000)
        assert [[(p.labels, repr(p.value)) for p in v] for v in batch] == [  # type: ignore[union-attr]
            [(p.labels, repr(p.value)) for p in v]
            for v in alone  # type: ignore[union-attr]
        ]
