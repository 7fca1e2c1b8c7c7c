"""InferenceObjective priorities and InferenceModelRewrite rules (spec §3.4-3.5).

Pure functions over the objects' plain JSON (`objective_of`, `rules_of`,
`select_rule`, `choose_target`) decide; `Objectives` and `Rewrites` hold the
current objects of the pool's namespace and are fed by `datalayer/kube.py`'s
`informers` (list + watch). Randomness comes only from the caller's `random.Random`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GROUP_V1",
    "GROUP_V1ALPHA2",
    "Objectives",
    "RewriteRule",
    "RewriteTarget",
    "Rewrites",
    "choose_target",
    "objective_of",
    "references_pool",
    "rules_of",
    "select_rule",
]

Obj = dict[str, Any]
GROUP_V1 = "inference.networking.k8s.io"  # the InferencePool API group (v1)
GROUP_V1ALPHA2 = "inference.networking.x-k8s.io"  # the older pool, objectives, rewrites


def references_pool(obj: Obj, pool_name: str, pool_group: str) -> bool:
    """True when `spec.poolRef` names this pool (group defaults to the v1 API group)."""
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return False
    ref = (obj.get("spec") or {}).get("poolRef") or {}
    return (
        ref.get("name") == pool_name
        and (ref.get("group") or GROUP_V1) == pool_group
        and (ref.get("kind") or "InferencePool") == "InferencePool"
    )


def objective_of(obj: Obj, pool_name: str, pool_group: str) -> tuple[str, int | None] | None:
    """(name, priority) of an objective of this pool, else None; unset priority is None."""
    if not references_pool(obj, pool_name, pool_group):
        return None
    priority = (obj.get("spec") or {}).get("priority")
    name = str((obj.get("metadata") or {}).get("name", ""))
    return name, priority if isinstance(priority, int) else None


@dataclass(frozen=True)
class RewriteTarget:
    model: str
    weight: int


@dataclass(frozen=True)
class RewriteRule:
    """One rule of an InferenceModelRewrite; `models` empty means generic."""

    rewrite_name: str
    created: str  # the owner's creationTimestamp (RFC 3339 sorts as text)
    index: int  # position in the owner's `rules`
    models: tuple[str, ...]
    targets: tuple[RewriteTarget, ...]

    @property
    def generic(self) -> bool:
        return not self.models

    @property
    def order(self) -> tuple[str, str, int]:
        """Oldest owner first; ties by name, then rule position."""
        return (self.created, self.rewrite_name, self.index)


def _exact_models(rule: Mapping[str, Any]) -> tuple[tuple[str, ...], bool]:
    """The Exact model values of a rule's matches, and whether it had any match at all."""
    matches = rule.get("matches") or []
    models: list[str] = []
    for match in matches:
        model = (match or {}).get("model") or {}
        if (model.get("type") or "Exact") == "Exact" and isinstance(model.get("value"), str):
            models.append(model["value"])
    return tuple(models), bool(matches)


def rules_of(obj: Obj, pool_name: str, pool_group: str) -> list[RewriteRule]:
    """The rules of a rewrite object of this pool (none for other pools)."""
    if not references_pool(obj, pool_name, pool_group):
        return []
    meta = obj.get("metadata") or {}
    name, created = str(meta.get("name", "")), str(meta.get("creationTimestamp", ""))
    out: list[RewriteRule] = []
    for index, rule in enumerate((obj.get("spec") or {}).get("rules") or []):
        models, had_matches = _exact_models(rule or {})
        if had_matches and not models:
            continue  # matches only on unsupported types: never applies
        targets = tuple(
            RewriteTarget(str(t.get("modelRewrite", "")), max(0, int(t.get("weight") or 0)))
            for t in (rule or {}).get("targets") or []
            if isinstance(t, dict)
        )
        out.append(RewriteRule(name, created, index, models, targets))
    return out


def select_rule(rules: Iterable[RewriteRule], model: str) -> RewriteRule | None:
    """The oldest rule matching `model` exactly, else the oldest generic rule, else None."""
    exact: RewriteRule | None = None
    generic: RewriteRule | None = None
    for rule in rules:
        if model in rule.models and (exact is None or rule.order < exact.order):
            exact = rule
        elif rule.generic and (generic is None or rule.order < generic.order):
            generic = rule
    return exact or generic


def choose_target(targets: Sequence[RewriteTarget], rng: random.Random) -> str:
    """Weighted random target; uniform when all weights are 0; "" when there is none."""
    if not targets:
        return ""
    total = sum(t.weight for t in targets)
    if total <= 0:
        return rng.choice(targets).model
    r = rng.randrange(total)
    cumulative = 0
    for target in targets:
        cumulative += target.weight
        if cumulative > r:
            return target.model
    return targets[-1].model  # pragma: no cover - r < total


class _Store:
    """Objects of one kind by name, replaced on listing and updated per event."""

    def __init__(self, pool_name: str, pool_group: str) -> None:
        self.pool_name, self.pool_group = pool_name, pool_group
        self.objects: dict[str, Obj] = {}

    def on_list(self, objs: list[Obj]) -> None:
        self.objects = {str(o["metadata"]["name"]): o for o in objs}
        self._changed()

    def on_event(self, event_type: str, obj: Obj) -> None:
        name = str(obj["metadata"]["name"])
        if event_type == "DELETED":
            self.objects.pop(name, None)
        else:
            self.objects[name] = obj
        self._changed()

    def _changed(self) -> None:
        pass


class Objectives(_Store):
    """Priority by objective name (the `x-gateway-inference-objective` header)."""

    def __init__(self, pool_name: str, pool_group: str = GROUP_V1) -> None:
        super().__init__(pool_name, pool_group)
        self.priorities: dict[str, int | None] = {}

    def _changed(self) -> None:
        found = (objective_of(o, self.pool_name, self.pool_group) for o in self.objects.values())
        self.priorities = dict(f for f in found if f is not None)

    def priority(self, name: str) -> int | None:
        """The objective's priority; None when unknown or unset (the servicer uses 0)."""
        return self.priorities.get(name)


class Rewrites(_Store):
    """The rewrite rules of the pool; `rewrite` picks a target for a model."""

    def __init__(self, pool_name: str, pool_group: str = GROUP_V1) -> None:
        super().__init__(pool_name, pool_group)
        self.rules: list[RewriteRule] = []

    def _changed(self) -> None:
        rules = [r for o in self.objects.values() for r in rules_of(o, *self._pool)]
        self.rules = sorted(rules, key=lambda r: r.order)

    @property
    def _pool(self) -> tuple[str, str]:
        return self.pool_name, self.pool_group

    def rewrite(self, model: str, rng: random.Random) -> tuple[str, str] | None:
        """(rewrite name, target model) of the rule for `model`, or None when none applies."""
        rule = select_rule(self.rules, model)
        if rule is None:
            return None
        return rule.rewrite_name, choose_target(rule.targets, rng)
