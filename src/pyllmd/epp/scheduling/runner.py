"""The scheduling cycle (spec §6.1): profile handler → profiles (filters, scorers, picker).

Pure: time comes in as `now`, randomness as a `random.Random`. Per-plugin
durations are measured only when the shell injects a `timer` and an `observe`
callback (for `inference_extension_plugin_duration_seconds`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from pyllmd.epp.scheduling.interfaces import (
    CycleState,
    Filter,
    Picker,
    ProfileHandler,
    Scorer,
)
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest, ProfileResult, SchedulingResult

# Extension-point label values of the plugin-duration metric.
EP_PROFILE_PICKER = "ProfilePicker"
EP_FILTER = "Filter"
EP_SCORER = "Scorer"
EP_PICKER = "Picker"
EP_PROCESS_RESULTS = "ProcessProfilesResults"

NO_ENDPOINTS = "no endpoints available for the given request"

Observe = Callable[[str, str, str, float], None]  # extension point, type, name, seconds
T = TypeVar("T")


class SchedulingError(Exception):
    """Scheduling failed; the shell answers 429 with this message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Profile:
    """One named pipeline: filters in order, weighted scorers, one picker."""

    filters: tuple[Filter, ...]
    scorers: tuple[tuple[Scorer, float], ...]
    picker: Picker


class ProfileRunner:
    """The scheduling framework's cycle: runs the profiles the handler picks and lets it
    assemble the result (upstream's `Scheduler`)."""

    def __init__(
        self,
        profiles: Mapping[str, Profile],
        handler: ProfileHandler,
        *,
        timer: Callable[[], float] | None = None,
        observe: Observe | None = None,
    ) -> None:
        self.profiles = dict(profiles)
        self.handler = handler
        self._timer = timer
        self._observe = observe

    def schedule(
        self,
        request: LLMRequest,
        candidates: Sequence[Endpoint],
        rng: random.Random,
        now: float,
    ) -> SchedulingResult:
        """One scheduling cycle with a fresh cycle state."""
        return self.schedule_in(CycleState(rng=rng, now=now), request, candidates)

    def schedule_in(
        self, state: CycleState, request: LLMRequest, candidates: Sequence[Endpoint]
    ) -> SchedulingResult:
        """One cycle with the caller's state (kept for PreRequest plugins)."""
        names = list(self.profiles)
        results: dict[str, ProfileResult | None] = {}
        # Upstream loops until the handler returns nothing; a handler that never
        # stops would hang the request, so the rounds are bounded.
        for _ in range(2 * len(names) + 2):
            picked = self._timed(
                EP_PROFILE_PICKER,
                self.handler,
                lambda: self.handler.pick_profiles(state, request, names, results),
            )
            if not picked:
                break
            for name in picked:
                profile = self.profiles.get(name)
                if profile is None:
                    raise SchedulingError(f"profile handler picked unknown profile '{name}'")
                results[name] = self._run_profile(profile, state, request, candidates)
        else:
            raise SchedulingError("profile handler did not stop picking profiles")
        if not results:
            raise SchedulingError(
                f"failed to run any SchedulingProfile for the request - {request.request_id}"
            )
        return self._timed(
            EP_PROCESS_RESULTS,
            self.handler,
            lambda: self.handler.process_results(state, request, results),
        )

    def _run_profile(
        self,
        profile: Profile,
        state: CycleState,
        request: LLMRequest,
        candidates: Sequence[Endpoint],
    ) -> ProfileResult | None:
        """None when the profile fails (no endpoints left), as upstream stores nil."""
        endpoints = list(candidates)
        for flt in profile.filters:
            if not endpoints:
                break
            endpoints = self._timed(EP_FILTER, flt, partial(flt.filter, state, request, endpoints))
        if not endpoints:
            return None
        names = [ep.namespaced_name for ep in endpoints]
        totals = dict.fromkeys(names, 0.0)
        for scorer, weight in profile.scorers:
            scores = self._timed(
                EP_SCORER, scorer, partial(scorer.score, state, request, endpoints)
            )
            get = totals.get
            for key, value in scores.items():  # each score clamped to [0, 1]; NaN counts 0
                total = get(key)
                if total is None:
                    continue
                if 0.0 <= value <= 1.0:
                    totals[key] = total + value * weight
                else:
                    totals[key] = total + (1.0 if value > 1.0 else 0.0) * weight
        scored = list(zip(endpoints, map(totals.__getitem__, names), strict=True))
        targets = self._timed(EP_PICKER, profile.picker, lambda: profile.picker.pick(state, scored))
        if not targets:
            return None
        return ProfileResult(targets=tuple(targets))

    def _timed(self, point: str, plugin: object, call: Callable[[], T]) -> T:
        if self._timer is None or self._observe is None:
            return call()
        start = self._timer()
        try:
            return call()
        finally:
            self._observe(
                point,
                str(getattr(plugin, "type_name", "")),
                str(getattr(plugin, "name", "")),
                self._timer() - start,
            )
