"""Request-lifecycle plugin hooks after scheduling: ResponseReceived and ResponseComplete.

`PluginHooks` is the servicer's `observer`: it calls every configured plugin
that implements a hook (whether or not a profile references it, as upstream),
times each call into `inference_extension_plugin_duration_seconds`, and keeps a
failing hook from breaking the stream. `record_pd_decisions` turns the P/D
decisions a profile handler left in the cycle state into
`llm_d_inference_scheduler_pd_decision_total`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import cast

from pyllmd.epp.metrics import EppMetrics
from pyllmd.epp.plugins.profile.pd_common import pd_decisions
from pyllmd.epp.scheduling.interfaces import (
    CycleState,
    Plugin,
    ResponseComplete,
    ResponseReceived,
)
from pyllmd.epp.scheduling.registry import (
    ROLE_RESPONSE_COMPLETE,
    ROLE_RESPONSE_RECEIVED,
    roles,
)
from pyllmd.epp.scheduling.types import LLMRequest, SchedulingResult

__all__ = ["PluginHooks", "record_pd_decisions"]

log = logging.getLogger(__name__)


def record_pd_decisions(state: CycleState, metrics: EppMetrics) -> None:
    """Counts the P/D decisions of one scheduling cycle (also when it then failed)."""
    for decision in pd_decisions(state):
        metrics.record_pd_decision(decision.model_name, decision.decision_type)


class PluginHooks:
    """The response-side extension points over the configured plugins."""

    def __init__(
        self,
        plugins: Iterable[Plugin],
        metrics: EppMetrics | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        listed = list(plugins)
        self.received = [
            cast(ResponseReceived, p) for p in listed if ROLE_RESPONSE_RECEIVED in roles(p)
        ]
        self.completed = [
            cast(ResponseComplete, p) for p in listed if ROLE_RESPONSE_COMPLETE in roles(p)
        ]
        self.metrics = metrics
        self.timer = timer

    def response_received(
        self, request: LLMRequest, result: SchedulingResult, headers: dict[str, str]
    ) -> None:
        """Response headers arrived: plugins may add headers to `headers`."""
        for plugin in self.received:
            call = partial(plugin.response_received, request, result, headers)
            self._call("ResponseReceived", plugin, call)

    def response_complete(self, request: LLMRequest, result: SchedulingResult) -> None:
        """The response ended (or its stream did)."""
        for plugin in self.completed:
            self._call(
                "ResponseComplete", plugin, partial(plugin.response_complete, request, result)
            )

    def _call(self, point: str, plugin: Plugin, call: Callable[[], None]) -> None:
        start = self.timer()
        try:
            call()
        except Exception:  # noqa: BLE001 - a bookkeeping hook must not fail the response
            log.exception("%s plugin %s failed", point, plugin.name)
        if self.metrics is not None:
            self.metrics.record_plugin(point, plugin.type_name, plugin.name, self.timer() - start)
