"""Async client of Prometheus' HTTP query API (spec §4.1), on aiohttp, and the
`MetricsCollector` over it (`PrometheusMetricsSource`: the queries of `queries.py`).

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

import asyncio
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from pyllmd.autoscaler.collect.collector import CollectionError, CollectionResult, MetricsCollector
from pyllmd.autoscaler.collect.queries import (
    MODEL_RECENT_SUCCESS,
    MODEL_REQUEST_COUNT,
    REPLICA_QUERIES,
    REQUIRED_QUERIES,
    SCHEDULER_QUEUE_BYTES,
    SCHEDULER_QUEUE_SIZE,
    PrometheusError,
    VectorSample,
    classify,
    decode_answer,
    render_query,
)
from pyllmd.autoscaler.decide.configmaps import format_retention
from pyllmd.autoscaler.decide.model import ModelGroup, ReplicaMetrics
from pyllmd.core.clock import Clock, RealClock

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


class QueryClient(Protocol):
    """What the source needs of a Prometheus client (PrometheusClient, or a fake)."""

    async def query(self, promql: str) -> list[VectorSample]:
        """Instant query at now."""
        ...


PodResolver = Callable[[ModelGroup], Awaitable[Mapping[str, str]]]
"""Pod name → VA name for a group's pods (the caller resolves Pod → Deployment → VA)."""


class PrometheusMetricsSource:
    """`MetricsCollector` over Prometheus: the queries of §4.2, built into `ReplicaMetrics`."""

    def __init__(
        self,
        client: QueryClient,
        resolve_pods: PodResolver | None = None,
        *,
        fresh_threshold: float = 60.0,
        stale_window: float = 300.0,
    ) -> None:
        self._client = client
        self._resolve_pods = resolve_pods
        self.fresh_threshold = fresh_threshold
        self.stale_window = stale_window

    async def collect(
        self, group: ModelGroup, pod_variants: Mapping[str, str] | None = None
    ) -> CollectionResult:
        """Run the group's queries concurrently and classify the outcome.

        `pod_variants` maps pod name → VA name; without it the resolver given at
        construction is asked.
        """
        if pod_variants is None:
            if self._resolve_pods is None:
                raise ValueError("no pod → variant mapping given and no resolver configured")
            pod_variants = await self._resolve_pods(group)
        window = format_retention(self.stale_window)
        queries = [
            render_query(name, group.namespace, group.model_id, window=window)
            for name in REPLICA_QUERIES
        ]
        answers = await asyncio.gather(
            *(self._client.query(q) for q in queries), return_exceptions=True
        )
        results: dict[str, list[VectorSample]] = {}
        for name, answer in zip(REPLICA_QUERIES, answers, strict=True):
            if isinstance(answer, PrometheusError):
                if name in REQUIRED_QUERIES:
                    return CollectionResult((), "error", f"{name} query failed: {answer}")
                log.info("ignoring failed %s query for %s: %s", name, group.key, answer)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                results[name] = answer
        return classify(group, results, pod_variants, self.fresh_threshold)

    async def replica_metrics(self, group: ModelGroup) -> tuple[ReplicaMetrics, ...]:
        """Replicas, or CollectionError on a Prometheus error."""
        result = await self.collect(group)
        if result.status == "error":
            raise CollectionError(result.detail)
        return result.replicas

    async def request_count(
        self, namespace: str, model_id: str, retention_seconds: float
    ) -> float | None:
        """Successful requests over the retention window; None on error or without series."""
        retention = format_retention(retention_seconds)
        promql = render_query(MODEL_REQUEST_COUNT, namespace, model_id, retention=retention)
        try:
            samples = await self._client.query(promql)
        except PrometheusError as err:
            log.info("request count of %s/%s unknown: %s", namespace, model_id, err)
            return None
        return sum(s.value for s in samples) if samples else None

    async def recent_success(
        self, namespace: str, model_id: str, retention_seconds: float
    ) -> bool | None:
        """Whether a successful request was first seen within the window; None on error.

        pyllmd's guard next to `request_count` (see `MODEL_RECENT_SUCCESS`).
        """
        retention = format_retention(retention_seconds)
        promql = render_query(MODEL_RECENT_SUCCESS, namespace, model_id, retention=retention)
        try:
            samples = await self._client.query(promql)
        except PrometheusError as err:
            log.info("recent successes of %s/%s unknown: %s", namespace, model_id, err)
            return None
        return any(s.value > 0 for s in samples)

    async def scheduler_queue(self, model_id: str) -> tuple[float, float]:
        """EPP flow-control queue (size, bytes) of a model; 0 for an unknown or failed query."""
        names = (SCHEDULER_QUEUE_SIZE, SCHEDULER_QUEUE_BYTES)
        answers = await asyncio.gather(
            *(self._client.query(render_query(n, model_id=model_id)) for n in names),
            return_exceptions=True,
        )
        totals: list[float] = []
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, PrometheusError):
                log.info("%s of %s unknown: %s", name, model_id, answer)
                totals.append(0.0)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                totals.append(sum(s.value for s in answer))
        return totals[0], totals[1]


_PROTOCOL_CHECK: type[MetricsCollector] = PrometheusMetricsSource
