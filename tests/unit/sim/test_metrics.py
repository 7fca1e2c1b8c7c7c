"""The simulator's /metrics output as a scraper sees it (spec §6)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pyllmd.core.metricset import go_float
from pyllmd.sim.config import SimConfig
from pyllmd.sim.engine.vocab import FINISH_REASONS
from pyllmd.sim.metric_table import build_125_buckets, estimate_token_total, metric_specs
from pyllmd.sim.server.metrics import CONTENT_TYPE, SimMetrics

START = 1_700_000_000.75
GOLDEN = Path(__file__).parent / "goldens" / "metrics_start.txt"


def make(fake: dict[str, Any] | None = None, /, **fields: Any) -> SimMetrics:
    extra: dict[str, Any] = {"served-model-name": ("m",), **fields}
    if fake is not None:
        extra["fake-metrics"] = fake
    return SimMetrics(SimConfig(model="m", **extra), lambda: START)


def samples(m: SimMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every exposed sample keyed by (name, labels)."""
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(m: SimMetrics, name: str, **labels: str) -> float | None:
    return samples(m).get((name, frozenset(labels.items())))


def names(m: SimMetrics) -> set[str]:
    return {name for name, _ in samples(m)}


def test_build_125_buckets() -> None:
    assert build_125_buckets(1024) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    assert build_125_buckets(5) == [1, 2, 5]
    assert build_125_buckets(2000) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
    assert build_125_buckets(1) == [1]
    assert build_125_buckets(0) == []


def test_render_keeps_vllm_colon_names_in_classic_format() -> None:
    text = make().render().decode()
    assert 'vllm:num_requests_running{model_name="m"} 0' in text
    assert "vllm_" not in text
    assert "_created" not in text
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    assert SimMetrics.CONTENT_TYPE == CONTENT_TYPE


def test_start_has_gauges_at_zero_and_no_token_counter_or_histogram_series() -> None:
    m = make()
    assert value(m, "vllm:num_requests_running", model_name="m") == 0
    assert value(m, "vllm:num_requests_waiting", model_name="m") == 0
    assert value(m, "vllm:kv_cache_usage_perc", model_name="m") == 0
    text = m.render().decode()
    assert "vllm:time_to_first_token_seconds" not in text
    assert "vllm:prompt_tokens_total" not in text


def test_success_counter_has_every_finish_reason_at_zero_from_start() -> None:
    m = SimMetrics(SimConfig(model="base", **{"served-model-name": ("a", "b")}), lambda: START)
    series = {
        dict(labels)["finish_reason"]: v
        for (name, labels), v in samples(m).items()
        if name == "vllm:request_success_total"
    }
    assert series == dict.fromkeys(FINISH_REASONS, 0.0)
    assert set(FINISH_REASONS) == {
        "stop",
        "length",
        "tool_calls",
        "remote_decode",
        "cache_threshold",
    }
    m.record_success(1, 1, None, "stop")
    assert value(m, "vllm:request_success_total", finish_reason="stop", model_name="a") == 1
    assert value(m, "vllm:request_success_total", finish_reason="length", model_name="a") == 0


def test_fake_metrics_without_success_totals_keep_the_zero_series() -> None:
    m = make({"running-requests": 3})
    for reason in FINISH_REASONS:
        assert value(m, "vllm:request_success_total", finish_reason=reason, model_name="m") == 0


def test_model_name_label_is_first_served_name() -> None:
    m = SimMetrics(SimConfig(model="base", **{"served-model-name": ("a", "b")}), lambda: START)
    m.set_running(2)
    assert value(m, "vllm:num_requests_running", model_name="a") == 2


def test_sim_acc_35_cache_config_and_lora_info() -> None:
    m = make()
    cache = 'vllm:cache_config_info{block_size="16",num_gpu_blocks="1024"} 1'
    assert cache in m.render().decode()
    lora = {"max_lora": "1", "running_lora_adapters": "", "waiting_lora_adapters": ""}
    assert value(m, "vllm:lora_requests_info", **lora) == int(START)


def test_cache_config_follows_flags() -> None:
    m = make(**{"block-size": 32, "kv-cache-size": 64})
    assert value(m, "vllm:cache_config_info", block_size="32", num_gpu_blocks="64") == 1


def test_lora_info_adds_a_series_per_adapter_set() -> None:
    clock = [START]
    m = SimMetrics(
        SimConfig(model="m", **{"max-loras": 2}), lambda: clock[0]
    )  # wall moves on between updates
    clock[0] = START + 10
    m.lora_info(["a", "b"], ["c"])
    new = {"max_lora": "2", "running_lora_adapters": "a,b", "waiting_lora_adapters": "c"}
    old = {"max_lora": "2", "running_lora_adapters": "", "waiting_lora_adapters": ""}
    assert value(m, "vllm:lora_requests_info", **new) == int(START) + 10
    assert value(m, "vllm:lora_requests_info", **old) == int(START)


