"""The autoscaler cycle's outputs over figure (d)'s fleet equal a recording.

Performance work on the engine must not change what it decides, writes or
publishes. This runs the benchmark's fleet (fakes, real engine) through a few
cycles, once as benchmarked and once varied so the rarer paths run too (queues
past the threshold, variants without metrics, pending pods, missing
`vllm:cache_config_info`, failed and empty collections, a missing target, a
shared target, a previous target not reached, per-model overrides, scale to zero
enabled, vLLM arguments, a deleted VA), and compares every decision, status
patch, metrics exposition and the V2 capacity store with the recording in
`golden/` (gzipped JSON: the varied fleet in full, the benchmarked 1,000 variants as
digests). The recording was made with the engine as it was before the cycle
was made faster; set PYLLMD_WRITE_GOLDEN=1 to write it anew after an intended
change of behaviour.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from bench.autoscaler_fleet import (
    SATURATION_CONFIG_MAP,
    SYSTEM_NAMESPACE,
    FakeCluster,
    FakeCollector,
    Fleet,
    FleetShape,
    build_fleet,
)

from pyllmd.autoscaler.collect.collector import CollectionResult
from pyllmd.autoscaler.decide import api
from pyllmd.autoscaler.decide.cycle import SCALE_TO_ZERO_CONFIG_MAP
from pyllmd.autoscaler.decide.model import Container
from pyllmd.autoscaler.decide.status import StatusBook
from pyllmd.autoscaler.loops.metrics import ControllerMetrics
from pyllmd.autoscaler.loops.saturation import SaturationEngine
from pyllmd.core.clock import VirtualClock

GOLDEN = Path(__file__).parent / "golden" / "autoscaler_cycle.json.gz"
VARIED = FleetShape(models=12)
ANALYZERS = ("", "saturation")
CYCLE_SECONDS = 30.0


def _va_json(va: api.VariantAutoscaling) -> dict[str, Any]:
    return va.model_dump(by_alias=True)


def _with_va(fleet_vas: list[api.VariantAutoscaling], name: str, **changes: Any) -> None:
    """Replace the VA called `name` by a copy whose JSON has `changes` merged in at the top."""
    for i, va in enumerate(fleet_vas):
        if va.metadata.name == name:
            obj = _va_json(va)
            for path, value in changes.items():
                node = obj
                *parents, leaf = path.split(".")
                for part in parents:
                    node = node[part]
                node[leaf] = value
            fleet_vas[i] = api.VariantAutoscaling.model_validate(obj)
            return
    raise KeyError(name)


def _replace_replicas(results: dict[str, CollectionResult], key: str, change: Any) -> None:
    old = results[key]
    results[key] = CollectionResult(
        tuple(r for r in (change(r) for r in old.replicas) if r is not None),
        old.status,
        old.detail,
    )


def varied_fleet(analyzer_name: str) -> Fleet:
    """The benchmark fleet with one unusual case per model (model 0 stays as benchmarked)."""
    base = build_fleet(VARIED, analyzer_name)
    vas = list(base.vas)
    workloads = dict(base.workloads)
    results = dict(base.results)
    key = [f"bench-org/model-{i:03d}|team-{i % VARIED.namespaces}" for i in range(VARIED.models)]

    # model 1 (up): queues past the threshold (V1 saturated pods, V2 observed k2 → history)
    _replace_replicas(results, key[1], lambda r: dataclasses.replace(r, queue_length=7))
    # model 2: no metrics for its A100 variant (V1 in transition, V2 stored capacity)
    _replace_replicas(results, key[2], lambda r: None if r.variant.endswith("a100") else r)
    # model 3: one pod without vllm:cache_config_info
    first = results[key[3]].replicas[0].pod
    _replace_replicas(
        results, key[3], lambda r: dataclasses.replace(r, num_gpu_blocks=0) if r.pod == first else r
    )
    # model 4: a Deployment with a pod not ready yet
    w = workloads["team-0/model-004-h100"]
    workloads["team-0/model-004-h100"] = dataclasses.replace(w, ready_replicas=w.ready_replicas - 1)
    # model 5: collection failed; model 6: nothing collected
    results[key[5]] = CollectionResult((), "error", "prometheus down")
    results[key[6]] = CollectionResult((), "missing", "no pods")
    # model 7: a VA whose Deployment is gone
    del workloads["team-3/model-007-l40s"]
    # model 8: previous target not reached yet; an unparsable cost
    _with_va(vas, "model-008-l40s", **{"status.desiredOptimizedAlloc.numReplicas": 4})
    _with_va(vas, "model-008-a100", **{"spec.variantCost": "cheap"})
    # model 9: two VAs claim the same Deployment
    _with_va(vas, "model-009-a100", **{"spec.scaleTargetRef.name": "model-009-l40s"})
    # model 10: vLLM arguments and a V0 engine; a VA without any previous allocation
    w = workloads["team-2/model-010-h100"]
    args = ("--model", "m", "--max-num-batched-tokens=4096", "--max-num-seqs", "64")
    workloads["team-2/model-010-h100"] = dataclasses.replace(
        w,
        containers=(
            Container(
                command=("vllm", "serve"), args=args, env={"VLLM_USE_V1": "0"}, gpu_requests=2
            ),
        ),  # fmt: skip
    )
    _with_va(vas, "model-010-a100", **{"status.desiredOptimizedAlloc": None})
    config_maps = dict(base.config_maps)
    sat = dict(config_maps[(SYSTEM_NAMESPACE, SATURATION_CONFIG_MAP)])
    # model 11: a per-model override
    sat["model-011"] = "model_id: bench-org/model-011\nkvCacheThreshold: 0.7\nkvSpareTrigger: 0.2\n"
    config_maps[(SYSTEM_NAMESPACE, SATURATION_CONFIG_MAP)] = sat
    config_maps[(SYSTEM_NAMESPACE, SCALE_TO_ZERO_CONFIG_MAP)] = {
        "m3": "model_id: bench-org/model-003\nenable_scale_to_zero: true\nretention_period: 5m\n"
    }
    return dataclasses.replace(
        base, vas=tuple(vas), workloads=workloads, results=results, config_maps=config_maps
    )


def shifted(fleet: Fleet) -> Fleet:
    """The next cycle's world: every pod's KV usage moved, model 0's first VA deleted."""
    results = {
        k: CollectionResult(
            tuple(
                dataclasses.replace(r, kv_usage=round(min(r.kv_usage * 1.12, 0.99), 4))
                for r in v.replicas
            ),
            v.status,
            v.detail,
        )
        for k, v in fleet.results.items()
    }
    return dataclasses.replace(fleet, vas=fleet.vas[1:], results=results)


