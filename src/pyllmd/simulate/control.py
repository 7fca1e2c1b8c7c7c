"""The autoscaler, and the HPA or KEDA that act on its output, on the virtual clock.

The controller's own engines run unchanged: `SaturationEngine` (collect → analyze → optimize
→ publish, and actuate when scaling is direct) every `--interval`, and `ScaleFromZeroEngine`
every 100 ms while a variant is at zero. Their I/O is answered in memory:
- the `Cluster` is `cluster.VirtualCluster` (the stack file's objects and the fleet's pods);
- Prometheus is `VirtualPrometheus`: the collector's own PromQL strings evaluated by
  `simulate.promql` over the samples scraped on the virtual clock, answered in the JSON of
  Prometheus' API and read by the collector's own parser;
- the endpoint picker's `/metrics`, which scale-from-zero reads, is `QueueScraper`: the
  router's held requests as `inference_extension_flow_control_queue_size`.
The engines are coroutines; each cycle runs to completion on a private event loop at one
instant of virtual time (nothing in them waits on a clock), from a plain timer callback.

Each Deployment is scaled the way its stack entry says: by the controller directly (as
`pyllmd up` does), or by the manifest of an `hpa` (HorizontalPodAutoscaler, synced every
15 s) or a `scaledObject` (KEDA, polled every `pollingInterval`), which read
`wva_desired_replicas` from Prometheus as on a cluster: the controller's `/metrics` is scraped
with the other targets, so its `namespace` label becomes `exported_namespace`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyllmd.autoscaler.collect.demand import QUEUE_SIZE_METRIC, ScrapeResult
from pyllmd.autoscaler.collect.queries import PrometheusError, VectorSample, parse_result
from pyllmd.autoscaler.collect.source import PrometheusMetricsSource
from pyllmd.autoscaler.config_table import ControllerConfig, engine_settings
from pyllmd.autoscaler.decide.model import Decision
from pyllmd.autoscaler.decide.status import StatusBook
from pyllmd.autoscaler.loops.metrics import ControllerMetrics
from pyllmd.autoscaler.loops.saturation import SaturationEngine
from pyllmd.autoscaler.loops.scalefromzero import (
    SCALE_FROM_ZERO_PERIOD,
    InferencePool,
    ScaleFromZeroEngine,
    StaticPools,
)
from pyllmd.core.sample import Sample
from pyllmd.simulate import hpa, keda
from pyllmd.simulate.cluster import Fleet, Timers, VirtualCluster
from pyllmd.simulate.promql import Evaluator
from pyllmd.simulate.promql.store import Labels, SeriesStore
from pyllmd.simulate.routing import Router
from pyllmd.simulate.scrape import scrape_registry
from pyllmd.stackfile import DeploymentSpec

__all__ = ["Control", "QueueScraper", "StepClock", "VirtualPrometheus"]

log = logging.getLogger(__name__)
T = TypeVar("T")
CONTROLLER_POD = "workload-variant-autoscaler-controller-manager-0"
EPP_METRICS_URL = "http://epp.virtual:9090/metrics"


class StepClock:
    """The autoscaler's `Clock` in a virtual-time run: the time of the event being handled.

    Wall time is virtual seconds too, so the PromQL `timestamp()` values and the pods' Ready
    times the controller compares are on one clock."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)  # nothing in a cycle waits on time; never block the run

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(0)


class VirtualPrometheus:
    """The collector's `QueryClient` over the virtual-time series store."""

    def __init__(self, store: SeriesStore, clock: StepClock) -> None:
        self.evaluator = Evaluator(store)
        self.clock = clock

    async def query(self, promql: str) -> list[VectorSample]:
        return self.value(promql, self.clock.t)

    def value(self, promql: str, t: float) -> list[VectorSample]:
        try:
            data = self.evaluator.answer(promql, t)
        except ValueError as e:
            raise PrometheusError(
                "api", f"bad_data: {e} (HTTP 400)", status=400, error_type="bad_data", error=str(e)
            ) from None
        return parse_result(data)


class QueueScraper:
    """The endpoint picker's `/metrics` as scale-from-zero reads it: the router's held
    requests, under the workload's model."""

    def __init__(self, router: Router, model: str) -> None:
        self.router = router
        self.model = model

    async def scrape(self, urls: Sequence[str]) -> ScrapeResult:
        sample = Sample(
            QUEUE_SIZE_METRIC,
            {"fairness_id": "default", "priority": "0", "target_model_name": self.model},
            float(self.router.queued()),
        )
        return ScrapeResult({url: (sample,) for url in urls})


@dataclass
class _Scaler:
    """An HPA (KEDA's too) acting on one Deployment."""

    variant: str
    query: str
    spec: hpa.HPASpec
    state: hpa.HPAState = field(default_factory=hpa.HPAState)
    scaled_object: keda.ScaledObjectSpec | None = None
    keda_state: keda.KedaState = field(default_factory=keda.KedaState)


def external_metric_query(manifest: Mapping[str, Any]) -> str:
    """The PromQL Prometheus Adapter runs for an HPA's External metric: the sum of the
    selected series; ValueError naming the field otherwise."""
    metrics = (manifest.get("spec") or {}).get("metrics") or []
    external = [m.get("external") for m in metrics if m.get("type") == "External"]
    if not external or not isinstance(external[0], Mapping):
        raise ValueError("spec.metrics: one External metric (wva_desired_replicas) is needed")
    metric = external[0].get("metric") or {}
    name = metric.get("name")
    if not name:
        raise ValueError("spec.metrics[0].external.metric.name: required")
    labels = (metric.get("selector") or {}).get("matchLabels") or {}
    matchers = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"sum({name}{{{matchers}}})"


