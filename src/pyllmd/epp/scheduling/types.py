"""Plain data the scheduler works on: endpoints with their latest metrics, and the LLM request.

Everything here is immutable and free of I/O; the datastore (shell) builds
`Endpoint` snapshots for each scheduling cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class EndpointMetrics:
    """The latest scraped model-server metrics of one endpoint (spec §4.1)."""

    waiting_queue_size: int = 0
    running_requests_size: int = 0
    kv_cache_usage_percent: float = 0.0
    active_models: frozenset[str] = frozenset()
    waiting_models: frozenset[str] = frozenset()
    max_active_models: int = 0
    cache_block_size: int = 0
    cache_num_gpu_blocks: int = 0
    update_time: float = 0.0  # Clock.now() of the last successful scrape; 0 = never
    served_models: tuple[tuple[str, str], ...] = ()  # (id, parent or "") from `/v1/models`


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One model-server serving port on one pod (`<pod>-rank-<i>`)."""

    name: str  # `<pod>-rank-<i>`
    namespace: str
    pod_name: str
    address: str
    port: int
    labels: Mapping[str, str] = field(default_factory=dict)
    metrics_host: str = ""  # `ip:port` scraped for metrics
    metrics: EndpointMetrics = EndpointMetrics()
    # `<namespace>/<name>`, the key plugins index endpoints by: derived, made once (a
    # scheduling cycle reads it several times per endpoint and plugin)
    namespaced_name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "namespaced_name", f"{self.namespace}/{self.name}")

    @property
    def hostport(self) -> str:
        """`ip:port` as sent in `x-gateway-destination-endpoint` (IPv6 bracketed)."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """What the scheduler knows of one request (spec §2.3)."""

    request_id: str
    incoming_model: str
    target_model: str
    api: str  # "completions" | "chat-completions" | "responses" | "conversations"
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    priority: int = 0

    def prompt_bytes(self) -> bytes:
        """The bytes prefix hashing and token estimates use (spec §6.3)."""
        import orjson

        if self.api == "completions":
            prompt = self.body.get("prompt", "")
            return prompt.encode() if isinstance(prompt, str) else b""
        if self.api == "chat-completions":
            return orjson.dumps(self.body.get("messages", []))
        if self.api == "conversations":
            return orjson.dumps(self.body.get("items", []))
        parts: list[Any] = []
        if "instructions" in self.body:
            parts.append({"instructions": self.body["instructions"]})
        if "tools" in self.body:
            parts.append({"tools": self.body["tools"]})
        parts.append({"input": self.body.get("input")})
        return orjson.dumps(parts)


@dataclass(frozen=True, slots=True)
class ProfileResult:
    """The endpoints one profile picked, best first."""

    targets: tuple[Endpoint, ...]


@dataclass(frozen=True, slots=True)
class SchedulingResult:
    """All profile results and which one is primary (its first target is the destination)."""

    primary_profile: str
    profile_results: Mapping[str, ProfileResult]
    # Request headers plugins add (profile handlers when building the result, PreRequest
    # plugins after it); the servicer forwards them upstream.
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def targets(self) -> tuple[Endpoint, ...]:
        """The primary profile's targets: destination first, then fallbacks."""
        return self.profile_results[self.primary_profile].targets