def test_sim_acc_33_gauges_follow_set_calls() -> None:
    m = make()
    m.set_running(1)
    m.set_waiting(1)
    m.set_kv_usage(0.25)
    assert value(m, "vllm:num_requests_running", model_name="m") == 1
    assert value(m, "vllm:num_requests_waiting", model_name="m") == 1
    assert value(m, "vllm:kv_cache_usage_perc", model_name="m") == 0.25


def test_sim_acc_34_success_counters() -> None:
    m = make()
    m.record_success(prompt_tokens=7, completion_tokens=3, max_tokens=None, finish_reason="stop")
    text = m.render().decode()
    assert 'vllm:request_success_total{finish_reason="stop",model_name="m"} 1' in text
    assert value(m, "vllm:prompt_tokens_total", model_name="m") == 7
    assert value(m, "vllm:generation_tokens_total", model_name="m") == 3
    assert value(m, "vllm:request_prompt_tokens_bucket", le="10", model_name="m") == 1
    assert value(m, "vllm:request_prompt_tokens_bucket", le="5", model_name="m") == 0
    assert value(m, "vllm:request_generation_tokens_sum", model_name="m") == 3
    assert value(m, "vllm:max_num_generation_tokens_count", model_name="m") == 1
    assert "vllm:request_params_max_tokens" not in text
    m.record_success(prompt_tokens=1, completion_tokens=5, max_tokens=5, finish_reason="length")
    assert value(m, "vllm:request_params_max_tokens_sum", model_name="m") == 5
    assert value(m, "vllm:request_success_total", finish_reason="length", model_name="m") == 1
    assert value(m, "vllm:request_success_total", finish_reason="stop", model_name="m") == 1


def test_timing_observations() -> None:
    m = make()
    m.observe_ttft(0.003)
    m.observe_itl(0.02)
    m.observe_itl(0.02)
    for observe in (
        m.observe_e2e,
        m.observe_queue_time,
        m.observe_inference_time,
        m.observe_prefill_time,
        m.observe_decode_time,
    ):
        observe(0.4)
    assert value(m, "vllm:time_to_first_token_seconds_bucket", le="0.005", model_name="m") == 1
    assert value(m, "vllm:time_to_first_token_seconds_bucket", le="0.001", model_name="m") == 0
    assert value(m, "vllm:time_per_output_token_seconds_count", model_name="m") == 2
    assert value(m, "vllm:inter_token_latency_seconds_bucket", le="0.025", model_name="m") == 2
    for name in ("e2e_request_latency", "request_queue_time", "request_inference_time"):
        assert value(m, f"vllm:{name}_seconds_bucket", le="0.5", model_name="m") == 1
    for name in ("request_prefill_time", "request_decode_time"):
        assert value(m, f"vllm:{name}_seconds_bucket", le="0.3", model_name="m") == 0
        assert value(m, f"vllm:{name}_seconds_count", model_name="m") == 1


def test_sim_acc_36_fake_gauges() -> None:
    m = make({"running-requests": 10, "waiting-requests": 30, "kv-cache-usage": 0.4})
    m.set_running(1)
    m.set_waiting(2)
    m.set_kv_usage(0.9)
    m.lora_info(["a"], [])
    assert value(m, "vllm:num_requests_running", model_name="m") == 10
    assert value(m, "vllm:num_requests_waiting", model_name="m") == 30
    assert value(m, "vllm:kv_cache_usage_perc", model_name="m") == 0.4
    assert 'running_lora_adapters="a"' not in m.render().decode()


def test_sim_acc_37_fake_ttft_buckets() -> None:
    m = make({"ttft-buckets-values": [1, 2]})
    m.observe_ttft(0.0005)  # real timing observations are suppressed
    assert value(m, "vllm:time_to_first_token_seconds_count", model_name="m") == 3
    assert value(m, "vllm:time_to_first_token_seconds_bucket", le="0.001", model_name="m") == 1
    assert value(m, "vllm:time_to_first_token_seconds_bucket", le="0.005", model_name="m") == 3


def test_fake_tpot_fills_both_token_delay_histograms_and_overflow_bucket() -> None:
    counts = [0] * 19 + [4]  # only the (80, +Inf) bucket
    m = make({"tpot-buckets-values": counts})
    for name in ("vllm:time_per_output_token_seconds", "vllm:inter_token_latency_seconds"):
        assert value(m, f"{name}_bucket", le="80", model_name="m") == 0
        assert value(m, f"{name}_bucket", le="+Inf", model_name="m") == 4
        assert value(m, f"{name}_sum", model_name="m") == 4 * 81


