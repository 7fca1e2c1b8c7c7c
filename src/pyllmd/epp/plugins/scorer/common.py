"""Min-max normalisation shared by the queue and running-requests scorers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyllmd.epp.scheduling.types import Endpoint


def inverse_min_max(
    endpoints: Sequence[Endpoint], value: Callable[[Endpoint], float]
) -> dict[str, float]:
    """(max − v)/(max − min) per endpoint: the least loaded scores 1; all equal → 1."""
    if not endpoints:
        return {}
    values = [value(ep) for ep in endpoints]
    low, high = min(values), max(values)
    if high == low:
        return {ep.namespaced_name: 1.0 for ep in endpoints}
    return {
        ep.namespaced_name: (high - v) / (high - low)
        for ep, v in zip(endpoints, values, strict=True)
    }
