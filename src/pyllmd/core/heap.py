"""Keeping long-lived start-up objects out of Python's cyclic garbage collector.

A server builds most of its objects once (tables, compiled models, caches, the
first cycle's state) and keeps them. Every full collection would walk them all
again: for the autoscaler's 1,000-variant cycle that is 35-60 ms of CPU about
every tenth cycle. `freeze_heap` collects once, then moves every live object to
the permanent generation, so later collections walk only what was made since.
The cost: a frozen object that later becomes part of unreachable cycle is not
reclaimed, which is why this is done once, after start-up.

`gc_paused` turns the collector off for a bounded computation that allocates many
objects and makes no reference cycles: a virtual-time replay (`pyllmd simulate`,
`pyllmd calibrate`) builds every request, step record and token time of a run, and
the collections its allocations trigger would walk them all again and again (a fifth
of a replay's time, more with a previous replay's results still alive).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["freeze_heap", "gc_paused"]


def freeze_heap() -> None:
    """Collect, then freeze every surviving object (see the module docstring)."""
    gc.collect()
    gc.freeze()


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off inside the block, then as it was (see the module
    docstring). Reference counting still frees everything that is not in a cycle."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
