"""`active-request-scorer` (llm-d): prefer endpoints with fewer requests in flight.

PreRequest counts the request on the first target of every profile result;
the count drops when the response completes, or when the entry is older than
`requestTimeout` (a request whose completion was never seen). Score =
(max − count)/max, max over every tracked endpoint; untracked or idle → 1.

Expiry is checked against the cycle's `now` whenever the scorer is used, so
the plugin needs no timer task; upstream sweeps a TTL cache once per timeout,
which lets expired requests linger in the counts for up to one more timeout.
Two in-flight requests with the same `x-request-id` are tracked separately
(upstream overwrites the first entry and never releases its count).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyllmd.core.gosyntax import go_parse_duration_ns
from pyllmd.epp.plugins.base import PluginBase, params
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle, ParamError
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest, SchedulingResult

TYPE = "active-request-scorer"
DEFAULT_REQUEST_TIMEOUT = 120.0  # seconds (Go "2m")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Entry:
    endpoints: tuple[str, ...]
    expires_at: float


class ActiveRequestScorer(PluginBase):
    """In-flight request counts per endpoint, as a score."""

    TYPE = TYPE

    def __init__(self, name: str = "", request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> None:
        super().__init__(name)
        self.request_timeout = request_timeout
        self.counts: dict[str, int] = {}  # endpoint namespaced name → requests in flight
        self._entries: dict[str, deque[_Entry]] = {}  # request id → its entries, oldest first

    def score(
        self, state: CycleState, request: LLMRequest, endpoints: Sequence[Endpoint]
    ) -> dict[str, float]:
        self.expire(state.now)
        top = max(self.counts.values(), default=0)
        out: dict[str, float] = {}
        for ep in endpoints:
            count = self.counts.get(ep.namespaced_name, 0)
            out[ep.namespaced_name] = 1.0 if count == 0 or top == 0 else (top - count) / top
        return out

    def pre_request(self, state: CycleState, request: LLMRequest, result: SchedulingResult) -> None:
        self.expire(state.now)
        names = tuple(
            r.targets[0].namespaced_name for r in result.profile_results.values() if r.targets
        )
        for name in names:
            self.counts[name] = self.counts.get(name, 0) + 1
        entry = _Entry(names, state.now + self.request_timeout)
        self._entries.setdefault(request.request_id, deque()).append(entry)

    def response_complete(self, request: LLMRequest, result: SchedulingResult) -> None:
        entries = self._entries.get(request.request_id)
        if not entries:
            return
        self._release(entries.popleft())
        if not entries:
            del self._entries[request.request_id]

    def expire(self, now: float) -> None:
        """Releases requests older than `requestTimeout`."""
        for request_id in list(self._entries):
            entries = self._entries[request_id]
            while entries and entries[0].expires_at <= now:
                self._release(entries.popleft())
            if not entries:
                del self._entries[request_id]

    def _release(self, entry: _Entry) -> None:
        for name in entry.endpoints:
            count = self.counts.get(name, 0)
            if count <= 1:
                self.counts.pop(name, None)
            else:
                self.counts[name] = count - 1


def parse_timeout(text: str) -> float:
    """`requestTimeout` as seconds; empty, unparsable or ≤ 0 → 2m (logged, as upstream)."""
    if not text:
        return DEFAULT_REQUEST_TIMEOUT
    try:
        seconds = go_parse_duration_ns(text) / 1e9
    except ValueError as err:
        log.error("invalid request timeout duration %r (%s), using default 2m", text, err)
        return DEFAULT_REQUEST_TIMEOUT
    if seconds <= 0:
        log.error("invalid request timeout duration %r, using default 2m", text)
        return DEFAULT_REQUEST_TIMEOUT
    return seconds


def factory(name: str, raw: Any, handle: Handle) -> ActiveRequestScorer:
    """Parameter `requestTimeout` (Go duration string, `2m`)."""
    try:
        text = params(raw, "ActiveRequestParameters").get_str("requestTimeout", "")
    except ParamError as err:
        raise ParamError(f"failed to parse the parameters of the '{TYPE}' scorer - {err}") from None
    return ActiveRequestScorer(name, parse_timeout(text))
