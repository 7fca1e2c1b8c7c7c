"""GPU limiter (spec §6.3, acceptance checks 56-57)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyllmd.autoscaler.decide.limiter import (
    available,
    inventory,
    limit,
    limit_by_nodes,
    normalize_product,
)
from pyllmd.autoscaler.decide.model import GpuNode

from .decisionkit import decision, targets


def node(product: str, count: int, vendor: str = "nvidia.com", name: str = "n") -> GpuNode:
    return GpuNode(name=name, vendor=vendor, product=product, count=count)


@pytest.mark.parametrize(
    ("product", "kind"),
    [
        ("NVIDIA-A100-SXM4-80GB", "A100"),
        ("NVIDIA-H100-80GB-HBM3", "H100"),
        ("AMD-MI300X-192G", "MI300X"),
        ("Intel-Gaudi-2-96GB", "Gaudi-2"),
        ("Intel-Max-1550", "Max-1550"),
        ("Intel-Gaudi", "Gaudi"),
        ("Tesla-T4", "T4"),
        ("H100", "H100"),
        ("", ""),
    ],
)
def test_normalize_product(product: str, kind: str) -> None:
    assert normalize_product(product) == kind


def test_inventory_sums_nodes() -> None:
    nodes = [
        node("NVIDIA-H100-80GB-HBM3", 8, name="a"),
        node("NVIDIA-H100-80GB-HBM3", 4, name="b"),
        node("AMD-MI300X-192G", 8, vendor="amd.com"),
        node("NVIDIA-A100-SXM4-80GB", 0),
    ]
    assert inventory(nodes) == {"H100": 12, "MI300X": 8}


def test_available_subtracts_managed_usage() -> None:
    ds = [decision("a", 3, 3, gpus=2), decision("b", 1, 5, accelerator="A100")]
    assert available({"H100": 8, "A100": 0}, ds) == {"H100": 2, "A100": 0}
    assert available({"H100": 4}, [decision("a", 3, 3, gpus=2)]) == {"H100": 0}


def test_wva_acc_56_limiter_partial() -> None:
    # 8 H100s, 6 used → 2 free; +3 replicas × 1 GPU → only +2.
    ds = [decision("v", 6, 9)]
    (d,) = limit_by_nodes(ds, [node("NVIDIA-H100-80GB-HBM3", 8)])
    assert d.target_replicas == 8
    assert d.was_limited and d.limited_by == "gpu-limiter"


def test_wva_acc_56_limiter_whole_replicas_only() -> None:
    # 3 free GPUs, 2 GPUs per replica, +2 wanted → +1.
    (d,) = limit([decision("v", 0, 2, gpus=2)], {"H100": 3})
    assert d.target_replicas == 1 and d.was_limited


@pytest.mark.parametrize(
    ("free", "target", "limited"), [(2, 3, False), (3, 3, False), (1, 2, True)]
)
def test_limiter_around_exact_fit(free: int, target: int, limited: bool) -> None:
    (d,) = limit([decision("v", 1, 3)], {"H100": 1 + free})
    assert (d.target_replicas, d.was_limited) == (target, limited)


def test_most_saturated_served_first_then_cheaper() -> None:
    ds = [
        decision("roomy", 0, 2, spare=0.5),
        decision("tight", 0, 2, spare=0.01),
        decision("tight-dear", 0, 2, spare=0.01, cost=50),
    ]
    assert targets(limit(ds, {"H100": 3})) == {"roomy": 0, "tight": 2, "tight-dear": 1}


def test_partial_grant_does_not_waste_gpus() -> None:
    # "big" (2 GPUs/replica) gets 1 replica of the 3 free GPUs; the odd GPU goes to "small".
    ds = [decision("big", 0, 2, gpus=2, spare=0.0), decision("small", 0, 1, spare=0.1)]
    assert targets(limit(ds, {"H100": 3})) == {"big": 1, "small": 1}


def test_wva_acc_57_limiter_scale_down_and_unknown() -> None:
    ds = [
        decision("down", 4, 2),
        decision("unknown", 1, 3, accelerator="B200"),
        decision("no-label", 1, 2, accelerator=""),
    ]
    out = limit(ds, {"H100": 0})
    assert out[0] == ds[0]  # scale-down passes unchanged (and is never marked)
    assert out[1].target_replicas == 1 and out[1].was_limited
    assert out[2].target_replicas == 1 and out[2].was_limited


def test_types_do_not_share_pools() -> None:
    ds = [decision("h", 0, 2), decision("a", 0, 2, accelerator="A100")]
    assert targets(limit(ds, {"H100": 2, "A100": 1})) == {"h": 2, "a": 1}


@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),
            st.integers(0, 8),
            st.integers(1, 4),
            st.sampled_from(["H100", "A100", "X"]),
        ),
        max_size=5,
    ),
    st.integers(0, 20),
    st.integers(0, 20),
)
def test_limiter_never_exceeds_free_gpus(
    specs: list[tuple[int, int, int, str]], h100: int, a100: int
) -> None:
    ds = [
        decision(f"v{i}", c, t, gpus=g, accelerator=acc) for i, (c, t, g, acc) in enumerate(specs)
    ]
    limits = {"H100": h100, "A100": a100}
    free = available(limits, ds)
    out = limit(ds, limits)
    for kind in ("H100", "A100", "X"):
        grown = sum(
            (o.target_replicas - o.current_replicas) * o.gpus_per_replica
            for o in out
            if o.accelerator == kind and o.target_replicas > o.current_replicas
        )
        assert grown <= free.get(kind, 0)
    for d, o in zip(ds, out, strict=True):
        if d.target_replicas <= d.current_replicas:
            assert o == d
        else:
            assert d.current_replicas <= o.target_replicas <= d.target_replicas
