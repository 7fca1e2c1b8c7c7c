"""The built-in gateway's balancing rule, shared by `pyllmd up`'s gateway and `pyllmd simulate`:
the pod with the fewest requests in flight, ties taken in turn."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence


def pick(
    pods: Sequence[str], in_flight: Mapping[str, int], excluded: Collection[str], turn: int
) -> str | None:
    """The pod with the fewest requests in flight, skipping `excluded`; ties by `turn`."""
    candidates = [p for p in pods if p not in excluded]
    if not candidates:
        return None
    least = min(in_flight.get(p, 0) for p in candidates)
    best = [p for p in candidates if in_flight.get(p, 0) == least]
    return best[turn % len(best)]
