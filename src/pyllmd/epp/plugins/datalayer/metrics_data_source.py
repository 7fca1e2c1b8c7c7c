"""`metrics-data-source`: the HTTP scrape of each endpoint's Prometheus metrics.

Its parameters override the scrape flags (`--model-server-metrics-scheme`,
`--model-server-metrics-path`, `--model-server-metrics-https-insecure-skip-verify`)
when the data layer is on; unset ones keep the flag values.
"""

from __future__ import annotations

from typing import Any

from pyllmd.epp.plugins.base import PluginBase, params
from pyllmd.epp.scheduling.registry import Handle

TYPE = "metrics-data-source"
SCHEMES = ("http", "https")


class MetricsDataSource(PluginBase):
    """Scheme, path and TLS verification of the metrics scrape (None: the flag's value)."""

    TYPE = TYPE
    ROLE = "data-source"

    def __init__(
        self,
        name: str = "",
        scheme: str | None = None,
        path: str | None = None,
        insecure_skip_verify: bool | None = None,
    ) -> None:
        super().__init__(name)
        self.scheme = scheme
        self.path = path
        self.insecure_skip_verify = insecure_skip_verify


def factory(name: str, raw: Any, handle: Handle) -> MetricsDataSource:
    """Parameters `scheme` (http|https), `path`, `insecureSkipVerify`."""
    p = params(raw, "datasource.Parameters")
    scheme = p.get_str("scheme", "") or None
    if scheme is not None and scheme not in SCHEMES:
        raise ValueError(f"unsupported scheme: {scheme}")
    path = p.get_str("path", "") or None
    given = any(str(k).lower() == "insecureskipverify" for k in (raw or {}))
    insecure = p.get_bool("insecureSkipVerify", True) if given else None
    return MetricsDataSource(name, scheme, path, insecure)
