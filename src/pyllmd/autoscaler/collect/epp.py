"""Direct scraping of EPP pods' `/metrics` for scale-from-zero (spec §4.4, §8.2 step 3).

The scale-from-zero loop cannot wait for Prometheus (seconds of scrape and
query delay): it reads the endpoint pickers' flow-control queue directly.
Each scrape asks for the classic text format, times out after 5 s, and at
most 10 run at once; a pod that fails is reported in `ScrapeResult.errors`
and the others still count.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence

import aiohttp

from pyllmd.autoscaler.collect.demand import QUEUE_SIZE_METRIC, ScrapeResult, pending_demand
from pyllmd.core.promtext import PromTextError, Sample, parse_samples

__all__ = [
    "QUEUE_SIZE_METRIC",
    "EppScraper",
    "ScrapeResult",
    "metrics_url",
    "pending_demand",
]

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_CONCURRENCY = 10
_ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"


def metrics_url(pod_ip: str, port: int) -> str:
    """`http://<ip>:<port>/metrics`, with IPv6 addresses bracketed."""
    try:
        host = f"[{pod_ip}]" if ipaddress.ip_address(pod_ip).version == 6 else pod_ip
    except ValueError:
        host = pod_ip
    return f"http://{host}:{port}/metrics"


class EppScraper:
    """Scrapes EPP metrics endpoints with one shared HTTP session."""

    def __init__(
        self,
        bearer_token: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        self._headers = {"Accept": _ACCEPT}
        if bearer_token:
            self._headers["Authorization"] = f"Bearer {bearer_token}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = asyncio.Semaphore(max_concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close the HTTP session (idempotent)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def scrape(self, urls: Sequence[str]) -> ScrapeResult:
        """Scrape every URL concurrently (bounded); never raises for a single target."""
        answers = await asyncio.gather(*(self._one(url) for url in urls))
        per_target = {u: a for u, a in zip(urls, answers, strict=True) if isinstance(a, tuple)}
        errors = {u: a for u, a in zip(urls, answers, strict=True) if isinstance(a, str)}
        return ScrapeResult(per_target, errors)

    async def _one(self, url: str) -> tuple[Sample, ...] | str:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        async with self._limit:
            try:
                async with self._session.get(
                    url, headers=self._headers, timeout=self._timeout
                ) as resp:
                    body = await resp.text(errors="replace")
                    if resp.status != 200:
                        return f"HTTP {resp.status}"
            except TimeoutError:
                return "timed out"
            except aiohttp.ClientError as err:
                return f"unreachable: {err}"
        try:
            return tuple(parse_samples(body))
        except PromTextError as err:
            return str(err)
