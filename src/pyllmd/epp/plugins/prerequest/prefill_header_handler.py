"""`prefill-header-handler` (llm-d): tells the decode pod's sidecar where to prefill.

After scheduling, if the prefill profile picked an endpoint, the request header
`x-prefiller-host-port: <ip:port>` is set; a value the client sent is always
cleared first, so a client cannot steer prefill work to a host of its choosing.
"""

from __future__ import annotations

from typing import Any

from pyllmd.epp.plugins.base import PluginBase, params
from pyllmd.epp.plugins.profile.pd_common import PREFILL_HEADER
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle, ParamError
from pyllmd.epp.scheduling.types import LLMRequest, SchedulingResult

TYPE = "prefill-header-handler"


class PrefillHeaderHandler(PluginBase):
    """Sets (or clears) `x-prefiller-host-port` in the forwarded request headers."""

    TYPE = TYPE

    def __init__(self, name: str = "", prefill_profile: str = "prefill") -> None:
        super().__init__(name)
        self.prefill_profile = prefill_profile

    def pre_request(self, state: CycleState, request: LLMRequest, result: SchedulingResult) -> None:
        if any(k.lower() == PREFILL_HEADER for k in request.headers):
            result.headers[PREFILL_HEADER] = ""  # never forward the client's value
        prefill = result.profile_results.get(self.prefill_profile)
        if prefill is None or not prefill.targets:
            return
        result.headers[PREFILL_HEADER] = prefill.targets[0].hostport


def factory(name: str, raw: Any, handle: Handle) -> PrefillHeaderHandler:
    """Parameter `prefillProfile` (`prefill`)."""
    try:
        profile = params(raw, "prefillHeaderHandlerParameters").get_str("prefillProfile", "prefill")
    except ParamError as err:
        raise ParamError(
            f"failed to parse the parameters of the '{TYPE}' pre-request plugin - {err}"
        ) from None
    return PrefillHeaderHandler(name, profile)
