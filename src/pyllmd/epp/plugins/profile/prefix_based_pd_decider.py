"""`prefix-based-pd-decider` (llm-d): prefill separately only when the part of the
prompt the decode endpoint does not hold is long enough (spec §6.4).

`nonCachedTokens` ≤ 0 disaggregates every request. Otherwise a request shorter
than `nonCachedTokens` tokens, or one whose decode endpoint has no prefix match
information, is decoded in place; else it is disaggregated when the uncached
suffix (estimated tokens − matched blocks × block size) is at least
`nonCachedTokens`.
"""

from __future__ import annotations

import logging
from typing import Any

from pyllmd.epp.plugins.base import PluginBase, params
from pyllmd.epp.plugins.profile.pd_common import PrefixMatch
from pyllmd.epp.scheduling.registry import Handle, ParamError
from pyllmd.epp.scheduling.types import Endpoint

TYPE = "prefix-based-pd-decider"
NEGATIVE = "nonCachedTokens parameter of prefix disaggregation decider cannot be negative"

log = logging.getLogger(__name__)


class PrefixBasedPdDecider(PluginBase):
    """Disaggregates when at least `non_cached_tokens` prompt tokens are not cached."""

    TYPE = TYPE

    def __init__(self, name: str = "", non_cached_tokens: int = 0) -> None:
        super().__init__(name)
        if non_cached_tokens < 0:
            raise ParamError(NEGATIVE)
        self.non_cached_tokens = non_cached_tokens

    def disaggregate(
        self, input_tokens: int, endpoint: Endpoint, match: PrefixMatch | None
    ) -> bool:
        if self.non_cached_tokens <= 0:
            return True
        if input_tokens < self.non_cached_tokens:
            return False
        if match is None:
            log.debug("no prefix match information for %s: decode only", endpoint.namespaced_name)
            return False
        cached = match.match_blocks * match.block_size_tokens
        return input_tokens - cached >= self.non_cached_tokens


def factory(name: str, raw: Any, handle: Handle) -> PrefixBasedPdDecider:
    """Parameter `nonCachedTokens` (0; negative is an error)."""
    try:
        tokens = params(raw, "PrefixBasedPDDeciderConfig").get_int("nonCachedTokens", 0)
    except ParamError as err:
        raise ParamError(f"failed to parse {TYPE} plugin config: {err}") from None
    try:
        return PrefixBasedPdDecider(name, tokens)
    except ParamError as err:
        raise ParamError(f"failed to create {TYPE} plugin: {err}") from None
