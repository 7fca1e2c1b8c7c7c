"""`single-profile-handler`: runs the only profile once; it is the primary one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyllmd.epp.plugins.base import PluginBase
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle
from pyllmd.epp.scheduling.runner import SchedulingError
from pyllmd.epp.scheduling.types import LLMRequest, ProfileResult, SchedulingResult

TYPE = "single-profile-handler"


class SingleProfileHandler(PluginBase):
    """Picks every profile not yet run (there is only one), then reports it."""

    TYPE = TYPE

    def pick_profiles(
        self,
        state: CycleState,
        request: LLMRequest,
        profiles: Sequence[str],
        results: Mapping[str, ProfileResult | None],
    ) -> list[str]:
        return [name for name in profiles if name not in results]

    def process_results(
        self,
        state: CycleState,
        request: LLMRequest,
        results: Mapping[str, ProfileResult | None],
    ) -> SchedulingResult:
        if len(results) != 1:
            raise SchedulingError(
                "single profile handler is intended to be used with a single profile, "
                "failed to process multiple profiles"
            )
        name, result = next(iter(results.items()))
        if result is None:
            raise SchedulingError(f"failed to run scheduler profile '{name}'")
        return SchedulingResult(primary_profile=name, profile_results={name: result})


def factory(name: str, raw: Any, handle: Handle) -> SingleProfileHandler:
    """No parameters."""
    return SingleProfileHandler(name)