def scaler_of(dep: DeploymentSpec) -> _Scaler | None:
    """The HPA or ScaledObject of a Deployment's stack entry; ValueError naming the field."""
    if dep.hpa is not None:
        return _Scaler(dep.name, external_metric_query(dep.hpa), hpa.spec_from_manifest(dep.hpa))
    if dep.scaled_object is not None:
        so = keda.spec_from_manifest(dep.scaled_object)
        triggers = (dep.scaled_object.get("spec") or {}).get("triggers") or []
        query = next(
            (
                str((t.get("metadata") or {}).get("query") or "")
                for t in triggers
                if t.get("type") == "prometheus"
            ),
            "",
        )
        if not query:
            raise ValueError("spec.triggers[0].metadata.query: required")
        assert so.hpa is not None
        return _Scaler(dep.name, query, so.hpa, scaled_object=so)
    return None


class Control:
    """The controller's engines and the Deployments' scalers on the fleet's timers."""

    def __init__(
        self,
        cluster: VirtualCluster,
        fleet: Fleet,
        store: SeriesStore,
        cfg: ControllerConfig,
        router: Router,
        model: str,
        scalers: Sequence[_Scaler] = (),
    ) -> None:
        self.cluster = cluster
        self.fleet = fleet
        self.timers: Timers = fleet.timers
        self.store = store
        self.cfg = cfg
        self.clock = StepClock()
        self.loop = asyncio.new_event_loop()
        self.prometheus = VirtualPrometheus(store, self.clock)
        self.metrics = ControllerMetrics(cfg.controller_instance)
        direct = {s.variant for s in scalers}
        source = PrometheusMetricsSource(
            self.prometheus, fresh_threshold=cfg.prometheus_metrics_cache_fresh_threshold
        )
        self.saturation = SaturationEngine(
            cluster,
            source,
            self.metrics,
            StatusBook(),
            self.clock,
            engine_settings(cfg),
            actuator=_DirectActuator(cluster, exclude=direct),
        )
        pool = InferencePool(cluster_namespace(cluster), "virtual-pool", {}, (EPP_METRICS_URL,))
        self.from_zero = ScaleFromZeroEngine(
            cluster,
            StaticPools((pool,)),
            QueueScraper(router, model),
            self.metrics,
            self.clock,
            controller_instance=cfg.controller_instance,
            watch_namespace=cfg.watch_namespace,
        )
        self.scalers = list(scalers)
        self.decisions: list[tuple[float, Decision]] = []
        self.seen: set[Labels] = set()

    def start(self, t: float = 0.0) -> None:
        self.timers.at(t, self._cycle)
        self.timers.at(t + SCALE_FROM_ZERO_PERIOD, self._from_zero)
        for s in self.scalers:
            period = (
                s.scaled_object.polling_interval_s
                if s.scaled_object is not None
                else hpa.SYNC_PERIOD_S
            )
            self.timers.at(t + period, functools.partial(self._scale, s, period))

    def close(self) -> None:
        self.loop.close()

    def _run(self, now: float, coro: Coroutine[Any, Any, T], by: str) -> T:
        self.clock.t = now
        self.cluster.scaled_by = by
        return self.loop.run_until_complete(coro)

    def _cycle(self, now: float) -> None:
        try:
            applied = self._run(now, self.saturation.cycle(), "autoscaler")
        except Exception:  # the live loop logs and retries; so does this one, next cycle
            log.exception("saturation cycle failed at %.1f s", now)
            applied = []
        self.decisions.extend((now, d) for d in applied)
        self.timers.at(now + self.cfg.global_opt_interval, self._cycle)

    def _from_zero(self, now: float) -> None:
        if self.fleet.any_at_zero():
            woken = self._run(now, self.from_zero.tick(), "scale-from-zero")
            self.decisions.extend((now, d) for d in woken)
        self.timers.at(now + SCALE_FROM_ZERO_PERIOD, self._from_zero)

    def _scale(self, s: _Scaler, period: float, now: float) -> None:
        answer = self._metric(s.query, now)
        current = self.fleet.replicas(s.variant)
        target = current
        by = "hpa"
        if s.scaled_object is not None:
            by = "keda"
            target, s.keda_state = keda.poll(s.scaled_object, s.keda_state, now, current, answer)
        if target == current and current > 0:
            result = hpa.sync(s.spec, s.state, now, current, answer)
            s.state = result.state
            target = result.replicas
        self.fleet.scale(s.variant, target, now, by)
        self.timers.at(now + period, functools.partial(self._scale, s, period))

    def _metric(self, query: str, now: float) -> float | None:
        try:
            samples = self.prometheus.value(query, now)
        except PrometheusError:
            return None
        return sum(x.value for x in samples) if samples else None

    def scrape(self, t: float) -> None:
        """The controller's `/metrics` scraped into the store at `t`."""
        target = {"namespace": self.cfg.pod_namespace, "pod": CONTROLLER_POD}
        self.seen = scrape_registry(self.store, self.metrics.registry, t, target, self.seen)


def cluster_namespace(cluster: VirtualCluster) -> str:
    names = sorted({d.variant.namespace for d in cluster.fleet.deployments.values()})
    return names[0] if names else "default"


class _DirectActuator:
    """Sets each decided Deployment's replicas (`pyllmd up`'s way, and `--direct` on a
    cluster), except those an HPA or KEDA scales."""

    def __init__(self, cluster: VirtualCluster, exclude: set[str]) -> None:
        self.cluster = cluster
        self.exclude = exclude

    async def apply(self, decisions: Sequence[Decision]) -> None:
        for d in decisions:
            va = self.cluster.vas.get((d.namespace, d.variant))
            if va is None or va.spec.scale_target_ref.name in self.exclude:
                continue
            await self.cluster.scale(d.namespace, va.spec.scale_target_ref, d.target_replicas)
