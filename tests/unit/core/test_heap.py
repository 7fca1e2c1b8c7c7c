"""freeze_heap: start-up objects leave the collector's generations for good."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from pyllmd.core.heap import freeze_heap, gc_paused


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    gc.disable()  # no automatic collection between the test's steps
    yield
    gc.enable()
    gc.unfreeze()


def test_live_objects_are_frozen_and_garbage_is_collected_first(unfrozen: None) -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a reference cycle: only the cyclic collector frees it

    kept = [Node() for _ in range(100)]
    garbage = weakref.ref(Node())  # unreachable at once, but a cycle keeps it alive
    assert garbage() is not None
    freeze_heap()
    assert garbage() is None  # collected before the freeze, not frozen forever
    assert gc.get_freeze_count() >= len(kept)
    assert not any(type(o) is Node for o in gc.get_objects())  # no longer in any generation


def test_gc_paused_turns_the_collector_off_inside_and_restores_it_even_on_error() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()
