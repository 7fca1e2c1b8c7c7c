"""The scheduling cycle (spec §6.1; checks 43, 47)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from pyllmd.epp.config.loader import load_config_text
from pyllmd.epp.plugins.filter.by_label import ByLabel
from pyllmd.epp.plugins.picker.max_score_picker import MaxScorePicker
from pyllmd.epp.plugins.profile.single_profile_handler import SingleProfileHandler
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.runner import Profile, SchedulingError
from pyllmd.epp.scheduling.runner import ProfileRunner as Scheduler
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest
from tests.unit.epp.plugin_helpers import endpoint, request


class Fixed:
    """A scorer returning preset scores."""

    type_name = "fixed"

    def __init__(self, name: str, scores: dict[str, float]) -> None:
        self.name = name
        self.scores = scores

    def score(
        self, state: CycleState, request: LLMRequest, endpoints: Sequence[Endpoint]
    ) -> dict[str, float]:
        return dict(self.scores)


class Recorder:
    """Picker that records the totals it was given."""

    type_name = "recorder"
    name = "recorder"

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    def pick(self, state: CycleState, scored: Sequence[tuple[Endpoint, float]]) -> list[Endpoint]:
        self.seen = {ep.name: s for ep, s in scored}
        return [scored[0][0]]


A, B = endpoint("a-rank-0", "10.0.0.1"), endpoint("b-rank-0", "10.0.0.2")


def test_epp_acc_47_weighted_sum_and_clamp() -> None:
    picker = Recorder()
    profile = Profile(
        filters=(),
        scorers=(
            (Fixed("queue", {"ns/a-rank-0": 1.0, "ns/b-rank-0": 3.0}), 2.0),
            (Fixed("kv", {"ns/a-rank-0": 0.7, "ns/b-rank-0": -1.0}), 2.0),
            (Fixed("prefix", {"ns/a-rank-0": 0.5, "ns/zzz": 1.0}), 3.0),
        ),
        picker=picker,
    )
    sched = Scheduler({"default": profile}, SingleProfileHandler())
    result = sched.schedule(request(), [A, B], random.Random(0), 0.0)
    assert picker.seen["a-rank-0"] == pytest.approx(4.9)
    assert picker.seen["b-rank-0"] == pytest.approx(2.0)  # 3 clamped to 1, −1 to 0, omitted → 0
    assert result.primary_profile == "default" and result.targets == (A,)


def test_a_nan_score_counts_zero_and_infinities_clamp() -> None:
    picker = Recorder()
    profile = Profile(
        filters=(),
        scorers=(
            (Fixed("odd", {"ns/a-rank-0": float("nan"), "ns/b-rank-0": float("inf")}), 2.0),
            (Fixed("neg", {"ns/a-rank-0": float("-inf"), "ns/b-rank-0": 0.25}), 2.0),
        ),
        picker=picker,
    )
    Scheduler({"default": profile}, SingleProfileHandler()).schedule(
        request(), [A, B], random.Random(0), 0.0
    )
    assert picker.seen == {"a-rank-0": 0.0, "b-rank-0": 2.5}


def test_epp_acc_43_all_filtered_out_is_a_scheduling_error() -> None:
    drop_all = ByLabel("none", "role", ("nothing",), False)
    profile = Profile((drop_all,), (), MaxScorePicker())
    sched = Scheduler({"default": profile}, SingleProfileHandler())
    with pytest.raises(SchedulingError) as err:
        sched.schedule(request(), [A, B], random.Random(0), 0.0)
    assert err.value.message == "failed to run scheduler profile 'default'"


def test_default_config_schedules_least_loaded() -> None:
    cfg = load_config_text(None)
    busy = endpoint("busy-rank-0", "10.0.0.1", waiting_queue_size=9, kv_cache_usage_percent=0.9)
    idle = endpoint("idle-rank-0", "10.0.0.2", waiting_queue_size=0, kv_cache_usage_percent=0.1)
    for seed in range(10):
        result = cfg.scheduler.schedule(request(), [busy, idle], random.Random(seed), 0.0)
        assert result.targets[0].name == "idle-rank-0"


def test_plugin_timings_reported_through_injected_timer() -> None:
    ticks = iter(range(1000))
    seen: list[tuple[str, str, str, float]] = []
    profile = Profile((), ((Fixed("f", {}), 1.0),), MaxScorePicker("msp"))
    sched = Scheduler(
        {"default": profile},
        SingleProfileHandler(),
        timer=lambda: float(next(ticks)),
        observe=lambda *row: seen.append(row),
    )
    sched.schedule(request(), [A], random.Random(0), 0.0)
    points = [(p, t, n) for p, t, n, _ in seen]
    assert points == [
        ("ProfilePicker", "single-profile-handler", "single-profile-handler"),
        ("Scorer", "fixed", "f"),
        ("Picker", "max-score-picker", "msp"),
        ("ProfilePicker", "single-profile-handler", "single-profile-handler"),
        ("ProcessProfilesResults", "single-profile-handler", "single-profile-handler"),
    ]
    assert all(d == 1.0 for *_, d in seen)


def test_scheduler_without_timer_records_nothing_and_filters_in_order() -> None:
    keep_a = ByLabel("keep-a", "k", ("a",), False)
    a = endpoint("a-rank-0", labels={"k": "a"})
    profile = Profile((keep_a,), (), MaxScorePicker())
    sched = Scheduler({"default": profile}, SingleProfileHandler())
    assert sched.schedule(request(), [a, B], random.Random(0), 0.0).targets == (a,)
