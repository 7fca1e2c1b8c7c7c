"""`header-based-testing-filter` (conformance tests): endpoints named by a request header."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyllmd.epp.framework.interfaces import CycleState
from pyllmd.epp.framework.registry import Handle
from pyllmd.epp.framework.types import Endpoint, LLMRequest
from pyllmd.epp.plugins.base import PluginBase

TYPE = "header-based-testing-filter"
HEADER = "test-epp-endpoint-selection"


class HeaderBasedTestingFilter(PluginBase):
    """Keeps endpoints whose address is listed (comma-separated) in the header, header order."""

    TYPE = TYPE

    def filter(
        self, state: CycleState, request: LLMRequest, endpoints: Sequence[Endpoint]
    ) -> list[Endpoint]:
        value = request.headers.get(HEADER, "")
        if not value:
            return []
        kept: list[Endpoint] = []
        for address in (part.strip() for part in value.split(",")):
            kept.extend(ep for ep in endpoints if ep.address == address and ep not in kept)
        return kept


def factory(name: str, raw: Any, handle: Handle) -> HeaderBasedTestingFilter:
    """No parameters."""
    return HeaderBasedTestingFilter(name)
