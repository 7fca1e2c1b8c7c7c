"""PromQL over samples scraped on a virtual clock: a series store and an instant-query
evaluator with Prometheus 2.x's semantics, so the autoscaler's own queries run in
`pyllmd simulate` as they run against Prometheus."""

from pyllmd.simulate.promql.evaluate import Evaluator
from pyllmd.simulate.promql.store import STALE_NAN, SeriesStore, is_stale, labels_of, to_ms
from pyllmd.simulate.promql.values import Unsupported

__all__ = ["STALE_NAN", "Evaluator", "SeriesStore", "Unsupported", "is_stale", "labels_of", "to_ms"]
