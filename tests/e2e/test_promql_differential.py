"""The virtual-time PromQL evaluator answers as Debian's Prometheus does, on the same samples.

Generated scrapes of three simulator pods (gauges, counters with a reset, a histogram, a pod
that goes away, a missed scrape) are written as OpenMetrics, turned into TSDB blocks by
`promtool tsdb create-blocks-from openmetrics` and served by a real Prometheus. Every query of
the autoscaler's collector, and the dashboard-style queries beside them, are asked of both at
several times; the series and values must agree.
"""

from __future__ import annotations

import json
import math
import random
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from pyllmd.autoscaler.collect.queries import QUERY_TEMPLATES, render_query
from pyllmd.simulate.promql import Evaluator, SeriesStore, labels_of, to_ms
from pyllmd.simulate.promql.values import Value
from tests.e2e.harness import backfilled_prometheus, http_get

pytestmark = pytest.mark.e2e

NS, MODEL = "ns", "m"
STEP = 15.0
BUCKETS = ("0.01", "0.05", "0.1", "0.5", "+Inf")
EXTRA = (
    'histogram_quantile(0.9, sum by (pod, le) (rate(vllm:time_to_first_token_seconds_bucket{namespace="ns"}[1m])))',  # noqa: E501
    'sum by (pod) (increase(vllm:request_success_total{namespace="ns"}[2m]))',
    'rate(vllm:request_success_total{namespace="ns"}[20s])',
    "delta(vllm:num_requests_waiting[3m])",
    "vllm:kv_cache_usage_perc > 0.5",
    "vllm:kv_cache_usage_perc > bool 0.5",
    "- vllm:num_requests_waiting",
    "avg without (pod) (vllm:kv_cache_usage_perc)",
    "count(vllm:kv_cache_usage_perc)",
    "min by (namespace) (vllm:kv_cache_usage_perc offset 2m)",
    "vllm:request_success_total / on (pod) vllm:num_requests_waiting",
    "vllm:num_requests_waiting * on (pod) group_left (num_gpu_blocks) vllm:cache_config_info",
    "timestamp(vllm:kv_cache_usage_perc)",
    "max_over_time(vllm:kv_cache_usage_perc[10m:1m])",
    'vllm:kv_cache_usage_perc{pod=~"a|c"} unless vllm:num_requests_waiting > 3',
    "sum(vllm:num_requests_waiting) or vector(0)",
)


def _scrapes(start: float) -> list[tuple[str, dict[str, str], float, float]]:
    """(metric, labels, time, value) of 40 minutes of scrapes; pod c leaves after 20."""
    rnd = random.Random(7)
    out: list[tuple[str, dict[str, str], float, float]] = []
    for k, pod in enumerate(("a", "b", "c")):
        base = {"namespace": NS, "model_name": MODEL, "pod": pod}
        success = prompt = gen = 0.0
        buckets = [0.0] * len(BUCKETS)
        offset = 1.234 * k  # scrapes of each target are not aligned
        for i in range(int(40 * 60 / STEP)):
            t = start + offset + i * STEP
            if pod == "c" and i * STEP >= 20 * 60:
                break
            if pod == "a" and i == 50:
                continue  # a missed scrape
            if pod == "b" and i == 80:
                success = prompt = gen = 0.0  # a restart: counters reset
                buckets = [0.0] * len(BUCKETS)
            done = rnd.randrange(0, 30)
            success += done
            prompt += done * rnd.randrange(100, 200)
            gen += done * rnd.randrange(10, 50)
            for j in range(len(BUCKETS)):
                buckets[j] += sum(1 for _ in range(done) if rnd.random() < (j + 1) / len(BUCKETS))
            buckets = [max(buckets[: j + 1]) for j in range(len(buckets))]
            buckets[-1] = max(buckets[-1], success)
            out += [
                ("vllm:kv_cache_usage_perc", base, t, round(rnd.random(), 3)),
                ("vllm:num_requests_waiting", base, t, float(rnd.randrange(0, 8))),
                ("vllm:request_success_total", base, t, success),
                ("vllm:request_prompt_tokens_sum", base, t, prompt),
                ("vllm:request_prompt_tokens_count", base, t, success),
                ("vllm:request_generation_tokens_sum", base, t, gen),
                ("vllm:request_generation_tokens_count", base, t, success),
                ("vllm:prefix_cache_hits", base, t, prompt / 3),
                ("vllm:prefix_cache_queries", base, t, prompt),
                (
                    "vllm:cache_config_info",
                    {**base, "num_gpu_blocks": "1000", "block_size": "16"},
                    t,
                    1.0,
                ),
            ]
            for le, count in zip(BUCKETS, buckets, strict=True):
                out.append(
                    ("vllm:time_to_first_token_seconds_bucket", {**base, "le": le}, t, count)
                )
        queue = {"target_model_name": MODEL}
    for i in range(int(40 * 60 / STEP)):
        t = start + 0.5 + i * STEP
        out.append(("inference_extension_flow_control_queue_size", queue, t, float(i % 5)))
        out.append(("inference_extension_flow_control_queue_bytes", queue, t, float(100 * (i % 5))))
    return out


