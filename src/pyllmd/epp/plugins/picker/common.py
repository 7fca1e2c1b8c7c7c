"""Shared by the pickers: `maxNumOfEndpoints` (default 1; ≤0 → 1), and the shuffle that
breaks their ties."""

from __future__ import annotations

import random
from typing import Any, TypeVar

from pyllmd.epp.plugins.base import params


def max_endpoints(raw: Any) -> int:
    """`maxNumOfEndpoints`, non-positive values replaced by 1."""
    value = params(raw, "picker.parameters").get_int("maxNumOfEndpoints", 1)
    return value if value > 0 else 1


T = TypeVar("T")


def shuffle(rng: random.Random, items: list[T]) -> None:
    """`rng.shuffle(items)`: the same permutation from the same draws, without its two calls
    per item (a picker shuffles every endpoint on every request). CPython's algorithm:
    Fisher-Yates from the end, each index drawn by rejection over `getrandbits`; a
    subclass of Random that draws otherwise keeps its own shuffle."""
    if type(rng) is not random.Random:
        rng.shuffle(items)
        return
    bits = rng.getrandbits
    for i in range(len(items) - 1, 0, -1):
        n = i + 1
        k = n.bit_length()
        j = bits(k)
        while j >= n:
            j = bits(k)
        items[i], items[j] = items[j], items[i]
