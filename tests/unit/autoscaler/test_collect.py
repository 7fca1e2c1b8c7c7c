"""Replica-metrics collection: upstream's PromQL on the wire, §4.3 building, status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from pyllmd.autoscaler.collect.collector import CollectionError
from pyllmd.autoscaler.collect.prometheus import (
    PodResolver,
    PrometheusClient,
    PrometheusMetricsSource,
    PrometheusOptions,
)
from pyllmd.autoscaler.collect.queries import PrometheusError, escape_label_value, render_query
from pyllmd.autoscaler.collect.queries import VectorSample as S
from pyllmd.autoscaler.decide.configmaps import format_retention
from pyllmd.autoscaler.decide.model import ModelGroup, ReplicaMetrics, VariantState
from tests.unit.autoscaler.promfake import EVAL_TIME, RecordingClock, Reply, serve_prometheus

NS, MODEL = "llm-d", "meta-llama/Llama-3.1-8B"
SEL = 'namespace="llm-d",model_name="meta-llama/Llama-3.1-8B"'
GOLDEN = {
    "kv_cache_usage": f"max by (pod) (max_over_time(vllm:kv_cache_usage_perc{{{SEL}}}[1m]))",
    "queue_length": f"max by (pod) (max_over_time(vllm:num_requests_waiting{{{SEL}}}[1m]))",
    "cache_config_info": (
        'max by (pod, num_gpu_blocks, block_size) (vllm:cache_config_info{namespace="llm-d"})'
    ),
    "avg_output_tokens": (
        f"max by (pod) (rate(vllm:request_generation_tokens_sum{{{SEL}}}[5m]) / "
        f"rate(vllm:request_generation_tokens_count{{{SEL}}}[5m]))"
    ),
    "avg_input_tokens": (
        f"max by (pod) (rate(vllm:request_prompt_tokens_sum{{{SEL}}}[5m]) / "
        f"rate(vllm:request_prompt_tokens_count{{{SEL}}}[5m]))"
    ),
    "prefix_cache_hit_rate": (
        f"max by (pod) (rate(vllm:prefix_cache_hits{{{SEL}}}[5m]) / "
        f"rate(vllm:prefix_cache_queries{{{SEL}}}[5m]))"
    ),
    "scheduler_queue_size": (
        'sum(inference_extension_flow_control_queue_size{target_model_name="meta-llama/'
        'Llama-3.1-8B"}) or sum(inference_extension_flow_control_queue_size{model_name="'
        'meta-llama/Llama-3.1-8B",target_model_name=""})'
    ),
    "scheduler_queue_bytes": (
        'sum(inference_extension_flow_control_queue_bytes{target_model_name="meta-llama/'
        'Llama-3.1-8B"}) or sum(inference_extension_flow_control_queue_bytes{model_name="'
        'meta-llama/Llama-3.1-8B",target_model_name=""})'
    ),
    "model_request_count": f"sum(increase(vllm:request_success_total{{{SEL}}}[10m]))",
    "kv_last_sample": (
        f"max by (pod) (timestamp(vllm:kv_cache_usage_perc{{{SEL}}})) or max by (pod) "
        f"(max_over_time(timestamp(vllm:kv_cache_usage_perc{{{SEL}}})[5m:10s]))"
    ),
}
REPLICA_QUERIES = [g for n, g in GOLDEN.items() if not n.startswith(("scheduler", "model_"))]

H100 = VariantState("llama-h100", NS, MODEL, accelerator="H100", cost=40.0, current_replicas=2)
A100 = VariantState("llama-a100", NS, MODEL, accelerator="A100", cost=20.0, current_replicas=1)
GROUP = ModelGroup(MODEL, NS, (H100, A100))
PODS = {"h-1": "llama-h100", "h-2": "llama-h100", "a-1": "llama-a100", "x-1": "other-va"}


def test_templates_render_exactly_upstreams_promql() -> None:
    for name, golden in GOLDEN.items():
        rendered = render_query(name, NS, MODEL, retention="10m", window="5m")
        assert rendered == golden, name


def test_label_values_are_escaped() -> None:
    assert escape_label_value('a\\b"c') == 'a\\\\b\\"c'
    query = render_query("kv_cache_usage", NS, 'we"ird\\model')
    assert 'model_name="we\\"ird\\\\model"' in query


def test_placeholders_in_a_value_are_not_substituted_again() -> None:
    query = render_query("model_request_count", "{model}", "{retention}", retention="5m")
    assert 'namespace="{model}",model_name="{retention}"}[5m]' in query


@pytest.mark.parametrize(
    "seconds,text",
    [
        (600, "10m"),
        (90, "90s"),
        (86400, "1d"),
        (172800, "2d"),
        (3600, "1h"),
        (5400, "90m"),
        (90000, "25h"),
        (59, "59s"),
        (1, "1s"),
        (0.4, "1s"),
        (0, "1s"),
    ],
)
def test_format_retention_uses_the_largest_whole_unit(seconds: float, text: str) -> None:
    assert format_retention(seconds) == text


class FakeClient:
    """In-memory QueryClient: PromQL → samples or an error."""

    def __init__(self, answers: Mapping[str, Sequence[S] | PrometheusError]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def query(self, promql: str) -> list[S]:
        self.asked.append(promql)
        answer = self.answers.get(promql, [])
        if isinstance(answer, PrometheusError):
            raise answer
        return list(answer)


def pod(name: str, value: float, label: str = "pod", **extra: str) -> S:
    return S({label: name, **extra}, value, EVAL_TIME)


def last_seen(name: str, age: float) -> S:
    return S({"pod": name}, EVAL_TIME - age, EVAL_TIME)


BASE_ANSWERS: dict[str, Sequence[S] | PrometheusError] = {
    GOLDEN["kv_cache_usage"]: [pod("h-1", 0.5), pod("h-2", 0.25), pod("x-1", 0.9)],
    GOLDEN["queue_length"]: [pod("h-1", 2.9), pod("a-1", 4)],
    GOLDEN["cache_config_info"]: [pod("h-1", 1, num_gpu_blocks="1000", block_size="16")],
    GOLDEN["avg_input_tokens"]: [pod("h-1", 812.5)],
    GOLDEN["avg_output_tokens"]: [pod("h-1", 120.0)],
    GOLDEN["prefix_cache_hit_rate"]: [pod("h-1", 0.4), pod("h-2", 1.5)],
    GOLDEN["kv_last_sample"]: [last_seen("h-1", 3), last_seen("h-2", 3), last_seen("x-1", 400)],
}


async def test_replicas_are_built_per_pod_and_attributed_to_their_variant() -> None:
    source = PrometheusMetricsSource(FakeClient(BASE_ANSWERS))
    result = await source.collect(GROUP, PODS)
    assert (result.status, result.reason) == ("ok", "MetricsFound")
    assert result.replicas == (
        ReplicaMetrics("a-1", "llama-a100", NS, MODEL, "A100", 20.0, kv_usage=0.0, queue_length=4),
        ReplicaMetrics(
            "h-1", "llama-h100", NS, MODEL, "H100", 40.0,
            kv_usage=0.5, queue_length=2, num_gpu_blocks=1000, block_size=16,
            avg_input_tokens=812.5, avg_output_tokens=120.0, prefix_cache_hit_rate=0.4,
        ),
        ReplicaMetrics("h-2", "llama-h100", NS, MODEL, "H100", 40.0, kv_usage=0.25),
    )  # fmt: skip
    assert result.replicas[1].total_kv_capacity_tokens == 16000
    assert result.replicas[1].tokens_in_use == 8000


async def test_the_queries_sent_over_http_are_the_golden_ones() -> None:
    def handler(promql: str) -> Reply:
        return 200, {"status": "success", "data": {"resultType": "vector", "result": []}}

    async with serve_prometheus(handler) as prom:
        client = PrometheusClient(PrometheusOptions(base_url=prom.url), clock=RecordingClock())
        async with client:
            source = PrometheusMetricsSource(client)
            await source.collect(GROUP, PODS)
            await source.request_count(NS, MODEL, 600)
            await source.scheduler_queue(MODEL)
    assert sorted(prom.queries) == sorted(GOLDEN.values())


async def test_pod_name_label_is_the_fallback_and_unknown_pods_are_dropped() -> None:
    answers = {
        GOLDEN["kv_cache_usage"]: [pod("h-1", 0.3, label="pod_name"), pod("ghost", 0.3)],
        GOLDEN["queue_length"]: [],
    }
    result = await PrometheusMetricsSource(FakeClient(answers)).collect(GROUP, PODS)
    assert [(r.pod, r.kv_usage) for r in result.replicas] == [("h-1", 0.3)]


@pytest.mark.parametrize("failing", ["kv_cache_usage", "queue_length"])
async def test_wva_acc_55_kv_query_error_fails_collection(failing: str) -> None:
    answers = dict(BASE_ANSWERS)
    answers[GOLDEN[failing]] = PrometheusError("api", "boom", status=503, error_type="timeout")
    source = PrometheusMetricsSource(FakeClient(answers), resolve_pods=_resolver(PODS))
    result = await source.collect(GROUP)
    assert (result.status, result.reason, result.replicas) == ("error", "PrometheusError", ())
    assert failing in result.detail
    with pytest.raises(CollectionError):
        await source.replica_metrics(GROUP)


async def test_errors_of_optional_queries_are_ignored() -> None:
    answers = dict(BASE_ANSWERS)
    for name in ("cache_config_info", "avg_input_tokens", "prefix_cache_hit_rate"):
        answers[GOLDEN[name]] = PrometheusError("connection", "reset")
    answers[GOLDEN["kv_last_sample"]] = PrometheusError("connection", "reset")
    result = await PrometheusMetricsSource(FakeClient(answers)).collect(GROUP, PODS)
    assert result.status == "ok"
    h1 = result.replicas[1]
    assert (h1.pod, h1.num_gpu_blocks, h1.avg_input_tokens, h1.avg_output_tokens) == (
        "h-1",
        0,
        0.0,
        120.0,
    )


async def test_no_series_is_missing() -> None:
    result = await PrometheusMetricsSource(FakeClient({})).collect(GROUP, PODS)
    assert (result.status, result.reason, result.replicas) == ("missing", "MetricsMissing", ())


async def test_series_only_from_foreign_pods_is_missing() -> None:
    answers = {GOLDEN["kv_cache_usage"]: [pod("x-1", 0.5)]}
    result = await PrometheusMetricsSource(FakeClient(answers)).collect(GROUP, PODS)
    assert result.status == "missing"
    assert "1 other pods" in result.detail


@pytest.mark.parametrize("age,status", [(59.0, "ok"), (60.0, "ok"), (61.0, "stale")])
async def test_a_variant_pod_older_than_the_fresh_threshold_is_stale(
    age: float, status: str
) -> None:
    answers = dict(BASE_ANSWERS)
    answers[GOLDEN["kv_last_sample"]] = [last_seen("h-1", 2), last_seen("h-2", age)]
    result = await PrometheusMetricsSource(FakeClient(answers)).collect(GROUP, PODS)
    assert result.status == status
    pods = [r.pod for r in result.replicas]
    assert pods == (["a-1", "h-1", "h-2"] if status == "ok" else ["a-1", "h-1"])
    if status == "stale":
        assert result.reason == "MetricsStale"
        assert "h-2 (61s)" in result.detail


async def test_a_pod_whose_metrics_stopped_entirely_is_stale_not_missing() -> None:
    answers = {GOLDEN["kv_last_sample"]: [last_seen("a-1", 130)]}
    result = await PrometheusMetricsSource(FakeClient(answers)).collect(GROUP, PODS)
    assert (result.status, result.replicas) == ("stale", ())


async def test_stale_series_of_deleted_or_foreign_pods_do_not_count() -> None:
    answers = dict(BASE_ANSWERS)
    answers[GOLDEN["kv_last_sample"]] = [last_seen("deleted-pod", 200), last_seen("x-1", 200)]
    result = await PrometheusMetricsSource(FakeClient(answers)).collect(GROUP, PODS)
    assert result.status == "ok"


async def test_fresh_threshold_and_window_are_configurable() -> None:
    answers = dict(BASE_ANSWERS)
    answers[GOLDEN["kv_last_sample"].replace("[5m:10s]", "[2m:10s]")] = [last_seen("h-1", 31)]
    client = FakeClient(answers)
    source = PrometheusMetricsSource(client, fresh_threshold=30, stale_window=120)
    result = await source.collect(GROUP, PODS)
    assert result.status == "stale"
    assert any("[2m:10s]" in q for q in client.asked)


async def test_collect_without_mapping_or_resolver_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        await PrometheusMetricsSource(FakeClient({})).collect(GROUP)


async def test_request_count_sums_the_series_over_the_retention_window() -> None:
    query = GOLDEN["model_request_count"].replace("[10m]", "[5m]")
    source = PrometheusMetricsSource(FakeClient({query: [S({}, 3.0, EVAL_TIME)]}))
    assert await source.request_count(NS, MODEL, 300) == 3.0
    zero = PrometheusMetricsSource(FakeClient({query: [S({}, 0.0, EVAL_TIME)]}))
    assert await zero.request_count(NS, MODEL, 300) == 0.0


async def test_wva_acc_42_no_series_keeps_targets() -> None:
    """Source side of check 42: no series (or an error) is 'unknown', never 0."""
    assert await PrometheusMetricsSource(FakeClient({})).request_count(NS, MODEL, 600) is None
    failing = FakeClient({GOLDEN["model_request_count"]: PrometheusError("connection", "down")})
    assert await PrometheusMetricsSource(failing).request_count(NS, MODEL, 600) is None


RECENT_SUCCESS = (
    f"sum((max_over_time(vllm:request_success_total{{{SEL}}}[5m]) - "
    f"vllm:request_success_total{{{SEL}}} offset 5m) > 0) or "
    f"sum(max_over_time(vllm:request_success_total{{{SEL}}}[5m]) > 0 unless "
    f"vllm:request_success_total{{{SEL}}} offset 5m)"
)


async def test_recent_success_asks_the_first_seen_query_over_the_retention_window() -> None:
    source = PrometheusMetricsSource(FakeClient({RECENT_SUCCESS: [S({}, 4.0, EVAL_TIME)]}))
    assert await source.recent_success(NS, MODEL, 300) is True
    assert await PrometheusMetricsSource(FakeClient({})).recent_success(NS, MODEL, 300) is False
    failing = FakeClient({RECENT_SUCCESS: PrometheusError("connection", "down")})
    assert await PrometheusMetricsSource(failing).recent_success(NS, MODEL, 300) is None


async def test_scheduler_queue_reads_size_and_bytes_and_zero_when_unknown() -> None:
    answers: dict[str, Sequence[S] | PrometheusError] = {
        GOLDEN["scheduler_queue_size"]: [S({}, 4.0, EVAL_TIME)],
        GOLDEN["scheduler_queue_bytes"]: PrometheusError("api", "bad", status=400),
    }
    assert await PrometheusMetricsSource(FakeClient(answers)).scheduler_queue(MODEL) == (4.0, 0.0)


def _resolver(mapping: Mapping[str, str]) -> PodResolver:
    async def resolve(group: ModelGroup) -> Mapping[str, str]:
        return mapping

    return resolve
