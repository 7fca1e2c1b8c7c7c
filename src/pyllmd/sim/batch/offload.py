"""The CPU tier of the KV cache (`--kv-offloading-size`): evicted prefix blocks kept in host
memory, least recently used first out.

A block the GPU allocator reuses while it is still in the prefix cache moves here instead of
being forgotten. A later request whose prefix continues past its GPU hits into this tier loads
those blocks over the host link before its prefill (see `Engine` in scheduler.py). Keys only:
no bytes are kept. An OrderedDict is the LRU (no library needed for a dict with move-to-end).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable


class CpuTier:
    """Up to `capacity` block keys, least recently used evicted first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.keys: OrderedDict[object, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self.keys)

    def put(self, key: object) -> None:
        """A block leaves the GPU: keep its key (the most recently used)."""
        keys = self.keys
        if key in keys:
            keys.move_to_end(key)
            return
        keys[key] = None
        if len(keys) > self.capacity:
            keys.popitem(last=False)

    def run_length(self, key_at: Callable[[int], object], first: int, limit: int) -> int:
        """How many consecutive blocks from index `first` (below `limit`) this tier holds;
        each one found becomes the most recently used."""
        keys = self.keys
        n = 0
        for i in range(first, limit):
            key = key_at(i)
            if key not in keys:
                break
            keys.move_to_end(key)
            n += 1
        return n

    def clear(self) -> None:
        self.keys.clear()
