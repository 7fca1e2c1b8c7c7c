"""The deployment a simulation replays against: a stack file's variants as engines (pure).

Each variant of a `pyllmd up` stack file is a Deployment of `replicas` pods whose container
`args` are simulator flags; they are read with the simulator's own settings model, so
`--max-num-seqs`, `--max-num-batched-tokens`, `--kv-cache-size`... mean what they mean for a
live pod. A variant may omit `variantAutoscaling`: its `deployment.name` then names it.
`build_engine_spec` turns one variant's settings into the batch model's scheduler settings and
step-time function, with the simulator's own builder (`pyllmd.sim.batchspec`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pyllmd.autoscaler.decide.model import DEFAULT_VARIANT_COST, parse_cost
from pyllmd.core.errors import ConfigError
from pyllmd.sim import batchspec
from pyllmd.sim.batch.steptime import Profile
from pyllmd.sim.batchspec import EngineSpec
from pyllmd.sim.config import SimConfig, load_config
from pyllmd.stackfile import DeploymentSpec, parse_local_spec

__all__ = [
    "EngineSpec",
    "Variant",
    "build_engine_spec",
    "parse_stack",
    "variant_for",
    "variants_for",
    "variant_from_args",
]


@dataclass(frozen=True)
class Variant:
    """A variant: its Deployment's name, replicas and the simulator settings of its pods."""

    name: str
    replicas: int
    args: tuple[str, ...]
    config: SimConfig
    kv_cache_size_given: bool  # --kv-cache-size on the command line
    cost: float = DEFAULT_VARIANT_COST  # variantAutoscaling.spec.variantCost, per replica
    namespace: str = "default"
    deployment: DeploymentSpec | None = None  # as the stack file declares it
    autoscaled: bool = False  # a VariantAutoscaling targets it


def _sim_args(args: Sequence[str], where: str) -> list[str]:
    """The container args without `--latency-calculator batch` (a simulation is always batch)."""
    out: list[str] = []
    skip = False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a == "--latency-calculator" and i + 1 < len(args):
            value = args[i + 1]
            skip = True
        elif a.startswith("--latency-calculator="):
            value = a.split("=", 1)[1]
        else:
            out.append(a)
            continue
        if value not in ("", "batch"):
            raise ConfigError(
                f"{where}: --latency-calculator {value}: a simulation replays the batch model; "
                "use `batch` or leave it out"
            )
    return out


def _given(args: Sequence[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def parse_stack(doc: Any, path: str = "STACK") -> tuple[Variant, ...]:
    """A stack file document -> its variants; ConfigError (one line naming it) when invalid."""
    where = f"--stack {path}"
    spec = parse_local_spec(doc, where, require_va=False)
    vas = {(va.metadata.namespace, va.spec.scale_target_ref.name): va for va in spec.vas}
    out: list[Variant] = []
    for i, dep in enumerate(spec.deployments):
        at = f"{where}: variants[{i}]"
        va = vas.get((dep.namespace, dep.name))
        least = 0 if va is not None else 1  # an autoscaled Deployment may start at zero
        if dep.replicas < least:
            raise ConfigError(f"{at}: deployment.replicas must be an integer >= {least}")
        variant = variant_from_args(dep.name, dep.args, dep.replicas, f"{at} args")
        variant = replace(
            variant, namespace=dep.namespace, deployment=dep, autoscaled=va is not None
        )
        if va is not None and va.spec.variant_cost:
            variant = replace(variant, cost=parse_cost(va.spec.variant_cost))
        out.append(variant)
    return tuple(out)


def variant_from_args(
    name: str, args: Sequence[str], replicas: int = 1, where: str = "args"
) -> Variant:
    """A variant whose pods run with the simulator command line `args`."""
    try:
        # a pod's environment: its IP (the KV-event topic needs one with --enable-kvcache)
        env = {"POD_IP": "127.0.0.1", "POD_NAME": f"{name}-0"}
        loaded = load_config(_sim_args(args, where), env, 0, "pyllmd sim")
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    return Variant(name, replicas, tuple(args), loaded.config, _given(args, "--kv-cache-size"))


def variant_for(variants: Sequence[Variant], model: str) -> Variant:
    """The variant serving `model` (the workload's server.model_name); the only one if empty."""
    if not model:
        if len(variants) == 1:
            return variants[0]
        raise ConfigError(
            "--workload: server.model_name: the stack has several variants; name the model "
            "the workload sends to"
        )
    for v in variants:
        if model == v.config.model or model in v.config.served_model_name:
            return v
    known = ", ".join(sorted({v.config.display_model for v in variants}))
    raise ConfigError(f"--workload: server.model_name {model!r}: no variant serves it ({known})")


def variants_for(variants: Sequence[Variant], model: str) -> list[Variant]:
    """The variants serving `model` (the workload's server.model_name); all of them when it is
    empty and they serve one model."""
    if not model:
        served = {v.config.display_model for v in variants}
        if len(served) == 1:
            return list(variants)
        raise ConfigError(
            "--workload: server.model_name: the stack serves several models; name the model "
            "the workload sends to"
        )
    found = [v for v in variants if model == v.config.model or model in v.config.served_model_name]
    if not found:
        known = ", ".join(sorted({v.config.display_model for v in variants}))
        raise ConfigError(
            f"--workload: server.model_name {model!r}: no variant serves it ({known})"
        )
    return found


def build_engine_spec(variant: Variant, profile: Profile | None = None) -> EngineSpec:
    """The batch model of one pod of `variant` (with `profile` instead of its
    `--latency-profile` when given); ConfigError (one line) when it cannot run."""
    return batchspec.build_engine_spec(
        variant.config,
        variant.kv_cache_size_given,
        _given(variant.args, "--max-waiting-queue-length"),
        profile,
    )
