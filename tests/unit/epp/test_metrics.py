# ruff: noqa: E501
"""The EPP's own metrics (spec §9, acceptance check 60) and the collector family."""

from __future__ import annotations

import asyncio

import pytest

from pyllmd.core.clock import VirtualClock
from pyllmd.core.metricset import CollectorFamily, Registry
from pyllmd.core.promtext import parse_samples
from pyllmd.epp.metrics import EppMetrics, PoolGauges, pool_gauge_loop
from pyllmd.epp.scheduling.types import Endpoint, EndpointMetrics


def endpoint(name: str, queue: int, t: float = 0.0, kv: float = 0.0) -> Endpoint:
    m = EndpointMetrics(waiting_queue_size=queue, update_time=t, kv_cache_usage_percent=kv)
    return Endpoint(name, "ns", name[:-7], "10.0.0.1", 8000, metrics=m)


def text(metrics: EppMetrics) -> str:
    return metrics.render().decode()


def value(metrics: EppMetrics, name: str, **labels: str) -> float:
    for s in parse_samples(text(metrics)):
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError(name)


def test_epp_acc_60_info_and_pool_gauges() -> None:
    m = EppMetrics("my-pool", commit="abc123", build_ref="v0.1.0")
    body = text(m)
    assert 'inference_extension_info{commit="abc123",build_ref="v0.1.0"} 1' in body
    assert 'inference_pool_ready_pods{name="my-pool"} 0' in body
    assert "# HELP inference_extension_info [ALPHA] " in body
    m.set_pool_gauges(PoolGauges(0.5, 2.5, 3))
    body = text(m)
    assert 'inference_pool_ready_pods{name="my-pool"} 3' in body
    assert 'inference_pool_average_queue_size{name="my-pool"} 2.5' in body
    assert 'inference_pool_average_kv_cache_utilization{name="my-pool"} 0.5' in body


def test_every_help_has_alpha_prefix_and_types() -> None:
    m = EppMetrics("p", endpoints=lambda: [endpoint("a-rank-0", 1)])
    m.record_request("m", "t", 100)
    m.record_error("m", "t", "BadRequest")
    m.running_delta("m", 1)
    m.record_response("m", "t", 0.3, 50, 7, 3, 2)
    m.record_scheduling(0.001, True)
    m.record_plugin("Scorer", "queue-scorer", "queue-scorer", 0.0002)
    m.record_prefix_lookup(0.5, 64, 10)
    m.record_model_rewrite("rw", "m", "t")
    m.record_pd_decision("", "prefill-decode")
    lines = text(m).splitlines()
    helps = [line for line in lines if line.startswith("# HELP")]
    assert len(helps) == 23
    assert all(" [ALPHA] " in h for h in helps)
    types = dict(line.split()[2:4] for line in lines if line.startswith("# TYPE"))
    assert types["inference_objective_request_total"] == "counter"
    assert types["inference_objective_request_duration_seconds"] == "histogram"
    assert types["inference_pool_per_pod_queue_size"] == "gauge"
    assert types["inference_extension_scheduler_attempts_total"] == "counter"


def test_request_metrics_values_and_buckets() -> None:
    m = EppMetrics("p")
    m.record_request("m1", "m2", 100)
    m.record_request("m1", "m2", 100)
    m.record_response("m1", "m2", 2.0, 40, input_tokens=7, output_tokens=4)
    m.running_delta("m1", 1)
    m.running_delta("m1", 1)
    m.running_delta("m1", -1)
    assert value(m, "inference_objective_request_total", model_name="m1") == 2
    assert value(m, "inference_objective_running_requests", model_name="m1") == 1
    assert value(m, "inference_objective_input_tokens_sum", target_model_name="m2") == 7
    assert value(m, "inference_objective_output_tokens_sum") == 4
    assert value(m, "inference_objective_normalized_time_per_output_token_seconds_sum") == 0.5
    body = text(m)
    assert (
        'inference_objective_response_sizes_bucket{model_name="m1",target_model_name="m2",le="32778"} 1'
        in body
    )
    assert (
        'inference_objective_request_sizes_bucket{model_name="m1",target_model_name="m2",le="64"} 0'
        in body
    )
    assert 'le="1.073741824e+09"' in body
    assert (
        'inference_objective_request_duration_seconds_bucket{model_name="m1",target_model_name="m2",le="0.005"} 0'
        in body
    )
    assert "inference_objective_prompt_cached_tokens" not in body  # none reported
    assert "inference_objective_request_error_total" not in body