def _state_json(engine: SaturationEngine) -> dict[str, Any]:
    s = engine.v2_state
    return {
        "records": {k: dataclasses.asdict(r) for k, r in s.records.items()},
        "history": {k: [list(h.values), h.last_updated] for k, h in s.history.items()},
    }


async def _run(fleets: list[Fleet]) -> list[dict[str, Any]]:
    """One cycle per fleet (30 s apart) on one engine; what each cycle produced."""
    cluster, collector = FakeCluster(fleets[0]), FakeCollector(fleets[0])
    metrics, clock = ControllerMetrics(), VirtualClock()
    engine = SaturationEngine(cluster, collector, metrics, StatusBook(), clock)
    out: list[dict[str, Any]] = []
    for fleet in fleets:
        cluster.fleet = collector.fleet = fleet
        cluster.patches.clear()
        decisions = await engine.cycle()
        out.append(
            {
                "decisions": [d._asdict() for d in decisions],
                "patches": {f"{ns}/{name}": p for (ns, name), p in sorted(cluster.patches.items())},
                "metrics": metrics.render().decode().splitlines(),
                "v2_state": _state_json(engine),
            }
        )
        await clock.advance(CYCLE_SECONDS)
    return out


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


async def _observed() -> dict[str, Any]:
    observed: dict[str, Any] = {}
    for name in ANALYZERS:
        label = name or "v1"
        varied = varied_fleet(name)
        observed[f"varied/{label}"] = await _run([varied, varied, shifted(varied)])
        full = build_fleet(FleetShape(), name)
        cycles = await _run([full, full, shifted(full)])
        # the full fleet is recorded as digests: its outputs would be megabytes
        observed[f"full/{label}"] = [{k: _digest(v) for k, v in c.items()} for c in cycles]
    return observed


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


async def test_cycle_outputs_equal_the_recording() -> None:
    observed = _canonical(await _observed())
    if os.environ.get("PYLLMD_WRITE_GOLDEN") == "1":
        text = json.dumps(observed, sort_keys=True, indent=1) + "\n"
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_bytes(gzip.compress(text.encode(), mtime=0))
    expected = json.loads(gzip.decompress(GOLDEN.read_bytes()))
    assert sorted(observed) == sorted(expected)
    for run in sorted(expected):
        for i, (seen, want) in enumerate(zip(observed[run], expected[run], strict=True)):
            for part in sorted(want):
                assert seen[part] == want[part], f"{run}, cycle {i + 1}: {part} differs"


@pytest.mark.parametrize("analyzer_name", ANALYZERS)
async def test_the_varied_fleet_reaches_the_rare_paths(analyzer_name: str) -> None:
    """The recording is only worth something if the unusual cases really happen."""
    cycles = await _run([varied_fleet(analyzer_name)] * 2)
    patches = cycles[0]["patches"]
    reasons = {c["reason"] for p in patches.values() for c in p["conditions"]}
    assert api.REASON_TARGET_NOT_FOUND in reasons
    assert api.REASON_PROMETHEUS_ERROR in reasons
    steps = {
        (d["target_replicas"] > d["current_replicas"])
        - (d["target_replicas"] < d["current_replicas"])
        for d in cycles[0]["decisions"]
    }
    assert steps == {-1, 0, 1}  # down, hold and up
    if analyzer_name:
        state = cycles[1]["v2_state"]
        assert state["history"]  # the observed k2 was remembered
        assert any(r["learned_from"] == "deployment" for r in state["records"].values())
