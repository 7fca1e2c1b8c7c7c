"""What a saturation cycle writes: the `wva_*` gauges, each VA's status, the actuator.

`CycleOutputs` is the writing half of the saturation loop's shell. It keeps
the `StatusBook` (the status each VA gets at the end of the cycle) and which
variants have published series, so that the series of a VA that is gone are
removed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

from pyllmd.autoscaler.collect.collector import CollectionResult
from pyllmd.autoscaler.decide import api
from pyllmd.autoscaler.decide.cycle import Member
from pyllmd.autoscaler.decide.enforce import safety_net
from pyllmd.autoscaler.decide.model import Decision, Workload
from pyllmd.autoscaler.decide.status import InvalidVariantAutoscaling, StatusBook, VariantKey
from pyllmd.autoscaler.interfaces import Actuator, Cluster
from pyllmd.autoscaler.loops.metrics import ControllerMetrics
from pyllmd.autoscaler.loops.reconcile import flag_invalid

log = logging.getLogger(__name__)


class CycleOutputs:
    """Publishes a cycle's decisions: gauges, VA status and, optionally, the actuator."""

    def __init__(
        self,
        cluster: Cluster,
        metrics: ControllerMetrics,
        book: StatusBook,
        actuator: Actuator | None = None,
    ) -> None:
        self.cluster = cluster
        self.metrics = metrics
        self.book = book
        self.actuator = actuator
        self._published: set[VariantKey] = set()

    def targets(
        self, vas: Sequence[api.VariantAutoscaling], workloads: Sequence[Workload | None]
    ) -> None:
        """Record whether each VA's target exists (`TargetResolved`)."""
        for va, workload in zip(vas, workloads, strict=True):
            self.book.target(va, workload is not None)

    def collected(self, members: Iterable[Member], result: CollectionResult) -> None:
        """Record how the group's metrics were collected (`MetricsAvailable`)."""
        for m in members:
            self.book.metrics(m.key, result.status == "ok", result.reason, result.detail)

    def safety_net(self, members: Sequence[Member], result: CollectionResult) -> None:
        """Spec §3.6: keep publishing the previous desired replicas; status says why."""
        log.warning("collection failed: %s", result.detail)
        for m in members:
            self.book.metrics(m.key, False, api.REASON_PROMETHEUS_ERROR, result.detail)
        for d in safety_net([m.state for m in members]):
            self.metrics.publish(d.variant, d.namespace, d.accelerator, d.current_replicas,
                                 d.target_replicas, d.reason)  # fmt: skip
            self._published.add((d.namespace, d.variant))

    def publish(self, chosen: Iterable[tuple[Member, Decision | None, bool]]) -> list[Decision]:
        """Gauges and status of each member's chosen decision (`cycle.choices`); the published."""
        applied: list[Decision] = []
        for m, decision, fresh in chosen:
            if decision is None or not decision.accelerator:
                self.book.metrics(m.key, False, api.REASON_METRICS_MISSING, "", keep_worse=True)
                continue
            self.metrics.publish(
                decision.variant, decision.namespace, decision.accelerator,
                m.workload.status_replicas, decision.target_replicas, decision.reason,
            )  # fmt: skip
            self._published.add(m.key)
            self.book.decision(m.key, decision, fresh=fresh)
            applied.append(decision)
        return applied

    async def write_statuses(self, vas: Sequence[api.VariantAutoscaling], now: datetime) -> None:
        """One status merge patch per VA that has something to say."""
        for va in vas:
            patch = self.book.patch_for(va, now)
            if patch is None:
                continue
            try:
                await self.cluster.patch_status(va, patch)
            except Exception as e:  # a missing or conflicting VA must not stop the others
                log.warning("status patch failed va=%s/%s: %s", va.metadata.namespace,
                            va.metadata.name, e)  # fmt: skip

    async def flag_invalid(
        self, invalid: Sequence[InvalidVariantAutoscaling], now: datetime
    ) -> None:
        """`OptimizationReady=False/InvalidConfiguration` on VAs that break the schema."""
        await flag_invalid(self.cluster, invalid, now)

    def forget_gone(self, present: set[VariantKey]) -> None:
        """Remove the series of VAs that no longer exist."""
        for key in sorted(self._published - present):
            self.metrics.forget(*key)
            self.book.forget(key)
        self._published &= present

    async def actuate(self, applied: Sequence[Decision]) -> None:
        """Enact the applied decisions, when there is an actuator and something to enact."""
        if self.actuator is not None and applied:
            await self.actuator.apply(applied)
