"""Request keys (kv-events contract §1.2) with a memo of recently keyed blocks.

`pyllmd.core.prefix.request_keys` encodes every block as canonical CBOR and
hashes it (~2.5 µs a block, mostly the CBOR). The scorer keys every prompt and
the event processor every stored block, and both see the same shared prefixes
again and again, so a bounded LRU of (parent key, block tokens) → key skips most
of that work. The values are exactly `request_keys`'s (the tests compare them).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from pyllmd.core.prefix import fnv1a_64, model_root, request_payload

DEFAULT_MEMO = 65_536  # blocks; ~200 bytes each


class RequestKeyer:
    """Computes request keys for one (block size, seed), remembering recent blocks."""

    def __init__(self, block_size: int, seed: str, capacity: int = DEFAULT_MEMO) -> None:
        if block_size <= 0:
            raise ValueError(f"block_size must be > 0, got {block_size}")
        self.block_size = block_size
        self.seed = seed
        self.capacity = max(1, capacity)
        self._memo: OrderedDict[tuple[int, tuple[int, ...]], int] = OrderedDict()

    def keys(self, tokens: Sequence[int], model: str, parent: int = 0) -> list[int]:
        """Keys of the full blocks of `tokens`, chained from `parent` (0: the model's root)."""
        size = self.block_size
        prev = parent if parent != 0 else model_root(self.seed, model)
        memo = self._memo
        out: list[int] = []
        for start in range(0, len(tokens) - len(tokens) % size, size):
            block = tuple(tokens[start : start + size])
            slot = (prev, block)
            found = memo.get(slot)
            if found is None:
                found = fnv1a_64(request_payload(prev, block, None))
                memo[slot] = found
                if len(memo) > self.capacity:
                    memo.popitem(last=False)
            else:
                memo.move_to_end(slot)
            out.append(found)
            prev = found
        return out
