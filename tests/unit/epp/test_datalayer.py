"""The data layer: `metrics-data-source`, `model-server-protocol-metrics` (§4.2, check 8)."""

from __future__ import annotations

import random

import pytest

from pyllmd.core.clock import VirtualClock
from pyllmd.core.errors import ConfigError
from pyllmd.epp.config.loader import load_config_text
from pyllmd.epp.options import load_options
from pyllmd.epp.run import build_epp

STATIC = (
    "--static-endpoints=10.0.0.1:8000,10.0.0.2:8000;inference.networking.k8s.io/engine-type=sglang"
)
SGLANG_ONLY = """
featureGates: [dataLayer]
plugins:
- type: metrics-data-source
  parameters: {scheme: http, path: /stats}
- type: model-server-protocol-metrics
  parameters:
    queueRequestsSpec: sglang:num_queue_reqs
    runningRequestsSpec: sglang:num_running_reqs
    kvUsageSpec: sglang:token_usage
    loraSpec: ""
    cacheInfoSpec: ""
data:
  sources:
  - pluginRef: metrics-data-source
    extractors:
    - pluginRef: model-server-protocol-metrics
"""
MIXED = """
featureGates: [dataLayer]
plugins:
- type: metrics-data-source
- type: model-server-protocol-metrics
  parameters:
    engineConfigs:
    - name: triton
      queuedRequestsSpec: nv_trt_llm_request_metrics{request_type=waiting}
data:
  sources:
  - pluginRef: metrics-data-source
    extractors:
    - pluginRef: model-server-protocol-metrics
"""
BODY = """\
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs 7
sglang:num_running_reqs 3
sglang:token_usage 0.25
vllm:num_requests_waiting 2
vllm:num_requests_running 1
vllm:kv_cache_usage_perc 0.5
nv_trt_llm_request_metrics{request_type="waiting"} 9
nv_trt_llm_request_metrics{request_type="scheduled"} 4
"""


def build(config: str, static: str = STATIC) -> tuple[object, list[str]]:
    urls: list[str] = []

    async def fetch(url: str) -> str:
        urls.append(url)
        return BODY

    epp = build_epp(
        load_options([static, "--metrics-endpoint-auth=false"], {}),
        load_config_text(config),
        clock=VirtualClock(),
        rng=random.Random(1),
        fetch=fetch,
    )
    return epp, urls


def queues(epp: object) -> dict[str, tuple[int, int, float]]:
    snapshot = epp.datastore.snapshot_tuple()  # type: ignore[attr-defined]
    return {
        e.address: (
            e.metrics.waiting_queue_size,
            e.metrics.running_requests_size,
            e.metrics.kv_cache_usage_percent,
        )
        for e in snapshot
    }


async def scrape_all(epp: object) -> None:
    for e in epp.datastore.snapshot_tuple():  # type: ignore[attr-defined]
        assert await epp.scraper.scrape_once(e.namespaced_name)  # type: ignore[attr-defined]


async def test_epp_acc_08_config_file_mapping_scrapes_sglang_series() -> None:
    epp, urls = build(SGLANG_ONLY)
    await scrape_all(epp)
    assert queues(epp) == {"10.0.0.1": (7, 3, 0.25), "10.0.0.2": (7, 3, 0.25)}
    assert sorted(urls) == ["http://10.0.0.1:8000/stats", "http://10.0.0.2:8000/stats"]


async def test_engine_configs_pick_the_mapping_by_pod_label() -> None:
    triton = STATIC.replace("=sglang", "=triton")
    epp, _ = build(MIXED, triton)
    await scrape_all(epp)
    # 10.0.0.1 has no label: default engine vllm; 10.0.0.2 is triton (queue only).
    assert queues(epp)["10.0.0.1"] == (2, 1, 0.5)
    assert queues(epp)["10.0.0.2"][0] == 9
    epp, _ = build(MIXED)  # the built-in sglang profile stays available
    await scrape_all(epp)
    assert queues(epp)["10.0.0.2"] == (7, 3, 0.25)


