"""Model-server metrics scraping (spec §4.1): the data source of the endpoints' metrics.

Pure parts: the retry delay and the reachability changes; which series to read
and how is `plugins/datalayer/mapping.py`. Shell: `Scraper`, one asyncio task per
endpoint, started and stopped as the datastore changes.

Better than upstream (spec §14), behind the same interface: the period gets
±10 % jitter so scrapes of a large pool spread out; consecutive failures back
off exponentially (capped at 2 s, never below the period). A failed scrape
keeps the previous values.
An endpoint that stops answering is logged once (warning, with the error) and
once more when it answers again (info), not at every failed scrape
(`reachability_change`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence

import aiohttp

from pyllmd.core.clock import Clock
from pyllmd.core.promtext import PromTextError, parse_samples
from pyllmd.epp.datastore import Datastore
from pyllmd.epp.plugins.datalayer.mapping import (
    DEFAULT_VLLM_MAPPING,
    MetricMapping,
    extract_metrics,
    sample_names,
)
from pyllmd.epp.scheduling.types import Endpoint

__all__ = [
    "HttpFetcher",
    "Scraper",
    "ScrapeError",
    "describe_error",
    "next_delay",
    "reachability_change",
]

# The logger keeps its name from before the package was regrouped: users filter on it and
# the docs show it (`logger=pyllmd.epp.scrape`).
log = logging.getLogger("pyllmd.epp.scrape")

SCRAPE_TIMEOUT = 5.0
BACKOFF_CAP = 2.0
JITTER = 0.1


class ScrapeError(Exception):
    """One scrape failed (transport, status or format); previous values are kept."""


def next_delay(period: float, failures: int, rng: random.Random) -> float:
    """Wait before the next scrape: the period, or after `failures` consecutive failures
    `period·2^failures` capped at 2 s (never below the period); ±10 % jitter."""
    base = period
    if failures > 0:
        base = max(period, min(BACKOFF_CAP, period * 2.0 ** min(failures, 30)))
    return base * rng.uniform(1.0 - JITTER, 1.0 + JITTER)


UNREACHABLE = "unreachable"
BACK = "back"


def reachability_change(reachable: bool | None, ok: bool) -> str | None:
    """The state change one scrape makes: `UNREACHABLE` when it failed after a success
    (or as the first scrape, `reachable` None), `BACK` when it succeeded after failures,
    else None."""
    if not ok and reachable is not False:
        return UNREACHABLE
    if ok and reachable is False:
        return BACK
    return None


def describe_error(exc: BaseException) -> str:
    """An exception as one readable phrase (some, like a timeout, have no message)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


Fetch = Callable[[str], Awaitable[str]]


class HttpFetcher:
    """GET a metrics URL over one shared aiohttp session (keep-alive, no pool limit)."""

    def __init__(self, insecure_skip_verify: bool = True, timeout: float = SCRAPE_TIMEOUT):
        self._ssl = False if insecure_skip_verify else True
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, url: str) -> str:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, ssl=self._ssl)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        try:
            async with self._session.get(url) as resp:
                if resp.status != 200:
                    raise ScrapeError(f"unexpected status {resp.status} from {url}")
                return await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ScrapeError(f"failed to fetch {url}: {describe_error(exc)}") from exc

    async def close(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class Scraper:
    """One refresh task per endpoint of a datastore, following its membership."""

    KIND = "metrics"  # what the log lines call these scrapes

    def __init__(
        self,
        datastore: Datastore,
        clock: Clock,
        *,
        interval: float = 0.05,
        scheme: str = "http",
        path: str = "/metrics",
        mapping: Callable[[Endpoint], MetricMapping] = lambda _e: DEFAULT_VLLM_MAPPING,
        fetch: Fetch | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.datastore = datastore
        self.clock = clock
        self.interval = interval
        self.scheme = scheme
        self.path = path if path.startswith("/") else "/" + path
        self.mapping = mapping
        self._owned_fetcher: HttpFetcher | None = None
        if fetch is None:
            fetch = self._owned_fetcher = HttpFetcher()
        self.fetch: Fetch = fetch
        self.rng = rng or random.Random()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.failures: dict[str, int] = {}
        self.reachable: dict[str, bool] = {}  # absent until the endpoint's first scrape
        self._errors: dict[str, str] = {}  # the last scrape's failure, until the loop reads it
        self._running = False

    def url(self, endpoint: Endpoint) -> str:
        """`<scheme>://<metrics host><path>`."""
        return f"{self.scheme}://{endpoint.metrics_host}{self.path}"

    def start(self) -> None:
        """Start tasks for current endpoints and follow later changes (in a running loop)."""
        if self._running:
            return
        self._running = True
        self.datastore.subscribe(self._on_change)
        self._on_change(self.datastore.snapshot(), ())

    def _on_change(self, added: Sequence[Endpoint], removed: Sequence[str]) -> None:
        if not self._running:
            return
        for key in removed:
            self._cancel(key)
        for endpoint in added:
            key = endpoint.namespaced_name
            self._cancel(key)
            self.tasks[key] = asyncio.get_running_loop().create_task(
                self._loop(key), name=f"scrape {key}"
            )

    def _cancel(self, key: str) -> None:
        task = self.tasks.pop(key, None)
        if task is not None:
            task.cancel()
        self.failures.pop(key, None)
        self.reachable.pop(key, None)
        self._errors.pop(key, None)

    async def stop(self) -> None:
        """Cancel every task and close the owned HTTP session."""
        self._running = False
        tasks = list(self.tasks.values())
        for key in list(self.tasks):
            self._cancel(key)
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._owned_fetcher is not None:
            await self._owned_fetcher.close()

    async def scrape_once(self, key: str) -> bool:
        """Fetch, parse and store one endpoint's metrics; False (values kept) on failure."""
        endpoint = self.datastore.get(key)
        if endpoint is None:
            return False
        try:
            text = await self.fetch(self.url(endpoint))
            current = self.datastore.get(key)  # may have changed while fetching
            mapping = self.mapping(current or endpoint)
            samples = parse_samples(text, sample_names(mapping))
        except (ScrapeError, PromTextError) as exc:
            return self.failed(key, exc)
        if current is None:
            return False
        metrics = extract_metrics(samples, mapping, current.metrics, self.clock.now())
        return self.datastore.update_metrics(key, metrics)

    def failed(self, key: str, exc: Exception) -> bool:
        """Record one failed scrape of `key` (logged at debug; the loop logs the change)."""
        log.debug("%s scrape failed endpoint=%s error=%s", self.KIND, key, exc)
        self._errors[key] = str(exc)
        return False

    def _note(self, key: str, ok: bool, error: str | None, failures: int) -> None:
        """Log a change of reachability once: down with the error, up with the count."""
        if not ok and error is None:
            return  # not a failed scrape: the endpoint left while it was scraped
        change = reachability_change(self.reachable.get(key), ok)
        self.reachable[key] = ok
        if change == UNREACHABLE:
            log.warning(
                "endpoint stopped answering %s scrapes endpoint=%s error=%s",
                self.KIND,
                key,
                error,
            )
        elif change == BACK:
            log.info(
                "endpoint answers %s scrapes again endpoint=%s failed_scrapes=%d",
                self.KIND,
                key,
                failures,
            )

    async def _loop(self, key: str) -> None:
        failures = 0
        while True:
            ok = await self.scrape_once(key)
            self._note(key, ok, self._errors.pop(key, None), failures)
            failures = 0 if ok else failures + 1
            self.failures[key] = failures
            await self.clock.sleep(next_delay(self.interval, failures, self.rng))