def _openmetrics(scrapes: list[tuple[str, dict[str, str], float, float]]) -> str:
    """The samples as OpenMetrics text, each series' samples together and in time order."""
    series: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}
    for name, labels, t, v in scrapes:
        series.setdefault((name, tuple(sorted(labels.items()))), []).append((t, v))
    lines = []
    for (name, pairs), samples in sorted(series.items()):
        text = ",".join(f'{k}="{v}"' for k, v in pairs)
        for t, v in sorted(samples):
            lines.append(f"{name}{{{text}}} {v!r} {t:.3f}")
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Evaluator, float]]:
    start = math.floor(time.time() / 3600) * 3600 - 3 * 3600  # old enough to be in blocks
    scrapes = _scrapes(start)
    store = SeriesStore()
    for name, labels, t, v in sorted(scrapes, key=lambda s: s[2]):
        store.add(labels_of(name, labels), to_ms(t), v)
    work = tmp_path_factory.mktemp("promql")
    with backfilled_prometheus(work, _openmetrics(scrapes)) as url:
        yield url, Evaluator(store), start


def _queries() -> list[str]:
    extra = {"retention": "10m", "window": "5m"}
    return [render_query(name, NS, MODEL, **extra) for name in QUERY_TEMPLATES] + list(EXTRA)


def _as_map(data: dict[str, Any]) -> dict[tuple[tuple[str, str], ...], float]:
    kind = data["resultType"]
    result = data["result"]
    if kind == "scalar":
        return {(): float(result[1])}
    return {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in result}


def _value_map(value: Value) -> dict[tuple[tuple[str, str], ...], float]:
    if isinstance(value, float):
        return {(): value}
    return {tuple(sorted(p.labels)): p.value for p in value}  # type: ignore[union-attr]


MINUTES = [3, 12.1, 21, 24.9, 27, 39.5]


@pytest.mark.parametrize("minute", MINUTES)
def test_every_query_gives_prometheus_answer(
    both: tuple[str, Evaluator, float], minute: float
) -> None:
    url, evaluator, start = both
    at = start + minute * 60
    queries = _queries()
    _compare(url, queries, [_as_map(evaluator.answer(q, at)) for q in queries], at, minute)


@pytest.mark.parametrize("minute", MINUTES)
def test_a_batch_of_queries_gives_prometheus_answer(
    both: tuple[str, Evaluator, float], minute: float
) -> None:
    """`instant_many` (the timeline's), which evaluates a subexpression the queries share
    once: the p50 and p99 of one histogram, the same rate under two aggregations."""
    url, evaluator, start = both
    at = start + minute * 60
    shared = (
        'histogram_quantile(0.5, sum by (pod, le) (rate(vllm:time_to_first_token_seconds_bucket{namespace="ns"}[1m])))',  # noqa: E501
        'histogram_quantile(0.99, sum by (pod, le) (rate(vllm:time_to_first_token_seconds_bucket{namespace="ns"}[1m])))',  # noqa: E501
        'max by (pod) (rate(vllm:request_success_total{namespace="ns"}[2m]))',
        'sum by (pod) (rate(vllm:request_success_total{namespace="ns"}[2m]))',
    )
    queries = [*_queries(), *shared]
    got = [_value_map(v) for v in evaluator.instant_many(queries, at)]
    _compare(url, queries, got, at, minute)


def _compare(
    url: str,
    queries: list[str],
    answers: list[dict[tuple[tuple[str, str], ...], float]],
    at: float,
    minute: float,
) -> None:
    counted: list[int] = []
    for query, got in zip(queries, answers, strict=True):
        params = urllib.parse.urlencode({"query": query, "time": f"{at:.3f}"})
        status, body = http_get(f"{url}/api/v1/query?{params}", timeout=10)
        reply = json.loads(body)
        assert reply["status"] == "success", (query, reply)
        want = _as_map(reply["data"])
        assert got.keys() == want.keys(), (query, minute, sorted(got), sorted(want))
        counted.append(len(want))
        for key, value in want.items():
            other = got[key]
            same = (math.isnan(value) and math.isnan(other)) or math.isclose(
                other, value, rel_tol=1e-9, abs_tol=1e-12
            )
            assert same, (query, minute, key, other, value)
    assert sum(1 for n in counted if n) >= len(counted) - 2, counted  # the answers have series
