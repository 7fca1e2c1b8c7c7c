"""Async client of Prometheus' HTTP query API (spec §4.1), on aiohttp. The `MetricsCollector`
over it, `PrometheusMetricsSource`, is in `source.py` (re-exported here).

Written here rather than taken from a library because the Python clients on
PyPI are synchronous (`prometheus-api-client`, on requests) and none offers
the controller's TLS options (CA, client cert, server name, minimum TLS 1.2),
token-file re-reading and clock-injected retries together.

Instant queries go to `POST /api/v1/query` as a form (so long PromQL never
hits URL limits), at the clock's wall time. Results come back as
`VectorSample`s whatever the result type: a vector as is, a scalar as one
label-less sample, a matrix as the last sample of each series. NaN and ±Inf
become 0, as upstream does.

Retries follow upstream's backoff (500 ms doubling, jitter 0.1, 5 attempts),
sleeping on the injected Clock, except for answers that cannot improve by
retrying: HTTP 400 (`bad_data`, a malformed query) and 422 (`execution`).
The token file is re-read for every attempt, so rotated service-account
tokens are picked up without a restart.
"""

from __future__ import annotations

import logging
import random
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from pyllmd.autoscaler.collect.queries import PrometheusError, VectorSample, decode_answer
from pyllmd.autoscaler.collect.source import PodResolver, PrometheusMetricsSource, QueryClient
from pyllmd.core.clock import Clock, RealClock

__all__ = [
    "PodResolver",
    "PrometheusClient",
    "PrometheusMetricsSource",
    "PrometheusOptions",
    "QueryClient",
    "ssl_context",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrometheusOptions:
    """Connection settings (the `PROMETHEUS_*` keys of spec §2.2) and the retry policy."""

    base_url: str
    bearer_token: str = ""
    token_path: str = ""
    insecure_skip_verify: bool = False
    ca_cert_path: str = ""
    client_cert_path: str = ""
    client_key_path: str = ""
    server_name: str = ""
    query_timeout: float = 10.0
    retry_initial: float = 0.5
    retry_factor: float = 2.0
    retry_jitter: float = 0.1
    retry_steps: int = 5


def ssl_context(opts: PrometheusOptions) -> ssl.SSLContext:
    """TLS ≥ 1.2 with the optional CA bundle, client certificate and verification switch."""
    ctx = ssl.create_default_context(cafile=opts.ca_cert_path or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if opts.client_cert_path and opts.client_key_path:
        ctx.load_cert_chain(opts.client_cert_path, opts.client_key_path)
    if opts.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class PrometheusClient:
    """Instant queries against one Prometheus; one aiohttp session, opened on first use."""

    def __init__(
        self,
        opts: PrometheusOptions,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.opts = opts
        self._clock = clock or RealClock()
        self._rng = rng or random.Random()
        self._url = opts.base_url.rstrip("/") + "/api/v1/query"
        self._https = opts.base_url.lower().startswith("https://")
        self._ssl = ssl_context(opts) if self._https else None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session (idempotent)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def query(self, promql: str) -> list[VectorSample]:
        """Run an instant query at now, retrying with backoff; raises the last PrometheusError."""
        delay, last = self.opts.retry_initial, None
        for attempt in range(max(1, self.opts.retry_steps)):
            if attempt:
                jitter = self._rng.random() * self.opts.retry_jitter * delay
                await self._clock.sleep(delay + jitter)
                delay *= self.opts.retry_factor
            try:
                return await self.query_once(promql)
            except PrometheusError as err:
                last = err
                if not err.retryable:
                    break
                log.debug("prometheus query failed (attempt %d): %s", attempt + 1, err)
        assert last is not None
        raise last

    async def validate_connectivity(self) -> None:
        """One `up` query without retries (the caller owns the start-up backoff)."""
        await self.query_once("up")

    async def query_once(self, promql: str) -> list[VectorSample]:
        """One attempt of an instant query."""
        form = {"query": promql, "time": _format_time(self._clock.wall())}
        kwargs: dict[str, Any] = {"data": form, "headers": self._headers()}
        if self._https:
            kwargs["ssl"] = self._ssl
            if self.opts.server_name:
                kwargs["server_hostname"] = self.opts.server_name
        timeout = aiohttp.ClientTimeout(total=self.opts.query_timeout)
        try:
            async with self._open().post(self._url, timeout=timeout, **kwargs) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError as err:
            raise PrometheusError("connection", f"query timed out: {promql}") from err
        except aiohttp.ClientError as err:
            raise PrometheusError("connection", f"cannot reach Prometheus: {err}") from err
        return decode_answer(status, body)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    def _headers(self) -> dict[str, str]:
        token = self.opts.bearer_token or self._read_token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _read_token(self) -> str:
        if not self.opts.token_path:
            return ""
        try:
            return Path(self.opts.token_path).read_text().strip()
        except OSError as err:
            raise PrometheusError("connection", f"cannot read bearer token file: {err}") from err


def _format_time(seconds: float) -> str:
    return f"{seconds:.3f}"
