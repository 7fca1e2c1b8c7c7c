"""Adapters between the decision core and the servicer's contracts (`contracts.py`).

`PluginScheduler` is the servicer's `RequestScheduler`: the configured plugins'
profile runner for one cycle, then the PreRequest plugins, timed for the
metrics; the datastore becomes an `EndpointSource`;
the saturation detector `Admission`; the metrics registry `RequestMetrics`;
the InferenceModelRewrite store the servicer's `model_rewrite` hook.
Scheduling leaves out endpoints whose metrics are stale while a fresher one
exists (upstream scores stale values; in static mode nothing else would ever
take a dead server out of rotation). Timing uses `time.perf_counter` here, in
the shell, so the framework stays free of clocks.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from pyllmd.core.clock import Clock
from pyllmd.epp import saturation
from pyllmd.epp.config.loader import EppConfig
from pyllmd.epp.datastore import Datastore
from pyllmd.epp.extproc.lifecycle import record_pd_decisions
from pyllmd.epp.metrics import EppMetrics
from pyllmd.epp.objectives import Rewrites
from pyllmd.epp.plugins.scorer.prefix_cache_scorer import CHARS_PER_TOKEN, PrefixCacheScorer
from pyllmd.epp.requests import Usage
from pyllmd.epp.scheduling.interfaces import CycleState, PreRequest, ProfileHandler
from pyllmd.epp.scheduling.registry import ROLE_PRE_REQUEST, roles
from pyllmd.epp.scheduling.runner import ProfileRunner
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest, SchedulingResult

__all__ = [
    "DatastoreEndpoints",
    "PluginScheduler",
    "MetricsRecorder",
    "ModelRewriter",
    "SaturationAdmission",
]

log = logging.getLogger(__name__)


class DatastoreEndpoints:
    """The datastore as the servicer's `EndpointSource`."""

    def __init__(self, datastore: Datastore) -> None:
        self.datastore = datastore

    @property
    def synced(self) -> bool:
        return self.datastore.synced

    def __call__(self) -> Sequence[Endpoint]:
        return self.datastore.snapshot_tuple()


class PluginScheduler:
    """Schedules a request with the configured plugins (`contracts.RequestScheduler`): one
    profile-runner cycle, then the PreRequest plugins.

    Records the scheduler and plugin metrics and the prefix-index lookups.
    """

    def __init__(
        self,
        config: EppConfig,
        clock: Clock,
        rng: random.Random,
        metrics: EppMetrics,
        staleness: float,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.clock = clock
        self.rng = rng
        self.metrics = metrics
        self.staleness = staleness
        self.timer = timer
        handler = cast(ProfileHandler, config.plugins[config.handler_name])
        self.runner = ProfileRunner(
            config.profiles, handler, timer=timer, observe=metrics.record_plugin
        )
        self.plugins = dict(config.plugins)
        self.prefix_indexes = {  # approximate prefix scorers: their lookups are measured
            name: p.index for name, p in self.plugins.items() if isinstance(p, PrefixCacheScorer)
        }
        self.pre_request = [
            cast(PreRequest, p) for p in config.plugins.values() if ROLE_PRE_REQUEST in roles(p)
        ]

    def schedule(self, request: LLMRequest, candidates: Sequence[Endpoint]) -> SchedulingResult:
        now = self.clock.now()
        state = CycleState(rng=self.rng, now=now)
        eligible = saturation.fresh_candidates(candidates, now, self.staleness)
        start = self.timer()
        try:
            result = self.runner.schedule_in(state, request, eligible)
        except Exception:
            self.metrics.record_scheduling(self.timer() - start, False)
            raise
        finally:
            record_pd_decisions(state, self.metrics)
        self.metrics.record_scheduling(self.timer() - start, True)
        for plugin in self.pre_request:
            begin = self.timer()
            try:
                plugin.pre_request(state, request, result)
            except Exception:  # noqa: BLE001 - a bookkeeping hook must not fail the request
                log.exception("PreRequest plugin %s failed", plugin.name)
            self.metrics.record_plugin(
                "PreRequest", plugin.type_name, plugin.name, self.timer() - begin
            )
        self._record_prefix(state, result)
        return result

    def _record_prefix(self, state: CycleState, result: SchedulingResult) -> None:
        if not result.targets:
            return
        target = result.targets[0].namespaced_name
        for name, lookup in state.prefix.items():
            index = self.prefix_indexes.get(name)
            if index is None:
                continue
            hit_bytes = lookup.matches.get(target, 0) * lookup.block_size_tokens * CHARS_PER_TOKEN
            self.metrics.record_prefix_lookup(lookup.hit_ratio(target), hit_bytes, index.size())

    def prune(self, known: Iterable[str]) -> None:
        """Let plugins with an index forget endpoints that left the datastore."""
        names = list(known)
        for plugin in self.plugins.values():
            prune = getattr(plugin, "prune", None)
            if callable(prune):
                prune(names)


@dataclass
class SaturationAdmission:
    """Legacy admission (spec §7): sheddable requests are dropped while saturated."""

    config: saturation.SaturationConfig
    clock: Clock

    def admit(self, request: LLMRequest, candidates: Sequence[Endpoint]) -> str | None:
        return saturation.admit(request.priority, candidates, self.config, self.clock.now())


class MetricsRecorder:
    """`contracts.RequestMetrics` onto the EPP registry."""

    def __init__(self, metrics: EppMetrics) -> None:
        self.m = metrics

    def request_received(self, model: str, target: str, size: int) -> None:
        self.m.record_request(model, target, size)

    def request_error(self, model: str, target: str, code: str) -> None:
        self.m.record_error(model, target, code)

    def running_changed(self, model: str, delta: int) -> None:
        self.m.running_delta(model, delta)

    def response_done(
        self, model: str, target: str, size: int, latency: float, usage: Usage | None = None
    ) -> None:
        self.m.record_response(model, target, latency, size)
        if usage is not None:
            self.m.record_ntpot(model, target, latency, usage.completion_tokens)

    def tokens(self, model: str, target: str, usage: Usage) -> None:
        f = self.m.f
        if usage.prompt_tokens > 0:
            f["inference_objective_input_tokens"].histogram(model, target).observe(
                usage.prompt_tokens
            )
        if usage.completion_tokens > 0:
            f["inference_objective_output_tokens"].histogram(model, target).observe(
                usage.completion_tokens
            )
        if usage.cached_tokens > 0:
            f["inference_objective_prompt_cached_tokens"].histogram(model, target).observe(
                usage.cached_tokens
            )


class ModelRewriter:
    """The rewrite rules as the servicer's `model_rewrite`: the target model of each request.

    A model without an applicable rule is left as it is; each decision is counted.
    """

    def __init__(self, rewrites: Rewrites, rng: random.Random, metrics: EppMetrics) -> None:
        self.rewrites = rewrites
        self.rng = rng
        self.metrics = metrics

    def __call__(self, model: str) -> str:
        found = self.rewrites.rewrite(model, self.rng)
        if found is None:
            return model
        name, target = found
        self.metrics.record_model_rewrite(name, model, target)
        return target
