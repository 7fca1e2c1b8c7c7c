"""The `MetricsCollector` over Prometheus' answers: the queries of `queries.py`, run through any
`QueryClient` (the HTTP client of `prometheus.py` live; the virtual-time evaluator of
`pyllmd simulate`), built into `ReplicaMetrics`.

Kept apart from the HTTP client so that a virtual-time run imports the collector without
aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

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
    render_query,
)
from pyllmd.autoscaler.decide.configmaps import format_retention
from pyllmd.autoscaler.decide.model import ModelGroup, ReplicaMetrics

log = logging.getLogger(__name__)


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
