"""`pd-profile-handler` (llm-d): disaggregated prefill/decode scheduling (spec §6.6).

The decode profile runs first. If it found an endpoint and a prefill profile is
still unrun, the configured decider looks at the estimated prompt length and at
what the decode endpoint already caches; a yes runs the prefill profile too.
Each decision is left in the cycle state as a `PdDecision` for the shell to
count. The decode profile is primary (its endpoint is the destination); the
`prefill-header-handler` then tells the decode pod's sidecar where to prefill.

With `primaryPort` the decode endpoints are data-parallel ranks behind one pod
port: the destination becomes `ip:primaryPort` and `x-data-parallel-host-port`
carries the chosen rank's own address.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from pyllmd.epp.plugins.base import PluginBase, params
from pyllmd.epp.plugins.profile.always_disagg_pd_decider import TYPE as ALWAYS_DISAGG
from pyllmd.epp.plugins.profile.pd_common import (
    DATA_PARALLEL_HEADER,
    DECODE_ONLY,
    DEFAULT_PREFIX_PLUGIN,
    PREFILL_DECODE,
    PdDecider,
    input_tokens,
    is_decider,
    prefix_match,
    with_port,
)
from pyllmd.epp.scheduling.interfaces import CycleState, PdDecision
from pyllmd.epp.scheduling.registry import Handle, ParamError
from pyllmd.epp.scheduling.runner import SchedulingError
from pyllmd.epp.scheduling.types import LLMRequest, ProfileResult, SchedulingResult

TYPE = "pd-profile-handler"
NO_DECODE = "failed to find available decode workers"


def check_primary_port(port: int) -> None:
    """0 (off) or a TCP port; upstream's message otherwise."""
    if port != 0 and not 1 <= port <= 65535:
        raise ParamError(f"invalid primaryPort: must be between 1 and 65535, got {port}")


class PdProfileHandler(PluginBase):
    """Decode first, then prefill when the decider says so; decode is primary."""

    TYPE = TYPE

    def __init__(
        self,
        name: str,
        decider: PdDecider,
        *,
        decode_profile: str = "decode",
        prefill_profile: str = "prefill",
        prefix_plugin_type: str = DEFAULT_PREFIX_PLUGIN,
        prefix_plugin_name: str = DEFAULT_PREFIX_PLUGIN,
        primary_port: int = 0,
    ) -> None:
        super().__init__(name)
        check_primary_port(primary_port)
        self.decider = decider
        self.decode_profile = decode_profile
        self.prefill_profile = prefill_profile
        self.prefix_plugin_type = prefix_plugin_type  # kept for parity; state is keyed by name
        self.prefix_plugin_name = prefix_plugin_name
        self.primary_port = primary_port

    def pick_profiles(
        self,
        state: CycleState,
        request: LLMRequest,
        profiles: Sequence[str],
        results: Mapping[str, ProfileResult | None],
    ) -> list[str]:
        if self.decode_profile not in results:
            return [self.decode_profile]
        decode = results[self.decode_profile]
        if len(profiles) == len(results) or decode is None or not decode.targets:
            return []
        if self.prefill_profile in results:  # a third profile would make upstream loop forever
            return []
        endpoint = decode.targets[0]
        match = prefix_match(state, self.prefix_plugin_name, endpoint)
        if self.decider.disaggregate(input_tokens(request), endpoint, match):
            state.pd_decisions.append(PdDecision(request.target_model, PREFILL_DECODE))
            return [self.prefill_profile]
        state.pd_decisions.append(PdDecision(request.target_model, DECODE_ONLY))
        return []

    def process_results(
        self,
        state: CycleState,
        request: LLMRequest,
        results: Mapping[str, ProfileResult | None],
    ) -> SchedulingResult:
        decode = results.get(self.decode_profile)
        if decode is None or not decode.targets:
            raise SchedulingError(NO_DECODE)
        headers: dict[str, str] = {}
        if self.primary_port:
            headers[DATA_PARALLEL_HEADER] = decode.targets[0].hostport
            decode = ProfileResult(with_port(decode.targets, self.primary_port))
        out = {self.decode_profile: decode}
        prefill = results.get(self.prefill_profile)
        if prefill is not None and self.prefill_profile != self.decode_profile:
            out[self.prefill_profile] = prefill
        return SchedulingResult(self.decode_profile, out, headers=headers)


def factory(name: str, raw: Any, handle: Handle) -> PdProfileHandler:
    """Parameters `decodeProfile`, `prefillProfile`, `prefixPluginType`, `prefixPluginName`,
    `primaryPort`, `deciderPluginName` (a decider declared earlier in `plugins`)."""
    try:
        p = params(raw, "pdProfileHandlerParameters")
        decode = p.get_str("decodeProfile", "decode")
        prefill = p.get_str("prefillProfile", "prefill")
        prefix_type = p.get_str("prefixPluginType", DEFAULT_PREFIX_PLUGIN)
        prefix_name = p.get_str("prefixPluginName", "") or prefix_type
        port = p.get_int("primaryPort", 0)
        decider_name = p.get_str("deciderPluginName", ALWAYS_DISAGG)
    except ParamError as err:
        raise ParamError(
            f"failed to parse the parameters of the '{TYPE}' profile handler - {err}"
        ) from None
    check_primary_port(port)
    if not decider_name:
        raise ParamError("decider plugin name is not defined")
    decider = handle.plugin(decider_name)
    if decider is None:
        raise ParamError(f"invalid decider plugin type: {decider_name}")
    if not is_decider(decider):
        raise ParamError(
            f"decider plugin of type: {decider_name} does not implement pdDeciderPlugin"
        )
    return PdProfileHandler(
        name,
        cast(PdDecider, decider),
        decode_profile=decode,
        prefill_profile=prefill,
        prefix_plugin_type=prefix_type,
        prefix_plugin_name=prefix_name,
        primary_port=port,
    )
