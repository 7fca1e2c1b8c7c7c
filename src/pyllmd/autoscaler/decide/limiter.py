"""GPU limiter (spec §6.3): caps V1 scale-ups at the free GPUs of the variant's accelerator type.

Inventory is the sum of allocatable GPUs per normalised product name (`NVIDIA-A100-SXM4-80GB`
→ `A100`); usage is what the WVA-managed variants hold now (current replicas × GPUs per
replica). Scale-ups are served greedily, most saturated first (`greedy-by-saturation`),
in whole replicas; scale-downs pass untouched; an accelerator type no node offers has 0
free GPUs, so its scale-ups are blocked.

Difference from upstream, on purpose: a grant that does not fill a whole replica is not
consumed (upstream takes the partial GPUs from the pool although no replica uses them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from pyllmd.autoscaler.decide.model import Decision, GpuNode

NAME = "greedy-by-saturation"
LIMITED_BY = "gpu-limiter"
VENDORS = ("nvidia.com", "amd.com", "intel.com")


def normalize_product(product: str) -> str:
    """Short accelerator type of a `<vendor>/gpu.product` label value."""
    parts = product.split("-")
    if len(parts) < 2:
        return product
    if parts[0] == "Intel":
        return "-".join(parts[1:3])
    return parts[1]


def inventory(nodes: Iterable[GpuNode]) -> dict[str, int]:
    """Allocatable GPUs per accelerator type, over all nodes."""
    limits: dict[str, int] = {}
    for node in nodes:
        if node.count <= 0:
            continue
        kind = normalize_product(node.product)
        limits[kind] = limits.get(kind, 0) + node.count
    return limits


def available(limits: Mapping[str, int], decisions: Iterable[Decision]) -> dict[str, int]:
    """Free GPUs per type: limit minus what the decisions' variants hold now (≥ 0)."""
    used: dict[str, int] = {}
    for d in decisions:
        used[d.accelerator] = used.get(d.accelerator, 0) + d.current_replicas * d.gpus_per_replica
    return {kind: max(0, limit - used.get(kind, 0)) for kind, limit in limits.items()}


def limit(decisions: Sequence[Decision], limits: Mapping[str, int]) -> list[Decision]:
    """Decisions with scale-ups cut to the free GPUs, most saturated variant first."""
    free = available(limits, decisions)
    out = list(decisions)
    order = sorted(
        (i for i, d in enumerate(out) if d.target_replicas > d.current_replicas),
        key=lambda i: (out[i].spare_capacity, out[i].cost),
    )
    for i in order:
        d = out[i]
        wanted = d.target_replicas - d.current_replicas
        per_replica = d.gpus_per_replica if d.gpus_per_replica > 0 else 1
        granted = min(wanted * per_replica, free.get(d.accelerator, 0)) // per_replica
        if d.accelerator in free:
            free[d.accelerator] -= granted * per_replica
        if granted < wanted:
            out[i] = d._replace(
                target_replicas=d.current_replicas + granted,
                was_limited=True,
                limited_by=LIMITED_BY,
            )
    return out


def limit_by_nodes(decisions: Sequence[Decision], nodes: Iterable[GpuNode]) -> list[Decision]:
    """`limit` against the inventory of `nodes`."""
    return limit(decisions, inventory(nodes))
