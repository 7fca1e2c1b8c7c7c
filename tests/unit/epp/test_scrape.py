"""Metrics scraping (spec §4.1, acceptance checks 58-59) and the pool gauges (§4.3)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from pyllmd.core.clock import VirtualClock
from pyllmd.core.logging import level_for_verbosity
from pyllmd.core.promtext import parse_samples
from pyllmd.epp.datalayer.scrape import (
    HttpFetcher,
    ScrapeError,
    Scraper,
    next_delay,
    reachability_change,
)
from pyllmd.epp.datastore import Datastore, endpoints_from_static
from pyllmd.epp.metrics import is_stale, pool_gauges
from pyllmd.epp.options import StaticEndpoint
from pyllmd.epp.plugins.datalayer.mapping import (
    DEFAULT_VLLM_MAPPING,
    MetricMapping,
    MetricSpec,
    extract_metrics,
    parse_metric_spec,
)
from pyllmd.epp.scheduling.types import Endpoint, EndpointMetrics

SIM_METRICS = """\
# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 3
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} {waiting}
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="m"} 0.25
# HELP vllm:lora_requests_info Running stats on lora requests.
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{max_lora="4",running_lora_adapters="a,b",waiting_lora_adapters=""} 1.7e+09
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",num_gpu_blocks="1000"} 1
"""


def sim_text(waiting: int = 5) -> str:
    return SIM_METRICS.replace("{waiting}", str(waiting))


# ---------------------------------------------------------------- metric specs


def test_metric_spec_parsing() -> None:
    assert parse_metric_spec("") is None
    assert parse_metric_spec(" vllm:x ") == MetricSpec("vllm:x")
    spec = parse_metric_spec("m{ a = 1 ,b=2}")
    assert spec == MetricSpec("m", {"a": "1", "b": "2"})


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("m{a=1", "invalid metric spec string"),
        ("m}", "invalid metric spec string"),
        ("m{}", "invalid metric spec string"),
        ("m{a}", "invalid label pair"),
        ("m{a=1=2}", "invalid label pair"),
        ("m{a= }", "empty label name or value"),
        ("{a=1}", "empty metric name"),
    ],
)
def test_metric_spec_errors(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_metric_spec(text)


# ---------------------------------------------------------------- extraction


def test_extract_default_vllm_mapping() -> None:
    m = extract_metrics(parse_samples(sim_text()), DEFAULT_VLLM_MAPPING, EndpointMetrics(), 42.0)
    assert (m.waiting_queue_size, m.running_requests_size) == (5, 3)
    assert m.kv_cache_usage_percent == 0.25
    assert m.update_time == 42.0


def test_epp_acc_58_lora_requests_info() -> None:
    text = (
        'vllm:lora_requests_info{running_lora_adapters="a,b",waiting_lora_adapters="",'
        'max_lora="4"} 1.7e9\n'
    )
    m = extract_metrics(parse_samples(text), DEFAULT_VLLM_MAPPING, EndpointMetrics(), 1.0)
    assert m.active_models == {"a", "b"}
    assert m.waiting_models == frozenset()
    assert m.max_active_models == 4
    two = (
        'vllm:lora_requests_info{running_lora_adapters="old",waiting_lora_adapters="w",'
        'max_lora="2"} 1.6e9\n'
        'vllm:lora_requests_info{running_lora_adapters="new",waiting_lora_adapters="x, y",'
        'max_lora="8"} 1.8e9\n'
        'vllm:lora_requests_info{running_lora_adapters="older",waiting_lora_adapters="",'
        'max_lora="1"} 1.5e9\n'
    )
    m2 = extract_metrics(parse_samples(two), DEFAULT_VLLM_MAPPING, EndpointMetrics(), 1.0)
    assert (m2.active_models, m2.waiting_models, m2.max_active_models) == (
        frozenset({"new"}),
        frozenset({"x", "y"}),
        8,
    )


def test_epp_acc_59_cache_config_info() -> None:
    text = 'vllm:cache_config_info{block_size="16",num_gpu_blocks="1000"} 1\n'
    m = extract_metrics(parse_samples(text), DEFAULT_VLLM_MAPPING, EndpointMetrics(), 1.0)
    assert (m.cache_block_size, m.cache_num_gpu_blocks) == (16, 1000)


def test_missing_metrics_keep_previous_values() -> None:
    prev = EndpointMetrics(waiting_queue_size=9, kv_cache_usage_percent=0.5, max_active_models=3)
    text = 'vllm:num_requests_running 2\nvllm:lora_requests_info{max_lora="x"} 1\n'
    m = extract_metrics(parse_samples(text), DEFAULT_VLLM_MAPPING, prev, 7.0)
    assert (m.waiting_queue_size, m.running_requests_size) == (9, 2)
    assert m.kv_cache_usage_percent == 0.5
    assert m.max_active_models == 3  # unparsable label keeps the old value
    assert m.update_time == 7.0


def test_label_constrained_mapping_sglang_style() -> None:
    mapping = MetricMapping.from_specs(
        "sglang:num_queue_reqs{engine=b}", "sglang:num_running_reqs", "sglang:token_usage"
    )
    text = (
        'sglang:num_queue_reqs{engine="a"} 1\n'
        'sglang:num_queue_reqs{engine="b"} 11\n'
        "sglang:num_running_reqs 4\n"
        "sglang:token_usage 0.5\n"
    )
    m = extract_metrics(parse_samples(text), mapping, EndpointMetrics(), 1.0)
    assert (m.waiting_queue_size, m.running_requests_size, m.kv_cache_usage_percent) == (
        11,
        4,
        0.5,
    )


# ---------------------------------------------------------------- timing rules


def test_staleness_rule() -> None:
    m = EndpointMetrics(update_time=10.0)
    assert not is_stale(m, 12.0, 2.0)
    assert is_stale(m, 12.001, 2.0)
    assert is_stale(EndpointMetrics(), 1000.0, 2.0)  # never scraped


def test_jitter_and_backoff_bounds() -> None:
    rng = random.Random(1)
    period = 0.05
    for _ in range(500):
        assert 0.045 <= next_delay(period, 0, rng) <= 0.055
    for failures, base in ((1, 0.1), (2, 0.2), (3, 0.4), (5, 1.6), (6, 2.0), (60, 2.0)):
        for _ in range(100):
            d = next_delay(period, failures, rng)
            assert base * 0.9 - 1e-12 <= d <= base * 1.1 + 1e-12, (failures, d)
    # A period above the cap is never shortened by backoff.
    assert 4.5 <= next_delay(5.0, 3, rng) <= 5.5
    delays = {round(next_delay(period, 0, rng), 6) for _ in range(50)}
    assert len(delays) > 10  # jitter actually spreads


def ep(name: str, queue: int, kv: float, t: float) -> Endpoint:
    metrics = EndpointMetrics(waiting_queue_size=queue, kv_cache_usage_percent=kv, update_time=t)
    return Endpoint(name, "ns", name, "10.0.0.1", 8000, metrics=metrics)


def test_pool_gauges_use_fresh_endpoints_only() -> None:
    eps = [ep("a", 2, 0.2, 9.5), ep("b", 3, 0.6, 10.0), ep("c", 100, 1.0, 1.0)]
    g = pool_gauges(eps, now=10.0, staleness=2.0)
    assert g.ready_pods == 2
    assert g.average_queue_size == 2.5
    assert g.average_kv_cache_utilization == pytest.approx(0.4)
    empty = pool_gauges([ep("c", 1, 1.0, 0.0)], now=10.0, staleness=2.0)
    assert (empty.ready_pods, empty.average_queue_size) == (0, 0.0)


# ---------------------------------------------------------------- the loop (fake fetch)


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


def static_store(*ports: int) -> Datastore:
    store = Datastore()
    store.set_static(endpoints_from_static([StaticEndpoint("127.0.0.1", p) for p in ports], "ns"))
    return store


async def test_loop_period_backoff_and_recovery_in_virtual_time() -> None:
    clock = VirtualClock(start=100.0)
    store = static_store(8000)
    calls: list[float] = []
    failing = {"on": False}

    async def fetch(url: str) -> str:
        assert url == "http://127.0.0.1:8000/metrics"
        calls.append(clock.now())
        if failing["on"]:
            raise ScrapeError("down")
        return sim_text(len(calls))

    scraper = Scraper(store, clock, interval=0.05, fetch=fetch, rng=random.Random(7))
    scraper.start()
    await settle()
    key = "ns/127-0-0-1-8000-rank-0"
    assert calls == [100.0]
    assert store.get(key) is not None and store.get(key).metrics.waiting_queue_size == 1  # type: ignore[union-attr]
    await clock.advance(1.0)
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert 17 <= len(gaps) <= 23
    assert all(0.045 - 1e-9 <= g <= 0.055 + 1e-9 for g in gaps)
    good = store.get(key).metrics  # type: ignore[union-attr]
    assert good.update_time == calls[-1]

    failing["on"] = True
    mark = len(calls)
    await clock.advance(6.0)
    gaps = [b - a for a, b in zip(calls[mark - 1 :], calls[mark:], strict=False)]
    assert gaps[1] > gaps[0] and gaps[2] > gaps[1]  # backing off
    assert all(g <= 2.2 + 1e-9 for g in gaps) and gaps[-1] >= 1.8
    assert store.get(key).metrics == good  # type: ignore[union-attr]  # previous values kept
    assert scraper.failures[key] == len(calls) - mark

    failing["on"] = False
    await clock.advance(2.5)
    assert scraper.failures[key] == 0
    assert store.get(key).metrics.update_time == calls[-1]  # type: ignore[union-attr]
    await scraper.stop()
    assert scraper.tasks == {}


async def test_tasks_follow_datastore_membership() -> None:
    clock = VirtualClock(start=10.0)
    store = static_store(8000)
    seen: list[str] = []

    async def fetch(url: str) -> str:
        seen.append(url)
        return sim_text()

    scraper = Scraper(store, clock, interval=1.0, fetch=fetch, path="stats")
    scraper.start()
    await settle()
    assert seen == ["http://127.0.0.1:8000/stats"]
    extra = endpoints_from_static([StaticEndpoint("127.0.0.1", 8001)], "ns")[0]
    store.upsert(extra)
    await settle()
    assert set(scraper.tasks) == {"ns/127-0-0-1-8000-rank-0", "ns/127-0-0-1-8001-rank-0"}
    assert seen[-1] == "http://127.0.0.1:8001/stats"
    store.remove("ns/127-0-0-1-8000-rank-0")
    await settle()
    assert set(scraper.tasks) == {"ns/127-0-0-1-8001-rank-0"}
    seen.clear()
    await clock.advance(1.2)
    assert seen == ["http://127.0.0.1:8001/stats"]
    await scraper.stop()
    store.upsert(endpoints_from_static([StaticEndpoint("127.0.0.1", 8002)], "ns")[0])
    assert scraper.tasks == {}  # stopped scrapers start nothing


# ---------------------------------------------------------------- the loop over HTTP


class FakeServer:
    """A simulator-like /metrics endpoint on 127.0.0.1."""

    def __init__(self) -> None:
        self.waiting = 5
        self.status = 200
        self.hits = 0

    async def handle(self, _request: web.Request) -> web.Response:
        self.hits += 1
        if self.status != 200:
            return web.Response(status=self.status, text="boom")
        return web.Response(text=sim_text(self.waiting), content_type="text/plain")


@pytest.fixture
async def server() -> AsyncIterator[tuple[FakeServer, int]]:
    fake = FakeServer()
    app = web.Application()
    app.router.add_get("/metrics", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield fake, port
    finally:
        await runner.cleanup()


async def wait_for(cond: Callable[[], bool]) -> None:
    for _ in range(500):  # bounded: at most ~5 s of real time
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_scrape_loop_over_http(server: tuple[FakeServer, int]) -> None:
    fake, port = server
    clock = VirtualClock(start=50.0)
    store = static_store(port)
    key = f"ns/127-0-0-1-{port}-rank-0"
    scraper = Scraper(store, clock, interval=0.05, rng=random.Random(3))
    scraper.start()

    def metrics() -> EndpointMetrics:
        endpoint = store.get(key)
        assert endpoint is not None
        return endpoint.metrics

    await wait_for(lambda: metrics().update_time == 50.0)
    m = metrics()
    assert (m.waiting_queue_size, m.running_requests_size, m.kv_cache_usage_percent) == (5, 3, 0.25)
    assert (m.active_models, m.max_active_models) == (frozenset({"a", "b"}), 4)
    assert (m.cache_block_size, m.cache_num_gpu_blocks) == (16, 1000)
    assert fake.hits == 1  # the next scrape waits for virtual time

    fake.waiting = 8
    await clock.advance(0.06)
    await wait_for(lambda: metrics().waiting_queue_size == 8)
    second = metrics().update_time
    assert fake.hits == 2 and 50.045 <= second <= 50.06  # woken at its jittered deadline

    fake.status = 503
    await clock.advance(0.06)
    await wait_for(lambda: scraper.failures.get(key) == 1)
    assert metrics().waiting_queue_size == 8  # previous values kept
    assert metrics().update_time == second
    assert is_stale(metrics(), clock.now() + 2.0, 2.0)
    await scraper.stop()


@pytest.mark.parametrize(
    ("reachable", "ok", "change"),
    [
        (None, False, "unreachable"),  # never answered: reported at the first failure
        (None, True, None),
        (True, False, "unreachable"),
        (True, True, None),
        (False, False, None),  # still down: nothing new
        (False, True, "back"),
    ],
)
def test_reachability_change(reachable: bool | None, ok: bool, change: str | None) -> None:
    assert reachability_change(reachable, ok) == change


async def test_endpoint_that_stops_answering_is_logged_once_each_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real scraper against a real server that goes away and comes back on its port."""
    fake = FakeServer()
    app = web.Application()
    app.router.add_get("/metrics", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    clock = VirtualClock(start=0.0)
    store = static_store(port)
    key = f"ns/127-0-0-1-{port}-rank-0"
    scraper = Scraper(store, clock, interval=0.05, rng=random.Random(5))
    caplog.set_level(logging.DEBUG, logger="pyllmd.epp.scrape")

    def changes() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.levelno > logging.DEBUG]

    try:
        scraper.start()
        await wait_for(lambda: scraper.reachable.get(key) is True)
        assert changes() == []  # a healthy endpoint logs nothing

        await runner.cleanup()  # the server stops answering: connection refused
        for _ in range(4):  # four failed scrapes
            before = scraper.failures.get(key, 0)
            await clock.advance(2.5)
            await wait_for(lambda b=before: scraper.failures.get(key, 0) > b)
        assert scraper.failures[key] >= 4
        [down] = changes()
        assert down.levelno >= level_for_verbosity(2)  # shown at the default -v 2
        assert down.levelno == logging.WARNING
        text = down.getMessage()
        assert text.startswith("endpoint stopped answering metrics scrapes")
        assert f"endpoint={key}" in text
        assert f"127.0.0.1:{port}" in text  # the error names what failed
        assert "error=" in text

        runner = web.AppRunner(app)  # the same server comes back on its port
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await clock.advance(2.5)
        await wait_for(lambda: scraper.reachable.get(key) is True)
        for _ in range(3):  # more successful scrapes: nothing more to say
            hits = fake.hits
            await clock.advance(0.06)
            await wait_for(lambda h=hits: fake.hits > h)
        assert [r.levelno for r in changes()] == [logging.WARNING, logging.INFO]
        back = changes()[1].getMessage()
        assert back.startswith("endpoint answers metrics scrapes again")
        assert f"endpoint={key}" in back and "failed_scrapes=" in back
    finally:
        await scraper.stop()
        await runner.cleanup()


async def test_http_fetcher_errors(server: tuple[FakeServer, int]) -> None:
    fake, port = server
    fetcher = HttpFetcher(timeout=2.0)
    try:
        assert "vllm:num_requests_waiting" in await fetcher(f"http://127.0.0.1:{port}/metrics")
        fake.status = 500
        with pytest.raises(ScrapeError, match="status 500"):
            await fetcher(f"http://127.0.0.1:{port}/metrics")
        with pytest.raises(ScrapeError, match="status 404"):
            await fetcher(f"http://127.0.0.1:{port}/nope")
    finally:
        await fetcher.close()


async def test_unparsable_body_is_a_failure() -> None:
    clock = VirtualClock(start=5.0)
    store = static_store(8000)

    async def fetch(_url: str) -> str:
        return "this is { not prometheus\n"

    scraper = Scraper(store, clock, fetch=fetch)
    assert not await scraper.scrape_once("ns/127-0-0-1-8000-rank-0")
    assert not await scraper.scrape_once("ns/absent")
    assert store.snapshot()[0].metrics == EndpointMetrics()
