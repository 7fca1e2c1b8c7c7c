"""The `models-data-source` loop: each endpoint's `/v1/models`, stored as its served models.

The same per-endpoint task machinery as the metrics scrape (jitter, backoff,
membership following), pointed at the serving address and run at most once a
second: model lists change only when adapters are loaded or unloaded.
"""

from __future__ import annotations

import dataclasses

from pyllmd.epp.datalayer.scrape import ScrapeError, Scraper
from pyllmd.epp.plugins.datalayer.model_server_protocol_models import parse_models
from pyllmd.epp.scheduling.types import Endpoint

MIN_INTERVAL = 1.0  # seconds between `/v1/models` scrapes of one endpoint


class ModelsScraper(Scraper):
    """Scrapes `<scheme>://<ip:port><path>` (the serving port) into `served_models`."""

    KIND = "models"

    def url(self, endpoint: Endpoint) -> str:
        return f"{self.scheme}://{endpoint.hostport}{self.path}"

    async def scrape_once(self, key: str) -> bool:
        endpoint = self.datastore.get(key)
        if endpoint is None:
            return False
        try:
            models = parse_models(await self.fetch(self.url(endpoint)))
        except (ScrapeError, ValueError) as exc:
            return self.failed(key, exc)
        current = self.datastore.get(key)
        if current is None:
            return False
        if current.metrics.served_models == models:
            return True
        metrics = dataclasses.replace(current.metrics, served_models=models)
        return self.datastore.update_metrics(key, metrics)