async def test_declared_extractor_applies_without_the_gate() -> None:
    config = (
        "plugins:\n- type: model-server-protocol-metrics\n  parameters: {defaultEngine: sglang}\n"
    )
    epp, _ = build(config, "--static-endpoints=10.0.0.1:8000")
    await scrape_all(epp)
    assert queues(epp)["10.0.0.1"] == (7, 3, 0.25)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "plugins:\n- type: metrics-data-source\n- type: model-server-protocol-metrics\n"
            "data:\n  sources:\n  - pluginRef: metrics-data-source\n"
            "    extractors:\n    - pluginRef: model-server-protocol-metrics\n",
            "disallowed Extractor model-server-protocol-metrics is configured for source "
            "metrics-data-source",
        ),
        (
            "featureGates: [dataLayer]\nplugins:\n- type: model-server-protocol-metrics\n",
            "the Datalayer has been enabled. You must specify the Data section",
        ),
        (
            "featureGates: [dataLayer]\nplugins:\n- type: metrics-data-source\n"
            "  parameters: {scheme: ftp}\ndata:\n  sources:\n  - pluginRef: metrics-data-source\n",
            "unsupported scheme: ftp",
        ),
        (
            "featureGates: [dataLayer]\nplugins:\n- type: model-server-protocol-metrics\n"
            "  parameters: {defaultEngine: tgi}\n"
            "data:\n  sources:\n  - pluginRef: nowhere\n",
            "defaultEngine 'tgi' is not one of: sglang, vllm",
        ),
        (
            "featureGates: [dataLayer]\nplugins:\n- type: model-server-protocol-metrics\n"
            "  parameters: {kvUsageSpec: 'a{b'}\n"
            "data:\n  sources:\n  - pluginRef: model-server-protocol-metrics\n",
            "invalid metric spec",
        ),
        (
            "featureGates: [dataLayer]\nplugins:\n- type: metrics-data-source\n"
            "data:\n  sources:\n  - pluginRef: nowhere\n",
            "data source 'nowhere' is not a configured plugin",
        ),
    ],
)
def test_data_layer_config_errors_are_one_line(config: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config_text(config)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


MODELS_CONFIG = """
featureGates: [dataLayer]
plugins:
- type: metrics-data-source
- type: model-server-protocol-metrics
- type: models-data-source
  parameters: {path: /v1/models}
- type: model-server-protocol-models
data:
  sources:
  - pluginRef: metrics-data-source
    extractors:
    - pluginRef: model-server-protocol-metrics
  - pluginRef: models-data-source
    extractors:
    - pluginRef: model-server-protocol-models
"""
MODELS_BODY = (
    '{"object":"list","data":[{"id":"m","object":"model","parent":null},'
    '{"id":"l1","object":"model","parent":"m"}]}'
)


async def test_models_data_source_records_served_models() -> None:
    async def fetch(url: str) -> str:
        return MODELS_BODY if url.endswith("/v1/models") else BODY

    epp = build_epp(
        load_options(["--static-endpoints=10.0.0.1:8000", "--metrics-endpoint-auth=false"], {}),
        load_config_text(MODELS_CONFIG),
        clock=VirtualClock(),
        rng=random.Random(1),
        fetch=fetch,
    )
    assert epp.models_scraper is not None
    assert epp.models_scraper.url(epp.datastore.snapshot()[0]) == "http://10.0.0.1:8000/v1/models"
    key = epp.datastore.snapshot()[0].namespaced_name
    assert await epp.models_scraper.scrape_once(key)
    assert await epp.scraper.scrape_once(key)  # a metrics scrape keeps the models
    endpoint = epp.datastore.get(key)
    assert endpoint is not None
    assert endpoint.metrics.served_models == (("m", ""), ("l1", "m"))
    assert endpoint.metrics.waiting_queue_size == 2


def test_models_extraction_and_parameters() -> None:
    from pyllmd.epp.plugins.datalayer.model_server_protocol_models import parse_models

    assert parse_models(MODELS_BODY) == (("m", ""), ("l1", "m"))
    for bad in ("{", '{"data": 3}', "[]"):
        with pytest.raises(ValueError):
            parse_models(bad)
    with pytest.raises(ConfigError, match="unsupported scheme: ftp"):
        load_config_text("plugins:\n- type: models-data-source\n  parameters: {scheme: ftp}\n")
    ungated = (
        "plugins:\n- type: models-data-source\n- type: model-server-protocol-models\n"
        "data:\n  sources:\n  - pluginRef: models-data-source\n"
        "    extractors:\n    - pluginRef: model-server-protocol-models\n"
    )
    assert load_config_text(ungated).models_source is None  # only under the data-layer gate