def test_scheduler_plugin_and_prefix_metrics() -> None:
    m = EppMetrics("p")
    m.record_scheduling(0.0003, True)
    m.record_scheduling(0.2, False)
    m.record_plugin("Filter", "decode-filter", "decode", 0.00015)
    m.record_prefix_lookup(1.0, 0, 42)
    m.record_pd_decision("", "decode-only")
    m.record_model_rewrite("r", "a", "b")
    assert value(m, "inference_extension_scheduler_attempts_total", status="success") == 1
    assert value(m, "inference_extension_scheduler_attempts_total", status="failure") == 1
    body = text(m)
    assert 'inference_extension_scheduler_e2e_duration_seconds_bucket{le="0.0005"} 1' in body
    assert 'inference_extension_scheduler_e2e_duration_seconds_bucket{le="+Inf"} 2' in body
    assert (
        'inference_extension_plugin_duration_seconds_bucket{extension_point="Filter",'
        'plugin_type="decode-filter",plugin_name="decode",le="0.0002"} 1'
    ) in body
    assert 'inference_extension_prefix_indexer_hit_ratio_bucket{le="0.9"} 0' in body
    assert 'inference_extension_prefix_indexer_hit_ratio_bucket{le="1"} 1' in body
    assert 'inference_extension_prefix_indexer_hit_bytes_bucket{le="0"} 1' in body
    assert "inference_extension_prefix_indexer_size 42" in body
    assert (
        'llm_d_inference_scheduler_pd_decision_total{model_name="unknown",decision_type="decode-only"} 1'
        in body
    )
    assert (
        'inference_extension_model_rewrite_decisions_total{model_rewrite_name="r",'
        'model_name="a",target_model="b"} 1'
    ) in body


def test_per_pod_queue_size_follows_endpoints() -> None:
    current = [endpoint("p1-rank-0", 4), endpoint("p1-rank-1", 0)]
    m = EppMetrics("pool", endpoints=lambda: current)
    body = text(m)
    assert 'inference_pool_per_pod_queue_size{name="pool",model_server_pod="p1-rank-0"} 4' in body
    assert 'inference_pool_per_pod_queue_size{name="pool",model_server_pod="p1-rank-1"} 0' in body
    current = [endpoint("p2-rank-0", 9)]
    body = text(m)
    assert "p1-rank-0" not in body
    assert 'model_server_pod="p2-rank-0"} 9' in body
    current = []
    assert "inference_pool_per_pod_queue_size" not in text(m)


def test_collector_family_renders_computed_series() -> None:
    state = {"x": 1.0}
    reg = Registry()
    reg.add(CollectorFamily("c_total", "counter", "help", ("k",), lambda: [(("x",), state["x"])]))
    assert reg.render() == b'# HELP c_total help\n# TYPE c_total counter\nc_total{k="x"} 1\n'
    state["x"] = 2.5
    assert b'c_total{k="x"} 2.5' in reg.render()
    with pytest.raises(ValueError):
        CollectorFamily("h", "histogram", "", (), lambda: [])
    bad = CollectorFamily("g", "gauge", "", ("a", "b"), lambda: [(("only",), 1.0)])
    with pytest.raises(ValueError, match="expected labels"):
        bad.render([])


async def test_pool_gauge_loop_uses_fresh_endpoints() -> None:
    clock = VirtualClock(start=100.0)
    eps = [endpoint("a-rank-0", 2, t=100.0, kv=0.4), endpoint("b-rank-0", 6, t=10.0, kv=1.0)]
    m = EppMetrics("pool", endpoints=lambda: eps)
    task = asyncio.ensure_future(pool_gauge_loop(m, lambda: eps, clock, 5.0, 2.0))
    await clock.advance(0)
    assert value(m, "inference_pool_ready_pods") == 1
    assert value(m, "inference_pool_average_queue_size") == 2
    eps = [*eps, endpoint("c-rank-0", 4, t=104.0, kv=0.2)]
    await clock.advance(5.0)
    assert value(m, "inference_pool_ready_pods") == 1  # a went stale, c fresh
    assert value(m, "inference_pool_average_queue_size") == 4
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_ntpot_needs_output_tokens_and_a_positive_latency() -> None:
    m = EppMetrics("p")
    m.record_ntpot("m", "t", 1.0, 0)
    m.record_ntpot("m", "t", 0.0, 5)
    assert "inference_objective_normalized_time_per_output_token_seconds_count" not in text(m)
    m.record_ntpot("m", "t", 3.0, 4)
    m.record_ntpot("m", "t", 0.004, 2)
    name = "inference_objective_normalized_time_per_output_token_seconds"
    assert value(m, name + "_count", model_name="m", target_model_name="t") == 2
    assert value(m, name + "_sum") == pytest.approx(0.752)
    assert value(m, name + "_bucket", le="0.002") == 1
    assert value(m, name + "_bucket", le="1") == 2
