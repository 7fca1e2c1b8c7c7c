"""`always-disagg-pd-decider` (llm-d): every request gets a separate prefill."""

from __future__ import annotations

from typing import Any

from pyllmd.epp.plugins.base import PluginBase
from pyllmd.epp.plugins.profile.pd_common import PrefixMatch
from pyllmd.epp.scheduling.registry import Handle
from pyllmd.epp.scheduling.types import Endpoint

TYPE = "always-disagg-pd-decider"


class AlwaysDisaggPdDecider(PluginBase):
    """Says yes whatever the request or endpoint."""

    TYPE = TYPE

    def disaggregate(
        self, input_tokens: int, endpoint: Endpoint, match: PrefixMatch | None
    ) -> bool:
        return True


def factory(name: str, raw: Any, handle: Handle) -> AlwaysDisaggPdDecider:
    """No parameters (any given are ignored, as upstream does)."""
    return AlwaysDisaggPdDecider(name)
