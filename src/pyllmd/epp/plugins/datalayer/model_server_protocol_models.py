"""`model-server-protocol-models` (llm-d): the served models of an OpenAI `/v1/models` body.

`parse_models` is the pure extraction: `data[].id` with its `parent` (a LoRA
adapter's base model, "" for base models), in listing order.
"""

from __future__ import annotations

from typing import Any

import orjson

from pyllmd.epp.plugins.base import PluginBase
from pyllmd.epp.scheduling.registry import Handle

TYPE = "model-server-protocol-models"


class ModelServerProtocolModels(PluginBase):
    """Extractor for `models-data-source`: no parameters."""

    TYPE = TYPE
    ROLE = "extractor"

    def extract(self, body: bytes | str) -> tuple[tuple[str, str], ...]:
        return parse_models(body)


def parse_models(body: bytes | str) -> tuple[tuple[str, str], ...]:
    """(id, parent) of every listed model; ValueError when the body is not a model list."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise ValueError(f"invalid /v1/models body: {err}") from None
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise ValueError("invalid /v1/models body: no data list")
    out: list[tuple[str, str]] = []
    for item in data:
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            parent = item.get("parent")
            out.append((item["id"], parent if isinstance(parent, str) else ""))
    return tuple(out)


def factory(name: str, raw: Any, handle: Handle) -> ModelServerProtocolModels:
    """No parameters."""
    return ModelServerProtocolModels(name)
