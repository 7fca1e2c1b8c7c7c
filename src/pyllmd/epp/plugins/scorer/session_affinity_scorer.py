"""`session-affinity-scorer` (llm-d): keep a session on the endpoint that served it.

A request carrying `x-session-token` = base64(`<namespace>/<endpoint name>`)
scores that endpoint 1 and every other 0; no or an undecodable token scores
all 0. The token is handed to the client on the response: set when the model
server's response headers arrive, so it is part of the headers Envoy returns.
Upstream writes it in its ResponseComplete hook, after the response headers
were already sent, so there the client never receives it (spec §14).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from typing import Any

from pyllmd.epp.plugins.base import PluginBase
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest, SchedulingResult

TYPE = "session-affinity-scorer"
SESSION_HEADER = "x-session-token"

log = logging.getLogger(__name__)


def session_token(endpoint: Endpoint) -> str:
    """The token naming `endpoint`: standard base64 of its namespaced name."""
    return base64.b64encode(endpoint.namespaced_name.encode()).decode()


def decode_token(token: str) -> str | None:
    """The endpoint namespaced name in a token, or None when it is not base64."""
    try:
        return base64.b64decode(token, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None


class SessionAffinityScorer(PluginBase):
    """1 for the endpoint named by the session token, 0 for the rest."""

    TYPE = TYPE

    def score(
        self, state: CycleState, request: LLMRequest, endpoints: Sequence[Endpoint]
    ) -> dict[str, float]:
        token = request.headers.get(SESSION_HEADER, "")
        wanted = decode_token(token) if token else None
        if token and wanted is None:
            log.debug("undecodable %s header %r", SESSION_HEADER, token)
        return {ep.namespaced_name: float(ep.namespaced_name == wanted) for ep in endpoints}

    def response_received(
        self, request: LLMRequest, result: SchedulingResult, headers: dict[str, str]
    ) -> None:
        """Hands the client the token of the endpoint that served it."""
        if result.targets:
            headers[SESSION_HEADER] = session_token(result.targets[0])


def factory(name: str, raw: Any, handle: Handle) -> SessionAffinityScorer:
    """No parameters."""
    return SessionAffinityScorer(name)
