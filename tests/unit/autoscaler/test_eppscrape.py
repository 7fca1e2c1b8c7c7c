"""EPP `/metrics` scraping and the scale-from-zero demand rule, against real HTTP servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from pyllmd.autoscaler.collect.epp import EppScraper, metrics_url, pending_demand
from pyllmd.core.promtext import Sample, parse_samples

MODEL = "meta-llama/Llama-3.1-8B"
EPP_TEXT = f"""\
# HELP inference_extension_flow_control_queue_size Requests queued in flow control.
# TYPE inference_extension_flow_control_queue_size gauge
inference_extension_flow_control_queue_size{{fairness_id="default",priority="0",\
inference_pool="pool",model_name="{MODEL}",target_model_name="{MODEL}"}} 2
inference_extension_flow_control_queue_size{{fairness_id="default",priority="0",\
inference_pool="pool",model_name="other",target_model_name="other"}} 0
"""


def queue(
    model: str, value: float, name: str = "inference_extension_flow_control_queue_size"
) -> Sample:
    return Sample(name, {"target_model_name": model, "model_name": model}, value)


@pytest.mark.parametrize(
    "samples,demand",
    [
        ([queue(MODEL, 2)], True),
        ([queue(MODEL, 0)], False),
        ([queue(MODEL, 0.5)], True),
        ([queue("other-model", 2)], False),
        ([queue(MODEL, 2, name="inference_extension_flow_control_queue_bytes")], False),
        ([Sample("inference_extension_flow_control_queue_size", {"model_name": MODEL}, 2)], False),
        ([queue("other-model", 5), queue(MODEL, 0), queue(MODEL, 1)], True),
        ([], False),
    ],
)
def test_wva_acc_47_epp_demand_rules(samples: list[Sample], demand: bool) -> None:
    assert pending_demand(samples, MODEL) is demand


def test_demand_from_a_real_epp_exposition() -> None:
    samples = parse_samples(EPP_TEXT)
    assert pending_demand(samples, MODEL) is True
    assert pending_demand(samples, "other") is False


def test_metrics_url_brackets_ipv6() -> None:
    assert metrics_url("10.0.0.7", 9090) == "http://10.0.0.7:9090/metrics"
    assert metrics_url("fd00::7", 9090) == "http://[fd00::7]:9090/metrics"


@asynccontextmanager
async def epp_server(handler: Callable[[web.Request], object]) -> AsyncIterator[str]:
    """A fake EPP metrics endpoint on loopback; yields its /metrics URL."""
    app = web.Application()
    app.router.add_get("/metrics", handler)  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield metrics_url("127.0.0.1", port)
    finally:
        await runner.cleanup()


async def test_scrape_sends_the_token_and_reports_failing_pods_apart() -> None:
    seen: list[dict[str, str]] = []

    async def good(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text=EPP_TEXT, content_type="text/plain")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="oops")

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text="x{a=1} 3\n")

    scraper = EppScraper(bearer_token="epp-token")
    async with epp_server(good) as ok_url, epp_server(broken) as bad_url:
        async with epp_server(garbage) as junk_url:
            result = await scraper.scrape([ok_url, bad_url, junk_url])
    await scraper.close()
    assert list(result.per_target) == [ok_url]
    assert pending_demand(result.samples, MODEL) is True
    assert result.errors[bad_url] == "HTTP 500"
    assert "invalid Prometheus text format" in result.errors[junk_url]
    assert seen[0]["Authorization"] == "Bearer epp-token"
    assert seen[0]["Accept"].startswith("text/plain;version=0.0.4")


async def test_without_a_token_no_authorization_header_is_sent() -> None:
    seen: list[dict[str, str]] = []

    async def good(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text="")

    scraper = EppScraper()
    async with epp_server(good) as url:
        result = await scraper.scrape([url])
    await scraper.close()
    assert result.per_target == {url: ()} and "Authorization" not in seen[0]


async def test_unreachable_and_slow_pods_are_errors() -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="")

    async with epp_server(slow) as closed_url:
        pass
    scraper = EppScraper(timeout=0.2)
    async with epp_server(slow) as slow_url:
        result = await scraper.scrape([closed_url, slow_url])
        release.set()
    await scraper.close()
    assert result.per_target == {}
    assert result.errors[closed_url].startswith("unreachable")
    assert result.errors[slow_url] == "timed out"


async def test_at_most_max_concurrency_scrapes_run_at_once() -> None:
    in_flight, peak = 0, 0

    async def counted(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(5):
            await asyncio.sleep(0)
        await asyncio.sleep(0.005)
        in_flight -= 1
        return web.Response(text=EPP_TEXT)

    scraper = EppScraper(max_concurrency=3)
    async with epp_server(counted) as url:
        urls = [f"{url}?pod={i}" for i in range(12)]
        result = await scraper.scrape(urls)
    await scraper.close()
    assert len(result.per_target) == 12 and not result.errors
    assert 1 <= peak <= 3
