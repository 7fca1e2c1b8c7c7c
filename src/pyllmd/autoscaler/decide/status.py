"""What each VA's status should say after a cycle: conditions and the desired allocation.

The engine records facts as it goes (target found, metrics available and why,
the decision); `patch_for` turns them into one status merge patch per VA with
standard condition semantics. Pure bookkeeping: no I/O, time is passed in.
Unlike upstream, `OptimizationReady` and `actuation.applied` are persisted too,
and a VA that breaks the CRD schema gets `OptimizationReady=False/InvalidConfiguration`
with the validation message (upstream defines the reason but never sets it).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from pyllmd.autoscaler.decide import api
from pyllmd.autoscaler.decide.model import Decision
from pyllmd.core.jsonmerge import merge_patch

log = logging.getLogger(__name__)

VariantKey = tuple[str, str]
"""(namespace, VA name)."""

_BAD_REASONS = (api.REASON_PROMETHEUS_ERROR, api.REASON_METRICS_STALE)


@dataclass(frozen=True)
class InvalidVariantAutoscaling:
    """A VA object that breaks the CRD schema: enough of it to address it and say why."""

    metadata: api.ObjectMeta
    conditions: tuple[api.Condition, ...]
    message: str

    @property
    def key(self) -> VariantKey:
        return (self.metadata.namespace, self.metadata.name)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any], message: str) -> InvalidVariantAutoscaling:
        """Metadata and whatever conditions still parse; malformed parts are left out."""
        raw_meta = obj.get("metadata")
        meta_obj = raw_meta if isinstance(raw_meta, Mapping) else {}
        try:
            meta = api.ObjectMeta.model_validate(meta_obj)
        except ValidationError:
            meta = api.ObjectMeta(
                name=str(meta_obj.get("name", "")), namespace=str(meta_obj.get("namespace", ""))
            )
        status = obj.get("status")
        items = status.get("conditions") if isinstance(status, Mapping) else None
        conditions: list[api.Condition] = []
        for item in items if isinstance(items, list) else []:
            try:
                conditions.append(api.Condition.model_validate(item))
            except ValidationError:
                continue
        return cls(meta, tuple(conditions), message)

    def placeholder(self) -> api.VariantAutoscaling:
        """A typed stand-in carrying only the metadata (for `Cluster.patch_status`)."""
        spec = api.VariantAutoscalingSpec.model_construct(
            scale_target_ref=api.CrossVersionObjectReference.model_construct(kind="", name=""),
            model_id="",
        )
        return api.VariantAutoscaling.model_construct(
            metadata=self.metadata, spec=spec, status=api.VariantAutoscalingStatus()
        )


def check_va(obj: Mapping[str, Any]) -> api.VariantAutoscaling | InvalidVariantAutoscaling:
    """A VA object checked as the API server checks it against the CRD schema.

    Only metadata and spec decide validity. The status is the controller's own
    output (and the API server validates writes to it): one that does not parse
    is dropped, so the next status write replaces it.
    """
    try:
        va = api.validate_variant_autoscaling({k: v for k, v in obj.items() if k != "status"})
    except api.InvalidObject as err:
        return InvalidVariantAutoscaling.from_object(obj, err.message)
    except ValidationError as err:  # passes the schema, fails the typed model (metadata)
        meta = obj.get("metadata")
        name = meta.get("name", "") if isinstance(meta, Mapping) else ""
        causes = ", ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        return InvalidVariantAutoscaling.from_object(
            obj, f'{api.KIND}.{api.GROUP} "{name}" is invalid: {causes}'
        )
    try:
        status = api.VariantAutoscalingStatus.model_validate(obj.get("status") or {})
    except ValidationError as err:
        log.debug("dropping unreadable status of %s/%s: %s", va.metadata.namespace,
                  va.metadata.name, err)  # fmt: skip
        status = api.VariantAutoscalingStatus()
    return va.model_copy(update={"status": status})


def invalid_patch(va: InvalidVariantAutoscaling, now: datetime) -> dict[str, Any] | None:
    """`OptimizationReady=False/InvalidConfiguration` with the validation message; None when
    the VA already says exactly that (so a watch event of our own write does not loop)."""
    current = api.get_condition(list(va.conditions), api.TYPE_OPTIMIZATION_READY)
    if (
        current is not None
        and current.status == api.STATUS_FALSE
        and current.reason == api.REASON_INVALID_CONFIGURATION
        and current.message == va.message
        and current.observed_generation == va.metadata.generation
    ):
        return None
    conditions = api.set_condition(
        list(va.conditions),
        api.TYPE_OPTIMIZATION_READY,
        api.STATUS_FALSE,
        api.REASON_INVALID_CONFIGURATION,
        va.message,
        va.metadata.generation,
        api.rfc3339(now),
    )
    return {"conditions": [condition_json(c) for c in conditions]}


def same_condition(before: api.Condition | None, after: api.Condition | None) -> bool:
    """True when a condition write would change nothing a user sees."""
    if before is None or after is None:
        return before is after
    return (before.status, before.reason, before.message, before.observed_generation) == (
        after.status,
        after.reason,
        after.message,
        after.observed_generation,
    )


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
        """The VA's entry, created on first use (not `setdefault`, which would build a
        throwaway `_Entry` on each of the several calls per VA per cycle)."""
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = _Entry()
        return entry

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
        stamp = _stamp(now)
        gen = va.metadata.generation
        conditions = [condition_json(c) for c in va.status.conditions]

        def put(type_: str, ok: bool, reason: str, message: str) -> None:
            status = api.STATUS_TRUE if ok else api.STATUS_FALSE
            _set_condition_json(conditions, type_, status, reason, message, gen, stamp)

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
        patch["conditions"] = conditions
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


def _set_condition_json(
    conditions: list[dict[str, Any]],
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
    stamp: str,
) -> None:
    """`api.set_condition` on conditions in their JSON form, in place.

    The status patch of every VA is built each cycle; JSON dicts are what it
    sends, so no `Condition` model is built for them.
    """
    for i, cond in enumerate(conditions):
        if cond["type"] != type_:
            continue
        if (cond["status"], cond["reason"], cond["message"], cond["observedGeneration"]) == (
            status,
            reason,
            message,
            generation,
        ):
            return  # unchanged: the steady state of most cycles
        since = stamp if cond["status"] != status else cond["lastTransitionTime"]
        conditions[i] = _json(type_, status, generation, since, reason, message)
        return
    conditions.append(_json(type_, status, generation, stamp, reason, message))


def _json(
    type_: str, status: str, generation: int, since: str, reason: str, message: str
) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "observedGeneration": generation,
        "lastTransitionTime": since,
        "reason": reason,
        "message": message,
    }


def condition_json(c: api.Condition) -> dict[str, Any]:
    """A condition as the API stores it (hand-built: this runs for every VA every cycle)."""
    return {
        "type": c.type,
        "status": c.status,
        "observedGeneration": c.observed_generation,
        "lastTransitionTime": c.last_transition_time,
        "reason": c.reason,
        "message": c.message,
    }


@functools.lru_cache(maxsize=4)
def _stamp(now: datetime) -> str:
    """`now` as metav1.Time text; cached because a cycle stamps every VA with one `now`."""
    return api.rfc3339(now)


def with_status_patch(
    va: api.VariantAutoscaling, patch: Mapping[str, Any]
) -> api.VariantAutoscaling:
    """`va` with `patch` merged into its status (RFC 7386), as the API server applies a status
    merge patch; for clusters kept in memory (the local stack's, a virtual-time run's)."""
    merged = merge_patch(va.status.model_dump(by_alias=True, exclude_none=True), patch)
    return va.model_copy(update={"status": type(va.status).model_validate(merged)})
