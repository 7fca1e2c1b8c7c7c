"""The engines' KV events, fed to the endpoint picker's precise prefix scorers in virtual time.

Live, each vLLM pod publishes `BlockStored` / `BlockRemoved` over ZMQ and the picker's
subscriber hands them to its `kvindex.EventProcessor`. Here each pod's engine tells its
`KVBlocks` listener when a prompt block fills or leaves the prefix cache; the feed turns that
into the same decoded events (the engine's block hash, its parent's, the block's token ids)
and delivers them to every precise scorer's processor `delay` seconds later (the ZMQ hop and
the picker's processing), before the next scheduling decision that comes after that time.
`drop_prefix_cache` empties a pod's prefix cache as `/sleep?level=1` does on the live
simulator (the blocks no request holds lose their keys) and publishes `AllBlocksCleared`.

Simulated prompts are token ids, rendered as text for the picker (`routing.token_text`); the
scorers get `TokenTextTokenizer`, its inverse, so they compute the request keys of exactly the
ids the engines hashed (with as many characters per id as the text has). Blocks of
generated tokens are not published: no later prompt of a simulated workload contains a
response's tokens.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence

from pyllmd.epp.kvindex.events import AllBlocksCleared, BlockRemoved, BlockStored, Event
from pyllmd.epp.kvindex.processor import EventProcessor
from pyllmd.sim.batch.scheduler import Request
from pyllmd.simulate.cluster import PodRun

DEFAULT_DELAY_S = 0.005
_CHARS = 4
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_VALUE = {c: i for i, c in enumerate(_ALPHABET)}


class TokenTextTokenizer:
    """The inverse of `routing.token_text`: `chars` characters (four by default) back to one
    token id, read from the first four of them."""

    def __init__(self, chars: int = _CHARS) -> None:
        self.chars = chars

    def ids(self, text: str, add_special_tokens: bool = True) -> list[int]:
        n = len(_ALPHABET)
        v = _VALUE
        w = self.chars
        return [
            v[text[i]] + n * (v[text[i + 1]] + n * (v[text[i + 2]] + n * v[text[i + 3]]))
            for i in range(0, len(text) - len(text) % w, w)
        ]

    def tokens(self, text: str) -> list[str]:
        w = self.chars
        return [text[i : i + w] for i in range(0, len(text) - len(text) % w, w)]

    def encode(self, text: str) -> tuple[list[int], list[str]]:
        return self.ids(text), self.tokens(text)

    def count(self, text: str) -> int:
        return len(text) // self.chars


class _PodListener:
    """One pod's `BlockListener`: its events, stamped with the engine's clock."""

    def __init__(self, feed: KVFeed, run: PodRun, address: str) -> None:
        self.feed, self.run, self.address = feed, run, address

    def stored(self, req: Request, index: int) -> None:
        if index >= len(req.hashes):
            return  # a generated block
        open_ = self.run.open.get(req.rid)
        if open_ is None:
            return
        size = self.run.engine.cfg.block_size
        tokens = tuple(open_[1].tokens[index * size : (index + 1) * size])
        parent = req.hashes[index - 1] if index else None
        event = BlockStored(
            (int(req.hashes[index]),), parent, tokens, size, None, None, None
        )  # fmt: skip
        self.feed.push(self.run.engine.now, self.address, event)

    def removed(self, key: object) -> None:
        if isinstance(key, int):
            self.feed.push(self.run.engine.now, self.address, BlockRemoved((key,), None))

    def cleared(self, now: float) -> None:
        self.feed.push(now, self.address, AllBlocksCleared())


class KVFeed:
    """Pods' KV events on their way to the scorers' processors."""

    def __init__(
        self, processors: Sequence[EventProcessor], model: str, delay: float = DEFAULT_DELAY_S
    ) -> None:
        self.processors = list(processors)
        self.model = model
        self.delay = delay
        self._heap: list[tuple[float, int, str, Event]] = []
        self._seq = itertools.count()
        self.delivered = 0

    def attach(self, run: PodRun, address: str) -> None:
        """Publish `run`'s engine events under the pod's `address` (as its ZMQ topic does)."""
        run.engine.kv.listener = _PodListener(self, run, address)

    def push(self, t: float, address: str, event: Event) -> None:
        heapq.heappush(self._heap, (t + self.delay, next(self._seq), address, event))

    def deliver(self, now: float) -> None:
        """Apply every event due by `now`, in order."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, address, event = heapq.heappop(heap)
            for p in self.processors:
                p.digest(address, self.model, (event,))
            self.delivered += 1


def drop_prefix_cache(run: PodRun, now: float) -> None:
    """`/sleep?level=1` then `/wake_up` on `run`'s pod at `now`: its prefix cache forgets the
    blocks no request holds, and (with a feed attached) the scorers hear `AllBlocksCleared`."""
    kv = run.engine.kv
    kv.drop_prefix_cache()
    if isinstance(kv.listener, _PodListener):
        kv.listener.cleared(now)
