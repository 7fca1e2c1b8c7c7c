"""What each VA's status should say after a cycle: conditions and the desired allocation.

The engine records facts as it goes (target found, metrics available and why,
the decision); `patch_for` turns them into one status merge patch per VA with
standard condition semantics. Pure bookkeeping: no I/O, time is passed in.
Unlike upstream, `OptimizationReady` and `actuation.applied` are persisted too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pyllmd.autoscaler import api
from pyllmd.autoscaler.model import Decision

VariantKey = tuple[str, str]
"""(namespace, VA name)."""

_BAD_REASONS = (api.REASON_PROMETHEUS_ERROR, api.REASON_METRICS_STALE)


@dataclass
class _Entry:
    target_found: bool | None = None
    target_name: str = ""
    metrics: tuple[bool, str, str] | None = None  # (available, reason, detail)
    decision: Decision | None = None
    fresh: bool = False
    from_zero: bool = False


@dataclass
class StatusBook:
    """Per-cycle record of each VA's status facts."""

    entries: dict[VariantKey, _Entry] = field(default_factory=dict)

    def _entry(self, key: VariantKey) -> _Entry:
        return self.entries.setdefault(key, _Entry())

    def target(self, va: api.VariantAutoscaling, found: bool) -> None:
        """Whether the VA's scale target exists."""
        entry = self._entry((va.metadata.namespace, va.metadata.name))
        entry.target_found = found
        entry.target_name = va.spec.scale_target_ref.name

    def metrics(
        self, key: VariantKey, available: bool, reason: str, detail: str, keep_worse: bool = False
    ) -> None:
        """The `MetricsAvailable` facts; `keep_worse` keeps an error or stale reason already set."""
        entry = self._entry(key)
        if keep_worse and entry.metrics is not None and entry.metrics[1] in _BAD_REASONS:
            return
        entry.metrics = (available, reason, detail)

    def decision(self, key: VariantKey, decision: Decision, fresh: bool) -> None:
        """The target published for the VA; `fresh` when made this cycle (not carried over)."""
        entry = self._entry(key)
        entry.decision = decision
        entry.fresh = fresh

    def scaled_from_zero(self, key: VariantKey, decision: Decision) -> None:
        """The scale-from-zero engine brought the VA's target to 1."""
        entry = self._entry(key)
        entry.decision = decision
        entry.fresh = True
        entry.from_zero = True
        entry.metrics = (True, api.REASON_SCALE_FROM_ZERO, "")

    def forget(self, key: VariantKey) -> None:
        """Drop whatever is recorded for a VA."""
        self.entries.pop(key, None)

    def patch_for(self, va: api.VariantAutoscaling, now: datetime) -> dict[str, Any] | None:
        """The status merge patch for `va`, consuming its entry; None when nothing is known."""
        entry = self.entries.pop((va.metadata.namespace, va.metadata.name), None)
        if entry is None:
            return None
        stamp = api.rfc3339(now)
        gen = va.metadata.generation
        conditions = list(va.status.conditions)

        def put(type_: str, ok: bool, reason: str, message: str) -> None:
            nonlocal conditions
            status = api.STATUS_TRUE if ok else api.STATUS_FALSE
            conditions = api.set_condition(conditions, type_, status, reason, message, gen, stamp)

        if entry.target_found is not None:
            name = entry.target_name
            if entry.target_found:
                put(api.TYPE_TARGET_RESOLVED, True, api.REASON_TARGET_FOUND,
                    api.message_target_found(name))  # fmt: skip
            else:
                put(api.TYPE_TARGET_RESOLVED, False, api.REASON_TARGET_NOT_FOUND,
                    api.message_target_not_found(name))  # fmt: skip
        if entry.metrics is not None:
            ok, reason, detail = entry.metrics
            put(api.TYPE_METRICS_AVAILABLE, ok, reason, _metrics_message(ok, reason, detail))
        patch: dict[str, Any] = {}
        decision = entry.decision
        if decision is not None and decision.accelerator:
            put(api.TYPE_OPTIMIZATION_READY, True, *_optimization(entry, decision))
            patch["desiredOptimizedAlloc"] = {
                "lastRunTime": stamp,
                "accelerator": decision.accelerator,
                "numReplicas": decision.target_replicas,
            }
            patch["actuation"] = {"applied": True}
        patch["conditions"] = [c.model_dump(by_alias=True) for c in conditions]
        return patch


def _metrics_message(ok: bool, reason: str, detail: str) -> str:
    if reason == api.REASON_SCALE_FROM_ZERO:
        return api.MESSAGE_SCALED_FROM_ZERO
    if ok:
        return api.MESSAGE_METRICS_FOUND
    if reason == api.REASON_METRICS_MISSING or not detail:
        return api.MESSAGE_METRICS_MISSING
    return detail


def _optimization(entry: _Entry, decision: Decision) -> tuple[str, str]:
    if entry.from_zero:
        return api.REASON_SCALE_FROM_ZERO_MODE, api.MESSAGE_SCALE_FROM_ZERO_MODE
    if entry.fresh:
        return api.REASON_SATURATION_ONLY_MODE, api.message_saturation_only(
            decision.reason, decision.target_replicas
        )
    return api.REASON_OPTIMIZATION_SUCCEEDED, api.MESSAGE_NO_SCALING_CHANGE
