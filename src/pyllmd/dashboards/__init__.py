"""The Grafana dashboards of the three parts (model servers, endpoint picker, autoscaler), as
JSON: shipped to clusters as ConfigMaps by `config/dashboards` (identical copies, a test
checks) and read by `pyllmd simulate`'s timeline, which evaluates the same panels."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

NAMES = ("model-servers", "endpoint-picker", "autoscaler")


def load(name: str) -> dict[str, Any]:
    """One dashboard's JSON model."""
    text = resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data
