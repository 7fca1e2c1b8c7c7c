"""`data-parallel-profile-handler` (llm-d): one profile over data-parallel ranks (spec §6.4).

Each rank of a vLLM data-parallel pod is its own endpoint (`<pod>-rank-<i>`,
one port each). After the single profile picks a rank, the request is sent to
the pod's `primaryPort`, where the routing sidecar listens, and
`x-data-parallel-host-port` names the rank's own `ip:port` so the sidecar can
forward it there.

More than one configured profile is a scheduling error (429), as upstream's
handler reports in ProcessResults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyllmd.epp.plugins.base import params
from pyllmd.epp.plugins.profile.pd_common import DATA_PARALLEL_HEADER, with_port
from pyllmd.epp.plugins.profile.pd_profile_handler import check_primary_port
from pyllmd.epp.plugins.profile.single_profile_handler import SingleProfileHandler
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle, ParamError
from pyllmd.epp.scheduling.runner import SchedulingError
from pyllmd.epp.scheduling.types import LLMRequest, ProfileResult, SchedulingResult

TYPE = "data-parallel-profile-handler"
DEFAULT_PRIMARY_PORT = 8000
MULTIPLE = (
    "data parallel profile handler is intended to be used with a single profile, "
    "failed to process multiple profiles"
)


class DataParallelProfileHandler(SingleProfileHandler):
    """Runs the only profile (as `single-profile-handler`), then readdresses its targets."""

    TYPE = TYPE

    def __init__(self, name: str = "", primary_port: int = DEFAULT_PRIMARY_PORT) -> None:
        super().__init__(name)
        check_primary_port(primary_port)
        self.primary_port = primary_port  # 0 is accepted and used as is, like upstream

    def process_results(
        self,
        state: CycleState,
        request: LLMRequest,
        results: Mapping[str, ProfileResult | None],
    ) -> SchedulingResult:
        if len(results) != 1:
            raise SchedulingError(MULTIPLE)
        name, result = next(iter(results.items()))
        if result is None or not result.targets:
            raise SchedulingError(f"failed to run scheduler profile '{name}'")
        headers = {DATA_PARALLEL_HEADER: result.targets[0].hostport}
        moved = ProfileResult(with_port(result.targets, self.primary_port))
        return SchedulingResult(name, {name: moved}, headers=headers)


def factory(name: str, raw: Any, handle: Handle) -> DataParallelProfileHandler:
    """Parameter `primaryPort` (8000; 0 or 1..65535)."""
    try:
        port = params(raw, "dataParallelProfileHandlerParameters").get_int(
            "primaryPort", DEFAULT_PRIMARY_PORT
        )
    except ParamError as err:
        raise ParamError(
            f"failed to parse the parameters of the '{TYPE}' profile handler - {err}"
        ) from None
    return DataParallelProfileHandler(name, port)
