"""The scale-from-zero engine (spec §8.2): wake a variant at 0 replicas when its EPP queues work.

Every tick it finds the inactive VAs (target exists with `spec.replicas == 0`),
finds the InferencePool whose selector matches the target's pod-template
labels, scrapes that pool's EPP pods directly (Prometheus would add seconds of
delay; once per pool per tick), and when the flow-control queue holds requests
for the VA's model it sets the target's scale subresource to 1 and records the
decision. On Kubernetes its `Cluster` is a `kube.cache.KubeCache`, so a tick
reads VAs and targets from watch-fed caches, not from the API server.

It handles the same VAs as the saturation engine (`reconcile.VaScope`): unlike
upstream, none in a namespace annotated `wva.llmd.ai/exclude=true`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from pyllmd.autoscaler.collect.demand import EppMetricsScraper, ScrapeResult, pending_demand
from pyllmd.autoscaler.decide import api
from pyllmd.autoscaler.decide.model import Decision, Workload, parse_cost
from pyllmd.autoscaler.decide.status import StatusBook
from pyllmd.autoscaler.interfaces import Cluster
from pyllmd.autoscaler.loops.metrics import ControllerMetrics
from pyllmd.autoscaler.loops.reconcile import VaScope
from pyllmd.core.clock import Clock

log = logging.getLogger(__name__)

SCALE_FROM_ZERO_REASON = "scalefromzero mode: pending request - scale-up"
SCALE_FROM_ZERO_PERIOD = 0.1  # seconds between ticks


@dataclass(frozen=True)
class InferencePool:
    """A pool of model-server pods and the metrics URLs of its endpoint picker."""

    namespace: str
    name: str
    selector: Mapping[str, str]
    metrics_urls: tuple[str, ...]


class PoolSource(Protocol):
    """Where the known InferencePools come from (Kubernetes, or the local stack)."""

    async def pools(self) -> list[InferencePool]:
        """Every known pool."""
        ...


@dataclass(frozen=True)
class StaticPools:
    """A fixed list of pools (the local stack's gateway)."""

    items: tuple[InferencePool, ...]

    async def pools(self) -> list[InferencePool]:
        return list(self.items)


def matching_pool(
    pools: Sequence[InferencePool], namespace: str, labels: Mapping[str, str]
) -> InferencePool | None:
    """The pool whose selector is a subset of `labels`; same namespace first, then by name.

    Upstream compares names only and picks any match; preferring the target's
    own namespace and a stable order makes the choice deterministic.
    """
    ordered = sorted(pools, key=lambda p: (p.namespace != namespace, p.namespace, p.name))
    for pool in ordered:
        if all(labels.get(k) == v for k, v in pool.selector.items()):
            return pool
    return None


class ScaleFromZeroEngine:
    """One tick: wake every inactive VA whose model has queued requests."""

    def __init__(
        self,
        cluster: Cluster,
        pools: PoolSource,
        scraper: EppMetricsScraper,
        metrics: ControllerMetrics,
        clock: Clock,
        controller_instance: str = "",
        max_concurrency: int = 10,
        watch_namespace: str = "",
    ) -> None:
        self.cluster = cluster
        self.pools = pools
        self.scraper = scraper
        self.metrics = metrics
        self.clock = clock
        self.controller_instance = controller_instance
        self._limit = asyncio.Semaphore(max_concurrency)
        self.scope = VaScope(cluster, controller_instance, watch_namespace)

    async def tick(self) -> list[Decision]:
        """Check every inactive VA once; returns the wake-ups made.

        Each pool's endpoint pickers are scraped at most once per tick, however
        many inactive VAs the pool serves.
        """
        inactive = await self._inactive()
        if not inactive:
            return []
        pools = await self.pools.pools()
        if not pools:
            return []
        scrapes: dict[tuple[str, ...], asyncio.Task[ScrapeResult]] = {}
        try:
            results = await asyncio.gather(
                *(self._check(va, wl, pools, scrapes) for va, wl in inactive)
            )
        finally:
            for task in scrapes.values():
                task.cancel()
        return [d for d in results if d is not None]

    async def _inactive(self) -> list[tuple[api.VariantAutoscaling, Workload]]:
        found = []
        vas, _ = await self.scope.list(exclude=False)  # exclusion checked for the few left
        for va in vas:
            wl = await self.cluster.get_workload(va.metadata.namespace, va.spec.scale_target_ref)
            if wl is not None and wl.spec_replicas == 0:
                found.append((va, wl))
        excluded = await self.scope.excluded({va.metadata.namespace for va, _ in found})
        return [(va, wl) for va, wl in found if va.metadata.namespace not in excluded]

    async def _check(
        self,
        va: api.VariantAutoscaling,
        wl: Workload,
        pools: Sequence[InferencePool],
        scrapes: dict[tuple[str, ...], asyncio.Task[ScrapeResult]],
    ) -> Decision | None:
        async with self._limit:
            pool = matching_pool(pools, va.metadata.namespace, wl.template_labels)
            if pool is None:
                log.warning("no InferencePool selects the pods of va=%s/%s",
                            va.metadata.namespace, va.metadata.name)  # fmt: skip
                return None
            scrape = scrapes.get(pool.metrics_urls)
            if scrape is None:
                scrape = asyncio.ensure_future(self.scraper.scrape(pool.metrics_urls))
                scrapes[pool.metrics_urls] = scrape
            scraped = await asyncio.shield(scrape)
            if not pending_demand(scraped.samples, va.spec.model_id):
                return None
            ref = va.spec.scale_target_ref
            if not await self.cluster.scale(va.metadata.namespace, ref, 1):
                return None  # already woken (by an earlier tick or someone else)
            return await self._record(va)

    async def _record(self, va: api.VariantAutoscaling) -> Decision:
        alloc = va.status.desired_optimized_alloc
        accelerator = (alloc.accelerator if alloc else "") or va.metadata.labels.get(
            api.ACCELERATOR_LABEL, ""
        )
        decision = Decision(
            variant=va.metadata.name,
            namespace=va.metadata.namespace,
            model_id=va.spec.model_id,
            accelerator=accelerator,
            current_replicas=0,
            target_replicas=1,
            reason=SCALE_FROM_ZERO_REASON,
            cost=parse_cost(va.spec.variant_cost),
        )
        log.info("scale from zero va=%s/%s model=%s", decision.namespace, decision.variant,
                 decision.model_id)  # fmt: skip
        if accelerator:
            self.metrics.publish(decision.variant, decision.namespace, accelerator, 0, 1,
                                 decision.reason)  # fmt: skip
        book = StatusBook()
        book.scaled_from_zero((decision.namespace, decision.variant), decision)
        patch = book.patch_for(va, datetime.fromtimestamp(self.clock.wall(), UTC))
        if patch is not None:
            await self.cluster.patch_status(va, patch)
        return decision
