"""Builders shared by the EPP unit tests."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.types import Endpoint, EndpointMetrics, LLMRequest


def endpoint(
    name: str,
    address: str = "10.0.0.1",
    port: int = 8000,
    labels: Mapping[str, str] | None = None,
    **metrics: Any,
) -> Endpoint:
    """An endpoint in namespace `ns` with the given metrics fields."""
    return Endpoint(
        name=name,
        namespace="ns",
        pod_name=name.rsplit("-rank-", 1)[0],
        address=address,
        port=port,
        labels=dict(labels or {}),
        metrics=EndpointMetrics(**metrics),
    )


def request(
    prompt: str = "hi",
    model: str = "m",
    headers: Mapping[str, str] | None = None,
    priority: int = 0,
    **body: Any,
) -> LLMRequest:
    """A completions request."""
    return LLMRequest(
        request_id="r1",
        incoming_model=model,
        target_model=model,
        api="completions",
        body={"model": model, "prompt": prompt, **body},
        headers=dict(headers or {}),
        priority=priority,
    )


def state(seed: int = 0, now: float = 100.0) -> CycleState:
    """A fresh cycle state with a seeded rng."""
    return CycleState(rng=random.Random(seed), now=now)
