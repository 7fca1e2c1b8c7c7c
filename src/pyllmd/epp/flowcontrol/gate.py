"""The dispatch gate (spec §8): may a queued request go to its candidate endpoints now?

It asks the saturation detector's question (spec §7: mean over the candidates
of max(waiting/queueDepth, kv/kvThreshold); stale or no endpoints → 1.0) and
dispatches below 1.0. Pure: `now` and the dispatch log are passed in.

Deviation from upstream, on purpose: the model servers' metrics are only as
new as the last scrape (50 ms), and upstream releases its whole backlog as
long as that old snapshot reads unsaturated, overshooting by up to a full
queue. Here each request dispatched after an endpoint's last scrape counts as
one more waiting request (split evenly over the candidates it could go to)
until a scrape that finished at least `ARRIVAL_MARGIN` later shows its effect.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyllmd.epp.saturation import SaturationConfig
from pyllmd.epp.scheduling.types import Endpoint

# Time for a released request to reach its model server through the gateway: a
# scrape must end at least this long after a dispatch to be trusted to count it.
ARRIVAL_MARGIN = 0.01


@dataclass
class DispatchLog:
    """Recent dispatch times, grouped by the candidate set each request had."""

    groups: dict[frozenset[str], list[float]] = field(default_factory=dict)

    def record(self, candidates: frozenset[str], at: float) -> None:
        """A request with these candidates (namespaced names) was dispatched at `at`."""
        if candidates:
            self.groups.setdefault(candidates, []).append(at)

    def prune(self, before: float) -> None:
        """Forget dispatches older than `before` (every scrape since has seen them)."""
        for names in list(self.groups):
            times = self.groups[names]
            del times[: bisect_right(times, before)]
            if not times:
                del self.groups[names]

    def unseen(self, name: str, seen_until: float) -> float:
        """Requests possibly sent to endpoint `name` after `seen_until` (fractional shares)."""
        total = 0.0
        for names, times in self.groups.items():
            if name in names:
                total += (len(times) - bisect_right(times, seen_until)) / len(names)
        return total


def gate_saturation(
    endpoints: Sequence[Endpoint], cfg: SaturationConfig, now: float, log: DispatchLog
) -> float:
    """Saturation of `endpoints` with not-yet-scraped dispatches counted as waiting."""
    if not endpoints:
        return 1.0
    total = 0.0
    threshold = cfg.metrics_staleness_threshold
    queue_depth, kv_threshold = cfg.queue_depth_threshold, cfg.kv_cache_util_threshold
    # the dispatches after a scrape time, per candidate set: endpoints scraped together share
    # it (a set's share of each endpoint is added in the log's order, as `unseen` does)
    after: dict[float, list[tuple[frozenset[str], float]]] = {}
    last_until, shares = math.nan, []
    for endpoint in endpoints:
        m = endpoint.metrics
        updated = m.update_time
        if updated <= 0 or now - updated > threshold:  # `is_stale`, inline: per endpoint
            total += 1.0
            continue
        seen_until = updated - ARRIVAL_MARGIN
        if seen_until != last_until:
            found = after.get(seen_until)
            if found is None:
                found = after[seen_until] = [
                    (names, (len(times) - bisect_right(times, seen_until)) / len(names))
                    for names, times in log.groups.items()
                ]
            last_until, shares = seen_until, found
        unseen = 0.0
        if shares:
            name = endpoint.namespaced_name
            for names, share in shares:
                if name in names:
                    unseen += share
        waiting = (m.waiting_queue_size + unseen) / queue_depth
        kv = m.kv_cache_usage_percent / kv_threshold
        total += kv if kv > waiting else waiting  # max(waiting, kv), NaN and ties alike
    return total / len(endpoints)


def prune_horizon(cfg: SaturationConfig, now: float) -> float:
    """Dispatches before this time are seen by every endpoint that is not stale."""
    return now - cfg.metrics_staleness_threshold - ARRIVAL_MARGIN
