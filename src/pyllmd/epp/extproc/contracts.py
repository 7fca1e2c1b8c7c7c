"""The small interfaces the ext_proc servicer is built against (spec §2.3).

The servicer (`servicer.py`) needs only these shapes from the scheduler, the
datastore, admission control and the metrics registry, so each side can be
built and tested on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pyllmd.epp.requests import Usage
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest, SchedulingResult


class RequestScheduler(Protocol):
    """Picks the target endpoints of one request; raises with a message when it cannot."""

    def schedule(self, request: LLMRequest, candidates: Sequence[Endpoint]) -> SchedulingResult: ...


class EndpointSource(Protocol):
    """The datastore's current endpoints and whether the pool was read."""

    @property
    def synced(self) -> bool: ...

    def __call__(self) -> Sequence[Endpoint]: ...


class Admission(Protocol):
    """Admission control before scheduling: a rejection message (→ 429) or None."""

    def admit(self, request: LLMRequest, candidates: Sequence[Endpoint]) -> str | None: ...


class FlowControl(Protocol):
    """Flow control (gate `flowControl`): hold a request until it may be scheduled.

    Raises `requests.EppError` (429 capacity, 503 TTL, 500 internal) instead of
    returning; `candidates` is re-read while the request waits.
    """

    async def enqueue_and_wait(
        self,
        request: LLMRequest,
        byte_size: int,
        candidates: Callable[[], Sequence[Endpoint]],
    ) -> None: ...


class ResponseObserver(Protocol):
    """Told of each scheduled request's response: its headers (it may add to them before
    the servicer re-emits them to Envoy), and once when the response or stream ended."""

    def response_received(
        self, request: LLMRequest, result: SchedulingResult, headers: dict[str, str]
    ) -> None: ...

    def response_complete(self, request: LLMRequest, result: SchedulingResult) -> None: ...


class RequestMetrics(Protocol):
    """The per-request metrics the servicer reports (spec §9); labels are model names."""

    def request_received(self, model: str, target: str, size: int) -> None: ...
    def request_error(self, model: str, target: str, code: str) -> None: ...
    def running_changed(self, model: str, delta: int) -> None: ...
    def response_done(
        self, model: str, target: str, size: int, latency: float, usage: Usage | None = None
    ) -> None:
        """A response ended: its size, latency and the usage it reported (for NTPOT), if any."""
        ...

    def tokens(self, model: str, target: str, usage: Usage) -> None: ...


class NullMetrics:
    """Records nothing; the default when no metrics registry is wired in."""

    def request_received(self, model: str, target: str, size: int) -> None:
        pass

    def request_error(self, model: str, target: str, code: str) -> None:
        pass

    def running_changed(self, model: str, delta: int) -> None:
        pass

    def response_done(
        self, model: str, target: str, size: int, latency: float, usage: Usage | None = None
    ) -> None:
        pass

    def tokens(self, model: str, target: str, usage: Usage) -> None:
        pass


@dataclass
class StaticEndpoints:
    """A fixed endpoint list, synced from the start (static mode and tests)."""

    endpoints: Sequence[Endpoint] = ()
    synced: bool = True

    def __call__(self) -> Sequence[Endpoint]:
        return self.endpoints