def test_fake_latency_histograms() -> None:
    keys = {
        "e2erl-buckets-values": "vllm:e2e_request_latency_seconds",
        "queue-time-buckets-values": "vllm:request_queue_time_seconds",
        "inf-time-buckets-values": "vllm:request_inference_time_seconds",
        "prefill-time-buckets-values": "vllm:request_prefill_time_seconds",
        "decode-time-buckets-values": "vllm:request_decode_time_seconds",
    }
    m = make({key: [0, 5] for key in keys})
    for name in keys.values():
        assert value(m, f"{name}_bucket", le="0.3", model_name="m") == 0
        assert value(m, f"{name}_bucket", le="0.5", model_name="m") == 5


def test_fake_token_histograms_each_fill_their_own_name() -> None:
    m = make(
        {
            "request-generation-tokens": [1],
            "request-params-max-tokens": [0, 2],
            "request-max-generation-tokens": [0, 0, 3],
        }
    )
    assert value(m, "vllm:request_generation_tokens_count", model_name="m") == 1
    assert value(m, "vllm:request_params_max_tokens_count", model_name="m") == 2
    assert value(m, "vllm:request_params_max_tokens_sum", model_name="m") == 4
    assert value(m, "vllm:max_num_generation_tokens_sum", model_name="m") == 15


def test_fake_token_counters_estimate_or_explicit() -> None:
    m = make({"request-prompt-tokens": [1, 2], "request-generation-tokens": [0, 0, 2]})
    # (0,1] midpoint 0.5 -> 0; (1,2] midpoint 1.5 x 2 -> 3; (2,5] midpoint 3.5 x 2 -> 7
    assert value(m, "vllm:prompt_tokens_total", model_name="m") == 3
    assert value(m, "vllm:generation_tokens_total", model_name="m") == 7
    m = make({"request-prompt-tokens": [1], "total-prompt-tokens": 100})
    assert value(m, "vllm:prompt_tokens_total", model_name="m") == 100
    m.record_success(5, 1, None, "stop")  # counters still count real traffic
    assert value(m, "vllm:prompt_tokens_total", model_name="m") == 105


def test_fake_total_without_histogram_leaves_counter_empty() -> None:
    m = make({"total-prompt-tokens": 100})
    assert "vllm:prompt_tokens_total" not in names(m)


def test_estimate_token_total_overflow_bucket() -> None:
    assert estimate_token_total([0, 0, 0, 4], [1.0, 2.0, 5.0]) == 30  # (5, 10] midpoint 7.5
    assert estimate_token_total([], [1.0]) == 0


def test_fake_request_success_total_adds_missing_reasons_as_zero() -> None:
    m = make({"request-success-total": {"stop": 5, "tool_calls": 2}})
    got = {
        reason: value(m, "vllm:request_success_total", finish_reason=reason, model_name="m")
        for reason in ("stop", "length", "tool_calls", "remote_decode", "cache_threshold")
    }
    assert got == {
        "stop": 5,
        "length": 0,
        "tool_calls": 2,
        "remote_decode": 0,
        "cache_threshold": 0,
    }


def test_fake_loras_replace_the_initial_series() -> None:
    fake = {"loras": [{"running": "a,b", "waiting": "c", "timestamp": 123.5}]}
    m = make(fake)
    labels = {"max_lora": "1", "running_lora_adapters": "a,b", "waiting_lora_adapters": "c"}
    assert value(m, "vllm:lora_requests_info", **labels) == 123.5
    empty = {"max_lora": "1", "running_lora_adapters": "", "waiting_lora_adapters": ""}
    assert value(m, "vllm:lora_requests_info", **empty) is None


def golden_text() -> str:
    lines = ["# metric table: name type [labels] buckets"]
    for spec in metric_specs(1024):
        buckets = ",".join(f"{b:g}" for b in spec.buckets)
        lines.append(f"{spec.name} {spec.kind} [{','.join(spec.labels)}] {buckets}".rstrip())
    lines.append("# render() at start")
    return "\n".join(lines) + "\n" + make().render().decode()


def test_metrics_at_start_match_golden() -> None:
    text = golden_text()
    if os.environ.get("UPDATE_GOLDENS") == "1":
        GOLDEN.write_text(text)
        pytest.fail(f"rewrote {GOLDEN.name}; unset UPDATE_GOLDENS and re-run")
    assert text == GOLDEN.read_text()


def test_exposed_buckets_and_labels_match_the_metric_table() -> None:
    m = make()
    m.observe_ttft(1)
    m.observe_itl(1)
    for observe in (
        m.observe_e2e,
        m.observe_queue_time,
        m.observe_inference_time,
        m.observe_prefill_time,
        m.observe_decode_time,
    ):
        observe(1)
    m.record_success(1, 1, 1, "stop")
    exposed = samples(m)
    for spec in metric_specs(1024):
        if spec.kind == "histogram":
            les = {dict(labels)["le"] for name, labels in exposed if name == f"{spec.name}_bucket"}
            assert les == {*(go_float(b) for b in spec.buckets), "+Inf"}, spec.name
        else:
            label_sets = [set(dict(lb)) for name, lb in exposed if name == spec.name]
            assert label_sets and all(ls == set(spec.labels) for ls in label_sets), spec.name
