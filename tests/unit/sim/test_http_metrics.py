"""Metrics and failure injection as a client and a scraper see them (checks 35-37, 46, 47)."""

from __future__ import annotations

import json

import openai
import pytest

from .conftest import SimFactory, metric_value


async def test_sim_acc_35_metrics_at_start(start_sim: SimFactory) -> None:
    sim = await start_sim()
    async with sim.http.get(
        sim.url + "/metrics", headers={"Accept": "application/openmetrics-text"}
    ) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await r.text()
    assert metric_value(text, "vllm:cache_config_info", block_size="16", num_gpu_blocks="1024") == 1
    assert (
        metric_value(
            text,
            "vllm:lora_requests_info",
            max_lora="1",
            running_lora_adapters="",
            waiting_lora_adapters="",
        )
        is not None
    )
    assert 'vllm:num_requests_running{model_name="m"} 0\n' in text


async def test_fresh_metrics_have_every_success_series_at_zero(start_sim: SimFactory) -> None:
    """A scraper sees `request_success_total` at 0 before the first request, so the
    first requests of a fresh pod count in `increase()`."""
    sim = await start_sim("--served-model-name", "alias", "other", "--mode", "echo")
    text = await sim.metrics()
    for reason in ("stop", "length", "tool_calls", "remote_decode", "cache_threshold"):
        got = metric_value(
            text, "vllm:request_success_total", finish_reason=reason, model_name="alias"
        )
        assert got == 0, reason
    assert 'model_name="other"' not in text
    await sim.client.completions.create(model="other", prompt="hi")
    text = await sim.metrics()
    assert (
        metric_value(text, "vllm:request_success_total", finish_reason="stop", model_name="alias")
        == 1
    )


async def test_sim_acc_36_fake_gauges_ignore_traffic(start_sim: SimFactory) -> None:
    fake = {"running-requests": 10, "waiting-requests": 30, "kv-cache-usage": 0.4}
    sim = await start_sim("--fake-metrics", json.dumps(fake))
    for _ in range(3):
        await sim.client.completions.create(model="m", prompt="hi", max_tokens=2)
    text = await sim.metrics()
    assert metric_value(text, "vllm:num_requests_running", model_name="m") == 10
    assert metric_value(text, "vllm:num_requests_waiting", model_name="m") == 30
    assert metric_value(text, "vllm:kv_cache_usage_perc", model_name="m") == 0.4


async def test_sim_acc_37_fake_ttft_buckets(start_sim: SimFactory) -> None:
    sim = await start_sim("--fake-metrics", json.dumps({"ttft-buckets-values": [1, 2]}))
    text = await sim.metrics()
    name = "vllm:time_to_first_token_seconds"
    assert metric_value(text, name + "_count", model_name="m") == 3
    assert metric_value(text, name + "_bucket", model_name="m", le="0.001") == 1
    assert metric_value(text, name + "_bucket", model_name="m", le="0.005") == 3


async def test_sim_acc_46_injected_rate_limit(start_sim: SimFactory) -> None:
    sim = await start_sim("--failure-injection-rate", "100", "--failure-types", "rate_limit")
    for _ in range(5):
        with pytest.raises(openai.RateLimitError) as e:
            await sim.client.completions.create(model="m", prompt="hi")
        body = e.value.body
        assert isinstance(body, dict)
        assert body["message"].startswith("Rate limit reached for m in organization org-xxx")
        assert body["type"] == "RateLimitError"
    models = await sim.client.models.list()
    assert [m.id for m in models.data] == ["m"]


async def test_sim_acc_47_injected_invalid_api_key(start_sim: SimFactory) -> None:
    sim = await start_sim("--failure-injection-rate", "100", "--failure-types", "invalid_api_key")
    r = await sim.post("/v1/chat/completions", {"model": "m", "messages": []})
    assert r.status == 401
    assert (await r.json())["error"]["message"] == "Incorrect API key provided."


async def test_injected_failures_are_not_counted(start_sim: SimFactory) -> None:
    sim = await start_sim("--failure-injection-rate", "100")
    statuses = set()
    for _ in range(60):
        r = await sim.post("/v1/completions", {"model": "m", "prompt": "hi"})
        statuses.add(r.status)
    assert statuses == {400, 401, 404, 429, 503}
    text = await sim.metrics()
    for reason in ("stop", "length"):
        got = metric_value(text, "vllm:request_success_total", finish_reason=reason, model_name="m")
        assert got == 0, reason


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("itl", ["0s", "1ms"])
async def test_every_inter_token_delay_is_observed(
    start_sim: SimFactory, stream: bool, itl: str
) -> None:
    sim = await start_sim("--inter-token-latency", itl)
    body = {"model": "m", "prompt": "hi", "max_tokens": 8, "ignore_eos": True, "stream": stream}
    for _ in range(2):
        r = await sim.post("/v1/completions", body)
        assert r.status == 200
    text = await sim.metrics()
    for name in ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"):
        assert metric_value(text, name + "_count", model_name="m") == 14
        expected_sum = 14 * (0.001 if itl == "1ms" else 0.0)
        assert metric_value(text, name + "_sum", model_name="m") == pytest.approx(expected_sum)
