"""Sleep-mode state transitions as pure logic (spec §10.3, vLLM's sleep levels and tags)."""

from __future__ import annotations

import pytest

from pyllmd.core.errors import LlmdError
from pyllmd.sim.engine.sleep import SleepState, parse_level

AWAKE = {"awake": 1, "weights_offloaded": 0, "discard_all": 0}


def test_start_is_awake() -> None:
    s = SleepState()
    assert not s.is_sleeping and not s.kv_cache_asleep
    assert s.gauge() == AWAKE


@pytest.mark.parametrize(
    ("level", "gauge"),
    [
        (0, {"awake": 0, "weights_offloaded": 0, "discard_all": 0}),
        (1, {"awake": 0, "weights_offloaded": 1, "discard_all": 0}),
        (2, {"awake": 0, "weights_offloaded": 0, "discard_all": 1}),
    ],
)
def test_sleep_levels(level: int, gauge: dict[str, int]) -> None:
    s = SleepState().sleep(level)
    assert s.is_sleeping
    assert s.kv_cache_asleep is (level >= 1)
    assert s.gauge() == gauge
    assert s.wake_up(None) == SleepState()


def test_partial_wake_up_keeps_sleeping_until_every_part_is_awake() -> None:
    s = SleepState().sleep(1).wake_up(["weights"])
    assert s.is_sleeping and s.kv_cache_asleep
    assert s.gauge()["awake"] == 0
    s = s.wake_up(["kv_cache"])
    assert not s.is_sleeping and s.gauge() == AWAKE


def test_kv_cache_tag_alone_wakes_the_cache_but_not_the_engine() -> None:
    s = SleepState().sleep(2).wake_up(["kv_cache"])
    assert s.is_sleeping and not s.kv_cache_asleep
    assert s.gauge()["discard_all"] == 1


def test_unknown_or_empty_tags_wake_nothing_but_unpause_a_level_0_sleep() -> None:
    assert SleepState().sleep(1).wake_up([""]).is_sleeping
    assert SleepState().sleep(1).wake_up(["bogus"]).is_sleeping
    assert not SleepState().sleep(0).wake_up(["bogus"]).is_sleeping


def test_sleeping_again_keeps_the_deeper_level() -> None:
    s = SleepState().sleep(2).sleep(1)
    assert s.gauge()["discard_all"] == 1
    assert SleepState().sleep(1).sleep(0).kv_cache_asleep


@pytest.mark.parametrize(("text", "level"), [(None, 1), ("0", 0), ("1", 1), ("2", 2)])
def test_parse_level(text: str | None, level: int) -> None:
    assert parse_level(text) == level


@pytest.mark.parametrize("text", ["3", "-1", "x", "", "1.5"])
def test_parse_level_rejects(text: str) -> None:
    with pytest.raises(LlmdError) as e:
        parse_level(text)
    assert e.value.status == 400
    assert f"invalid sleep level '{text}'" in e.value.message
