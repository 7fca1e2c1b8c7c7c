"""The step loop of one rank with `--latency-calculator batch` (the shell of `sim/batch`).

The decisions are `pyllmd.sim.batch.scheduler.Engine`'s, the code `pyllmd simulate` replays
in virtual time: this module only feeds it the arriving requests, runs one step at a time,
sleeps until the step's end on the rank's clock and hands each request the tokens the step
produced. The engine's time is the clock's time since the loop started (`t0`); while the
engine is busy the loop sleeps to absolute step ends, so a late wake-up does not shift the
following steps; an idle engine jumps to the arrival of the next request, as in a replay.

A request reaches the engine `first_token_s` after it arrived (the profile's per-request cost
before the prefill: HTTP, tokenization), as `pyllmd simulate` sends it; the caller adds
`last_token_s` after the last token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pyllmd.core.clock import Clock
from pyllmd.core.prefix import block_keys
from pyllmd.sim.batch.scheduler import (
    Engine,
    Request,
    SchedulerConfig,
    StepTimeFn,
    block_hashes,
)
from pyllmd.sim.engine.kvcache import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    EventSink,
    KVEvent,
)

__all__ = ["BatchLoop", "QUEUE_FULL", "Ticket"]

log = logging.getLogger(__name__)

QUEUE_FULL = "waiting queue is full"


@dataclass(eq=False)
class Ticket:
    """One request in the batch engine, as its handler sees it."""

    req: Request
    times: list[float] = field(default_factory=list)  # clock time of each token delivered
    done: bool = False
    failed: bool = False  # the engine failed (a bug): the request gets a 500
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait(self, have: int) -> None:
        """Until more than `have` tokens were delivered, or the request ended."""
        while len(self.times) <= have and not self.done:
            self.changed.clear()
            await self.changed.wait()


def produced(engine: Engine, req: Request) -> int:
    """Tokens `req` has produced so far (a decoding request's fields are updated lazily)."""
    if req.lazy:
        return req.base + engine.steps - req.prompt_len + 1
    return req.produced


class KVEvents:
    """The engine's block events as vLLM's KV events: BlockStored when a block fills (with
    its upstream block key, parent key and token ids), BlockRemoved when the engine reuses a
    cached block. Prompt blocks are the engine's (told when it registers them); blocks of
    generated tokens are followed here, since the engine registers a decoding request's
    blocks only when it finishes or is preempted: a block is stored at the end of the step
    that computed its last token, as in vLLM. Their token ids are the reply's."""

    def __init__(self, sink: EventSink, block_size: int, hash_seed: str) -> None:
        self.sink = sink
        self.block_size = block_size
        self.hash_seed = hash_seed
        # rid -> (prompt + output ids, their block keys, next generated block to check)
        self.seqs: dict[int, tuple[list[int], list[int], list[int]]] = {}
        self.keys: dict[object, int] = {}  # the engine's block key -> the upstream key
        self.pending: list[KVEvent] = []  # events of the step running now: sent at its end

    def add(self, req: Request, prompt_ids: Sequence[int], output_ids: Sequence[int] = ()) -> None:
        ids = [*prompt_ids, *output_ids]
        self.seqs[req.rid] = (ids, block_keys(ids, self.block_size, self.hash_seed), [0])

    def forget(self, req: Request) -> None:
        self.seqs.pop(req.rid, None)

    def stored(self, req: Request, index: int) -> None:
        entry = self.seqs.get(req.rid)
        if entry is None or index >= len(entry[1]):
            return
        key = req.block_key(index)
        if key in self.keys:
            return  # published when it filled (a generated block), not removed since
        ids, keys, _ = entry
        bs = self.block_size
        self.keys[key] = keys[index]
        self.pending.append(
            BlockStored(
                block_hash=keys[index],
                parent_block_hash=keys[index - 1] if index > 0 else None,
                token_ids=tuple(ids[index * bs : (index + 1) * bs]),
                block_size=bs,
            )
        )

    def computed(self, req: Request, tokens: int) -> None:
        """`req` has `tokens` tokens' KV computed: store its generated blocks that filled."""
        entry = self.seqs.get(req.rid)
        if entry is None:
            return
        cursor = entry[2]
        full = min(tokens // self.block_size, len(entry[1]))
        for index in range(max(cursor[0], len(req.hashes)), full):
            self.stored(req, index)
        cursor[0] = max(cursor[0], full)

    def removed(self, key: object) -> None:
        upstream = self.keys.pop(key, None)
        if upstream is not None:
            self.pending.append(BlockRemoved(upstream))

    def flush(self) -> None:
        """Publish the events of the step that just ended."""
        for event in self.pending:
            self.sink.publish(event)
        self.pending.clear()

    def cleared(self) -> None:
        self.flush()
        self.keys.clear()
        self.sink.publish(AllBlocksCleared())


class BatchLoop:
    """One rank's batch engine and the asyncio task stepping it."""

    def __init__(
        self,
        config: SchedulerConfig,
        step_time: StepTimeFn,
        clock: Clock,
        first_token_s: float = 0.0,
        last_token_s: float = 0.0,
        on_step: Callable[[Engine], None] | None = None,
        events: KVEvents | None = None,
    ) -> None:
        self.last_tokens = 0  # tokens of the latest step (vllm:iteration_tokens_total)

        def timed(tokens: int, pairs: int, kv: int, seqs: int, decode_only: bool) -> float:
            self.last_tokens = tokens
            return step_time(tokens, pairs, kv, seqs, decode_only)

        self.engine = Engine(config, timed)
        self.events = events
        self.engine.kv.listener = events
        self.clock = clock
        self.first_token_s = first_token_s
        self.last_token_s = last_token_s
        self.on_step = on_step
        self.t0 = clock.now()
        # P/D decode side: the KV transfer time of a prompt of n tokens (None: the
        # per-request calculator's, from the --kv-cache-transfer-* flags)
        self.transfer_s: Callable[[int], float] | None = None
        # LoRA: adapter ids (1, 2...: index + 1 in `lora_names`) and what the engine runs
        # and queues per adapter, told to `on_loras` when it changes (vllm:lora_requests_info)
        self.lora_ids: dict[str, int] = {}
        self.lora_names: list[str] = []
        self.on_loras: Callable[[tuple[str, ...], tuple[str, ...]], None] | None = None
        self._lora_open = 0  # open tickets of adapter requests
        self._lora_state: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
        self._open: list[Ticket] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._rid = 0

    @property
    def num_running(self) -> int:
        return len(self.engine.running)

    @property
    def num_waiting(self) -> int:
        return len(self.engine.waiting)

    @property
    def kv_usage(self) -> float:
        kv = self.engine.kv
        return kv.used / kv.size if kv.size else 0.0

    def submit(
        self,
        prompt_ids: Sequence[int],
        output_len: int,
        received: float | None = None,
        transfer: float | None = None,
        output_ids: Sequence[int] = (),
        lora: str | None = None,
    ) -> Ticket:
        """Queue a request received at `received` (clock time; default now); ValueError(the
        engine's message) when the engine refuses it. It reaches the engine `first_token_s`
        after it was received (the time spent reading and tokenizing it is part of that).

        With `transfer` (P/D decode side) the prompt's KV comes from a prefill pod: the request
        reaches the engine `transfer` seconds later still, with all but the last prompt token
        already computed (vLLM recomputes the last one for its logits).

        `output_ids` are the reply's token ids, for the KV events of generated blocks; `lora`
        the adapter it runs on (at most `--max-loras` adapters run at once)."""
        eng = self.engine
        now = self.clock.now()
        start = now if received is None else min(received, now)
        arrival = max(start - self.t0 + self.first_token_s, now - self.t0)
        req = Request(
            self._rid,
            arrival,
            len(prompt_ids),
            output_len,
            block_hashes(prompt_ids, eng.cfg.block_size),
        )
        self._rid += 1
        if lora is not None:
            req.lora = self.lora_ids.get(lora, 0)
            if not req.lora:
                self.lora_names.append(lora)
                req.lora = self.lora_ids[lora] = len(self.lora_names)
        if transfer is not None:
            req.arrival += max(0.0, transfer)
            req.preloaded = len(prompt_ids) - 1
        if transfer is None and not eng.pending and eng.now < arrival:
            eng.now = arrival  # an idle engine waits for the request
        eng.add(req)
        if req.refused is not None:
            raise ValueError(req.refused)
        if self.events is not None:
            self.events.add(req, prompt_ids, output_ids)
        ticket = Ticket(req)
        self._open.append(ticket)
        if req.lora:
            self._lora_open += 1
            self._publish_loras()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()
        return ticket

    def lora_state(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The adapters of the running requests and of the waiting ones, each in order."""
        names = self.lora_names
        eng = self.engine
        running = dict.fromkeys(names[r.lora - 1] for r in eng.running if r.lora)
        waiting = dict.fromkeys(names[r.lora - 1] for r in eng.waiting if r.lora)
        return tuple(running), tuple(waiting)

    def _publish_loras(self) -> None:
        state = self.lora_state()
        if state != self._lora_state:
            self._lora_state = state
            if self.on_loras is not None:
                self.on_loras(*state)

    def cancel(self, ticket: Ticket) -> None:
        """The client left: the engine drops the request and frees its blocks."""
        if ticket.done:
            return
        self.engine.abort(ticket.req)
        ticket.done = True
        if self.events is not None:
            self.events.forget(ticket.req)
        with contextlib.suppress(ValueError):
            self._open.remove(ticket)
        if ticket.req.lora:
            self._lora_open -= 1
            self._publish_loras()

    def drop_prefix_cache(self) -> None:
        """Forget the cached prefix blocks that no request holds (a sleep that discards the
        KV cache); blocks of running requests keep theirs."""
        self.engine.kv.drop_prefix_cache()
        if self.events is not None:
            self.events.cleared()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        try:
            await self._steps()
        except Exception:  # a bug: the requests in the engine fail, never hang
            log.exception("batch engine step failed")
            for t in self._open:
                t.done = t.failed = True
                t.changed.set()
            self._open = []
            self._lora_open = 0

    async def _steps(self) -> None:
        eng = self.engine
        while True:
            if not eng.pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            before = eng.steps
            if not eng.step():
                # nothing can run yet: wait for the next arrival (it reaches the engine later)
                # or the end of a load from the CPU tier
                later = eng.next_ready()
                if later == math.inf:  # a bug if hit: never spin
                    log.warning("batch engine could not step with requests queued")
                    later = eng.now + 1e-3
                await self._sleep_or_wake(self.t0 + later)
                eng.now = max(eng.now, min(later, self.clock.now() - self.t0))
                continue
            if eng.steps == before:
                continue  # the engine idled (async scheduling): schedule again now
            await self.clock.sleep_until(self.t0 + eng.now)
            self._deliver()

    async def _sleep_or_wake(self, deadline: float) -> None:
        """Until `deadline` on the clock, or until a request is submitted."""
        self._wake.clear()
        sleeper = asyncio.ensure_future(self.clock.sleep_until(deadline))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (sleeper, waker):
                t.cancel()
            await asyncio.gather(sleeper, waker, return_exceptions=True)

    def _deliver(self) -> None:
        """Hand out the tokens of the step that just ended."""
        eng = self.engine
        at = self.t0 + eng.now
        keep: list[Ticket] = []
        events = self.events if eng.kv.caching else None
        for t in self._open:
            req = t.req
            if events is not None and req.lazy:
                events.computed(req, req.base + eng.steps)
            n = produced(eng, req)
            if n > len(t.times):
                t.times.extend([at] * (n - len(t.times)))
                t.changed.set()
            if req.finished or req.aborted:
                t.done = True
                t.changed.set()
                if self.events is not None:
                    self.events.forget(req)
                if req.lora:
                    self._lora_open -= 1
            else:
                keep.append(t)
        self._open = keep
        if self._lora_open or self._lora_state != ((), ()):
            self._publish_loras()
        if self.events is not None:
            self.events.flush()
        if self.on_step is not None:
            self.on_step(eng)
