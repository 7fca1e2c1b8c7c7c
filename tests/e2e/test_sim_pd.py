"""P/D disaggregation across two simulator processes, chained as llm-d's routing sidecar does.

The sidecar sends the request first to the prefill instance with
`kv_transfer_params.do_remote_decode: true`, `max_tokens: 1` and no streaming, then
the original request, carrying the `kv_transfer_params` the prefiller returned, to
the decode instance. The prefiller pays the time to first token; the decoder's first
token costs only the KV transfer. Timings are read from each simulator's own TTFT
histogram, not from the wall clock.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import SimProcess

pytestmark = pytest.mark.e2e

StartSim = Callable[..., SimProcess]
LATENCIES = ("--time-to-first-token", "400ms", "--kv-cache-transfer-latency", "50ms")


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def _sidecar(prefill: SimProcess, decode: SimProcess, request: dict[str, Any]) -> list[Any]:
    """What the routing sidecar does for one chat request; returns the decoder's chunks."""
    prefill_request = {
        **request,
        "stream": False,
        "max_tokens": 1,
        "kv_transfer_params": {
            "do_remote_decode": True,
            "do_remote_prefill": False,
            "remote_engine_id": None,
            "remote_block_ids": None,
            "remote_host": None,
            "remote_port": None,
        },
    }
    prefill_request.pop("stream_options", None)
    prefilled = _post(prefill.base_url + "/v1/chat/completions", prefill_request)
    assert prefilled["choices"][0]["finish_reason"] == "remote_decode"
    assert prefilled["usage"]["completion_tokens"] == 1
    params = prefilled["kv_transfer_params"]
    assert params["do_remote_prefill"] is True and params["do_remote_decode"] is False
    assert params["remote_port"] == 1234
    client = OpenAI(base_url=decode.base_url + "/v1", api_key="unused", max_retries=0)
    known = {k: v for k, v in request.items() if k != "ignore_eos"}
    extra = {"kv_transfer_params": params, "ignore_eos": request.get("ignore_eos", False)}
    stream = client.chat.completions.create(**known, extra_body=extra)
    chunks = list(stream)
    client.close()
    return chunks


def _ttft(sim: SimProcess) -> dict[str, float]:
    """The TTFT histogram's samples: `count`, `sum` and cumulative buckets by `le`."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(sim.metrics()):
        if family.name != "vllm:time_to_first_token_seconds":
            continue
        for s in family.samples:
            key = s.labels.get("le", s.name.rsplit("_", 1)[-1])
            out[key] = float(s.value)
    return out


def _successes(sim: SimProcess) -> dict[str, float]:
    for family in text_string_to_metric_families(sim.metrics()):
        if family.name == "vllm:request_success":
            return {s.labels["finish_reason"]: float(s.value) for s in family.samples}
    return {}


def test_prefill_then_decode_across_two_processes(start_sim: StartSim) -> None:
    prefill = start_sim("--model", "m", *LATENCIES)
    decode = start_sim("--model", "m", *LATENCIES, "--inter-token-latency", "1ms")
    request = {
        "model": "m",
        "messages": [{"role": "user", "content": "Summarise the plot of Hamlet."}],
        "max_tokens": 5,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = _sidecar(prefill, decode, request)
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert reasons[-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert all(c.model_extra and c.model_extra["kv_transfer_params"] is None for c in chunks)

    # the prefiller paid the time to first token (0.4 s) ...
    p = _ttft(prefill)
    assert p["count"] == 1 and p["sum"] == pytest.approx(0.4)
    assert p["0.25"] == 0 and p["0.5"] == 1
    assert _successes(prefill).get("remote_decode") == 1
    # ... the decoder only the KV transfer (0.05 s), an order of magnitude less
    d = _ttft(decode)
    assert d["count"] == 1 and d["sum"] == pytest.approx(0.05)
    assert d["0.04"] == 0 and d["0.06"] == 1
    assert _successes(decode).get("length") == 1

    # the same decoder without P/D parameters pays the full time to first token
    OpenAI(base_url=decode.base_url + "/v1", api_key="unused", max_retries=0).completions.create(
        model="m", prompt="Hello", max_tokens=2
    )
    d = _ttft(decode)
    assert d["count"] == 2 and d["sum"] == pytest.approx(0.45)


def test_prefiller_refuses_a_streaming_prefill(start_sim: StartSim) -> None:
    prefill = start_sim("--model", "m")
    req = urllib.request.Request(
        prefill.base_url + "/v1/chat/completions",
        data=json.dumps(
            {
                "model": "m",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
                "kv_transfer_params": {"do_remote_decode": True},
            }
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 400
    assert json.loads(exc.value.read())["error"]["message"] == "Prefill does not support streaming"
