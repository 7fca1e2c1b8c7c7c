"""InferenceObjective priorities and InferenceModelRewrite rules (spec §3.4-3.5)."""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from pyllmd.core.kubeclient import connect
from pyllmd.core.promtext import parse_samples
from pyllmd.epp.datalayer.kube import informers
from pyllmd.epp.extproc.adapters import ModelRewriter
from pyllmd.epp.metrics import EppMetrics
from pyllmd.epp.objectives import (
    GROUP_V1,
    GROUP_V1ALPHA2,
    Objectives,
    RewriteRule,
    Rewrites,
    RewriteTarget,
    choose_target,
    objective_of,
    rules_of,
    select_rule,
)
from tests.unit.autoscaler import kubefake_api as api
from tests.unit.autoscaler.kubefake import KubeFake, running_kube

NS = "llm"
Obj = dict[str, Any]
OBJECTIVES = api.ResourceDef(
    GROUP_V1ALPHA2, "v1alpha2", "inferenceobjectives", "InferenceObjective"
)
REWRITES = api.ResourceDef(
    GROUP_V1ALPHA2, "v1alpha2", "inferencemodelrewrites", "InferenceModelRewrite"
)


def objective(name: str, priority: int | None, pool: str = "pool", group: str = "") -> Obj:
    spec: Obj = {"poolRef": {"name": pool, **({"group": group} if group else {})}}
    if priority is not None:
        spec["priority"] = priority
    return {"metadata": {"name": name, "namespace": NS}, "spec": spec}


def rewrite(name: str, created: str, rules: list[Obj], pool: str = "pool") -> Obj:
    return {
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": created},
        "spec": {"poolRef": {"name": pool}, "rules": rules},
    }


def rule(models: list[str], targets: list[tuple[str, int]]) -> Obj:
    return {
        "matches": [{"model": {"type": "Exact", "value": m}} for m in models],
        "targets": [{"modelRewrite": t, "weight": w} for t, w in targets],
    }


T1 = "2024-01-01T00:00:00Z"
T2 = "2024-01-02T00:00:00Z"


# ------------------------------------------------------------------ pure rules


def test_objective_of_keeps_only_this_pool() -> None:
    assert objective_of(objective("hi", 5), "pool", GROUP_V1) == ("hi", 5)
    assert objective_of(objective("unset", None), "pool", GROUP_V1) == ("unset", None)
    assert objective_of(objective("x", 1, pool="other"), "pool", GROUP_V1) is None
    assert objective_of(objective("x", 1, group=GROUP_V1ALPHA2), "pool", GROUP_V1) is None
    assert objective_of(objective("x", 1, group=GROUP_V1ALPHA2), "pool", GROUP_V1ALPHA2) == (
        "x",
        1,
    )


def test_epp_acc_34_weight_zero_target_is_never_chosen() -> None:
    rules = rules_of(rewrite("rw", T1, [rule(["m1"], [("a", 1), ("b", 0)])]), "pool", GROUP_V1)
    chosen = select_rule(rules, "m1")
    assert chosen is not None
    rng = random.Random(3)
    picks = collections.Counter(choose_target(chosen.targets, rng) for _ in range(1000))
    assert picks == {"a": 1000}


def test_epp_acc_34_all_zero_weights_are_uniform() -> None:
    targets = (RewriteTarget("a", 0), RewriteTarget("b", 0))
    rng = random.Random(4)
    picks = collections.Counter(choose_target(targets, rng) for _ in range(1000))
    assert set(picks) == {"a", "b"}
    assert 400 < picks["a"] < 600  # seeded: deterministic, and near 1/2


def test_weighted_choice_follows_weights_and_empty_targets_give_empty_model() -> None:
    targets = (RewriteTarget("a", 3), RewriteTarget("b", 1))
    rng = random.Random(5)
    picks = collections.Counter(choose_target(targets, rng) for _ in range(4000))
    assert 2800 < picks["a"] < 3200
    assert choose_target((), rng) == ""


def test_select_rule_prefers_oldest_exact_then_oldest_generic() -> None:
    objs = [
        rewrite("new", T2, [rule(["m1"], [("new-m1", 1)]), rule([], [("new-any", 1)])]),
        rewrite("old", T1, [rule(["m1", "m2"], [("old-m1", 1)]), rule([], [("old-any", 1)])]),
        rewrite("z-other", T1, [rule([], [("x", 1)])], pool="other"),
    ]
    rules: list[RewriteRule] = [r for o in objs for r in rules_of(o, "pool", GROUP_V1)]
    assert len(rules) == 4

    def target(model: str) -> str | None:
        found = select_rule(rules, model)
        return found.targets[0].model if found is not None else None

    assert target("m1") == "old-m1"
    assert target("m2") == "old-m1"
    assert target("m3") == "old-any"
    only_exact = [r for r in rules if not r.generic]
    assert select_rule(only_exact, "m3") is None


# ------------------------------------------------------------------ watched over the fake


@pytest_asyncio.fixture
async def kube() -> AsyncIterator[KubeFake]:
    async with running_kube(resources=(*api.ALL_RESOURCES, OBJECTIVES, REWRITES)) as fake:
        yield fake


async def until(check: Any, what: str) -> None:
    for _ in range(2000):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


async def test_objectives_and_rewrites_follow_the_api(kube: KubeFake) -> None:
    kube.create(OBJECTIVES, objective("critical", 10))
    kube.create(OBJECTIVES, objective("foreign", 7, pool="other"))
    objectives, rewrites = Objectives("pool"), Rewrites("pool")
    client = connect(server=kube.url)
    tasks = [
        asyncio.create_task(i.run())
        for i in informers(client, NS, objectives, rewrites, retry_delay=0.01)
    ]
    try:
        await until(lambda: objectives.priority("critical") == 10, "listed objective")
        assert objectives.priority("foreign") is None
        kube.create(OBJECTIVES, objective("batch", -1))
        await until(lambda: objectives.priority("batch") == -1, "added objective")
        kube.delete(OBJECTIVES, NS, "critical")
        await until(lambda: objectives.priority("critical") is None, "deleted objective")

        kube.create(REWRITES, rewrite("rw", T1, [rule(["m1"], [("m1-lora", 1)])]))
        await until(lambda: rewrites.rewrite("m1", random.Random(0)) is not None, "rewrite")
        metrics = EppMetrics("pool", lambda: ())
        rewriter = ModelRewriter(rewrites, random.Random(0), metrics)
        assert rewriter("m1") == "m1-lora"
        assert rewriter("m2") == "m2"  # no rule: unchanged, not counted
        samples = parse_samples(metrics.render().decode())
        decisions = [
            (s.labels, s.value)
            for s in samples
            if s.name == "inference_extension_model_rewrite_decisions_total"
        ]
        assert decisions == [
            ({"model_rewrite_name": "rw", "model_name": "m1", "target_model": "m1-lora"}, 1.0)
        ]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
