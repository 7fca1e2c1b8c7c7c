"""`models-data-source` (llm-d): scrape each endpoint's OpenAI `/v1/models` listing.

Used under the `dataLayer` gate with the `model-server-protocol-models` extractor,
which records the served model ids (and LoRA parents) on the endpoint.
"""

from __future__ import annotations

from typing import Any

from pyllmd.epp.plugins.base import PluginBase, params
from pyllmd.epp.scheduling.registry import Handle

TYPE = "models-data-source"
SCHEMES = ("http", "https")


class ModelsDataSource(PluginBase):
    """Scheme, path and TLS verification of the `/v1/models` scrape."""

    TYPE = TYPE
    ROLE = "data-source"

    def __init__(
        self,
        name: str = "",
        scheme: str = "http",
        path: str = "/v1/models",
        insecure_skip_verify: bool = True,
    ) -> None:
        super().__init__(name)
        self.scheme = scheme
        self.path = path
        self.insecure_skip_verify = insecure_skip_verify


def factory(name: str, raw: Any, handle: Handle) -> ModelsDataSource:
    """Parameters `scheme` (`http`), `path` (`/v1/models`), `insecureSkipVerify` (true)."""
    p = params(raw, "models.Parameters")
    scheme = p.get_str("scheme", "http") or "http"
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported scheme: {scheme}")
    path = p.get_str("path", "/v1/models") or "/v1/models"
    return ModelsDataSource(name, scheme, path, p.get_bool("insecureSkipVerify", True))
