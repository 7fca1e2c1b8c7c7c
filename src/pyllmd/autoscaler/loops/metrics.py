"""The controller's own metrics (spec §7.1): what HPA / KEDA read.

Names, types, help texts and labels are upstream's; label names are declared
in alphabetical order because the Go client prints them sorted, so the
exposition is byte-compatible. Two differences from upstream, both about
keeping the series truthful:

* `wva_replica_scaling_total` is incremented (upstream registers it and never
  does) each time a variant's published desired replicas change, with
  `direction` `up`/`down` and `reason` = a short, low-cardinality form of the
  decision's reason (see `short_reason`). The first value published for a
  variant after start is not counted: there is nothing to compare it with.
* Series of deleted VAs are removed (`forget`), and publishing a variant under
  a new accelerator removes its series under the old one, so an HPA selecting
  on `variant_name` never sees two desired values.
"""

from __future__ import annotations

import re

from pyllmd.core.metricset import CONTENT_TYPE, Family, GaugeChild, Registry

DESIRED_REPLICAS = "wva_desired_replicas"
CURRENT_REPLICAS = "wva_current_replicas"
DESIRED_RATIO = "wva_desired_ratio"
REPLICA_SCALING_TOTAL = "wva_replica_scaling_total"
UP = "up"
DOWN = "down"
__all__ = ["CONTENT_TYPE", "ControllerMetrics", "desired_ratio", "short_reason"]

_MAX_REASON = 40


def desired_ratio(current: int, desired: int) -> float:
    """`desired / current`; `desired` itself when current is 0 (a 0 → N move)."""
    return float(desired) if current == 0 else desired / current


def short_reason(reason: str) -> str:
    """A decision reason as a label value: its head (before `:` or `(`), snake_case, ≤ 40 chars.

    Reasons carry numbers ("spare kv 0.06 < 0.10"); using them whole would make
    one counter series per distinct number.
    """
    head = re.split(r"[:(]", reason, maxsplit=1)[0].strip().lower()
    slug = re.sub(r"[^a-z0-9]+", "_", head).strip("_")[:_MAX_REASON].rstrip("_")
    return slug or "unspecified"


class ControllerMetrics:
    """The four `wva_*` families on one Registry, plus the bookkeeping to keep them exact."""

    def __init__(self, controller_instance: str = "", registry: Registry | None = None) -> None:
        self.registry = registry or Registry()
        self.controller_instance = controller_instance
        extra = ("controller_instance",) if controller_instance else ()
        base = ("accelerator_type", *extra, "namespace", "variant_name")
        scaling = (*extra, "direction", "namespace", "reason", "variant_name")
        self.desired = self.registry.add(
            Family(DESIRED_REPLICAS, "gauge", "Desired number of replicas for each variant", base)
        )
        self.current = self.registry.add(
            Family(CURRENT_REPLICAS, "gauge", "Current number of replicas for each variant", base)
        )
        self.ratio = self.registry.add(
            Family(
                DESIRED_RATIO,
                "gauge",
                "Ratio of the desired number of replicas and the current number of replicas "
                "for each variant",
                base,
            )
        )
        self.scaling = self.registry.add(
            Family(
                REPLICA_SCALING_TOTAL,
                "counter",
                "Total number of replica scaling operations",
                scaling,
            )
        )
        self._published: dict[tuple[str, str], tuple[str, int]] = {}
        # (namespace, variant) → (accelerator, current, desired, ratio series): publish runs
        # for every VA every cycle, so the three series are looked up once, not each time
        self._series: dict[tuple[str, str], tuple[str, GaugeChild, GaugeChild, GaugeChild]] = {}

    def _base(self, variant: str, namespace: str, accelerator: str) -> tuple[str, ...]:
        extra = (self.controller_instance,) if self.controller_instance else ()
        return (accelerator, *extra, namespace, variant)

    def publish(
        self,
        variant: str,
        namespace: str,
        accelerator: str,
        current: int,
        desired: int,
        reason: str = "",
    ) -> None:
        """Set the three gauges of a variant; count a change of its desired replicas."""
        key = (namespace, variant)
        previous = self._published.get(key)
        if previous is not None and previous[0] != accelerator:
            self._remove_gauges(variant, namespace, previous[0])
        if previous is not None and previous[1] != desired:
            direction = UP if desired > previous[1] else DOWN
            extra = (self.controller_instance,) if self.controller_instance else ()
            labels = (*extra, direction, namespace, short_reason(reason), variant)
            self.scaling.counter(*labels).inc()
        self._published[key] = (accelerator, desired)
        series = self._series.get(key)
        if series is None or series[0] != accelerator:
            labels = self._base(variant, namespace, accelerator)
            series = (
                accelerator,
                self.current.gauge(*labels),
                self.desired.gauge(*labels),
                self.ratio.gauge(*labels),
            )
            self._series[key] = series
        series[1].set(float(current))
        series[2].set(float(desired))
        series[3].set(desired_ratio(current, desired))

    def published_desired(self, namespace: str, variant: str) -> int | None:
        """The desired replicas last published for a variant, if any."""
        entry = self._published.get((namespace, variant))
        return None if entry is None else entry[1]

    def forget(self, namespace: str, variant: str) -> None:
        """Remove every series of a variant (its VA was deleted)."""
        self._published.pop((namespace, variant), None)
        self._series.pop((namespace, variant), None)
        for family in (self.desired, self.current, self.ratio, self.scaling):
            ns_at = family.labelnames.index("namespace")
            var_at = family.labelnames.index("variant_name")
            for values in list(family.children):
                if values[ns_at] == namespace and values[var_at] == variant:
                    family.remove(*values)

    def _remove_gauges(self, variant: str, namespace: str, accelerator: str) -> None:
        self._series.pop((namespace, variant), None)
        labels = self._base(variant, namespace, accelerator)
        for family in (self.desired, self.current, self.ratio):
            family.remove(*labels)

    def render(self) -> bytes:
        """The exposition in the classic text format (serve with `CONTENT_TYPE`)."""
        return self.registry.render()
