"""vLLM v1's scheduler at step level, on virtual time (pure: no clock, no I/O).

Each step has a budget of `max_num_batched_tokens` tokens and at most `max_num_seqs` running
sequences. Running requests are served first, in admission order, each with as many of its
remaining tokens as the budget allows (chunked prefill; a decode needs one); then waiting
requests are admitted in arrival order, unless a request was preempted in this step. KV blocks
of `block_size` tokens are allocated as tokens are scheduled; when none is free, the most
recently admitted running request is preempted: its blocks are freed and it waits at the head
of the queue to be recomputed (prompt and the tokens it had produced). A block is registered in
the prefix cache (by the hash of its tokens and of the blocks before it) once it is full; freed
blocks stay cached until the allocator reuses them, least recently freed first. A request
admitted from the queue starts after its longest cached prefix (at most all but its last token).

Tokens are emitted at the end of the step that computes them. `run()` steps the engine until
every request has finished or was refused; with `jump=True` (the default) it advances over runs
of decode-only steps in which the batch cannot change in a tight loop, with the same token times
(also over the step already scheduled when a request arrives: it cannot admit that request).

Cost per step does not grow with the batch: a decoding request is scheduled in every step (vLLM
serves running requests first, and only the most recently admitted one can still be in a chunked
prefill, behind all decodes), so decoding requests are kept as `computed = base + steps` and
advanced together; the step time needs only their count and context sum. A request is brought
up to date when it finishes or is preempted; KV blocks are allocated from buckets by the step at
which each decoding request crosses a block boundary, in admission order as vLLM does.
"""

from __future__ import annotations

import heapq
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import NamedTuple, Protocol, overload

from pyllmd.core.heap import gc_paused

from .offload import CpuTier

BLOCK_SIZE = 16

# A step-time function: (tokens, attention pairs, KV tokens, sequences, decode_only) -> seconds.
StepTimeFn = Callable[[int, int, int, int, bool], float]
# `settled_until`: a step-time lower bound kept below any rounding of the sum of step times
SETTLED_MARGIN = 1.0 - 1e-9


@dataclass(frozen=True)
class SchedulerConfig:
    """vLLM's scheduler settings (flag names in the comments)."""

    num_blocks: int  # KV blocks of the GPU (per TP shard: the same count on each)
    max_num_seqs: int = 128  # --max-num-seqs
    max_num_batched_tokens: int = 2048  # --max-num-batched-tokens
    max_model_len: int = 4096  # --max-model-len
    block_size: int = BLOCK_SIZE
    enable_prefix_caching: bool = True  # --enable-prefix-caching
    enable_chunked_prefill: bool = True  # --enable-chunked-prefill
    max_waiting: int | None = None  # --max-waiting-queue-length (None: unbounded, as vLLM)
    # --max-loras: distinct LoRA adapters among the running requests (None: no limit)
    max_loras: int | None = None
    # vLLM's asynchronous scheduling: step k+1 is scheduled when step k starts, so a request
    # that arrives during step k can first run in step k+2 (when the engine was busy)
    async_scheduling: bool = True
    cpu_blocks: int = 0  # --kv-offloading-size as blocks of the CPU tier (0: no tier)
    cpu_block_load_s: float = 0.0  # seconds to bring one block back over the host link


def block_hashes(token_ids: Sequence[int], block_size: int = BLOCK_SIZE) -> tuple[int, ...]:
    """Chained hashes of the full blocks of a token sequence (a block's hash covers its prefix)."""
    out: list[int] = []
    parent = 0
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        parent = hash((parent, tuple(token_ids[start : start + block_size])))
        out.append(parent)
    return tuple(out)


@dataclass(eq=False, slots=True)
class Request:
    """A request as the engine sees it; the fields after `hashes` are the engine's state."""

    rid: int
    arrival: float  # when it reaches the engine queue (virtual seconds)
    prompt_len: int
    output_len: int  # tokens to generate (ignore_eos: exactly this many)
    hashes: tuple[int, ...] = ()  # block_hashes() of the prompt, for prefix caching
    computed: int = 0
    produced: int = 0
    blocks: list[int] = field(default_factory=list)
    registered: int = 0  # leading blocks registered in the prefix cache
    first_token: float | None = None
    last_token: float | None = None
    admitted: float | None = None  # first time scheduled
    preemptions: int = 0
    cached_tokens: int = 0  # prefix-cache hits at its first admission
    refused: str | None = None  # the error, when refused
    deadline: float | None = None  # the client gives up then (request timeout): aborted
    preloaded: int = 0  # prompt tokens whose KV arrived from a prefill pod (P/D decode side)
    lora: int = 0  # its LoRA adapter (0: the base model)
    aborted: bool = False
    ready: float = 0.0  # when its blocks loaded from the CPU tier are on the GPU
    token_times: list[float] | None = None  # every token's time, when recorded
    # decoding requests advance together: computed = base + engine step count (see Engine)
    lazy: bool = False
    base: int = 0
    lazy_from: int = 0
    seq: int = 0  # admission order
    epoch: int = 0  # invalidates finish events after a preemption

    @property
    def finished(self) -> bool:
        return self.last_token is not None

    def block_key(self, index: int) -> object:
        if index < len(self.hashes):
            return self.hashes[index]
        return (self.rid, index)  # generated tokens: only this request can hit them


class StepRecord(NamedTuple):
    """One engine step, for tests and timelines (a tuple: one is kept per step)."""

    start: float
    end: float
    tokens: int
    seqs: int
    prefills: int
    blocks_used: int
    decode_only: bool


class StepLog(Sequence[StepRecord]):
    """Every step of an engine as `StepRecord`s, kept in typed arrays: a long replay runs
    millions of steps, and a tuple per step would hold several times the memory."""

    def __init__(self) -> None:
        self.start = array("d")
        self.end = array("d")
        self.tokens = array("q")
        self.seqs = array("q")
        self.prefills = array("q")
        self.blocks_used = array("q")
        self.decode_only = array("b")

    def add(
        self,
        start: float,
        end: float,
        tokens: int,
        seqs: int,
        prefills: int,
        blocks_used: int,
        decode_only: bool,
    ) -> None:
        self.start.append(start)
        self.end.append(end)
        self.tokens.append(tokens)
        self.seqs.append(seqs)
        self.prefills.append(prefills)
        self.blocks_used.append(blocks_used)
        self.decode_only.append(decode_only)

    def append(self, record: StepRecord) -> None:
        self.add(*record)

    def __len__(self) -> int:
        return len(self.start)

    @overload
    def __getitem__(self, i: int) -> StepRecord: ...
    @overload
    def __getitem__(self, i: slice) -> list[StepRecord]: ...
    def __getitem__(self, i: int | slice) -> StepRecord | list[StepRecord]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return StepRecord(
            self.start[i],
            self.end[i],
            self.tokens[i],
            self.seqs[i],
            self.prefills[i],
            self.blocks_used[i],
            bool(self.decode_only[i]),
        )


@dataclass
class RunResult:
    requests: list[Request]
    steps: int = 0
    preemptions: int = 0
    records: StepLog | None = None


class BlockListener(Protocol):
    """Told when a block enters the prefix cache (it filled) and when it leaves (reused)."""

    def stored(self, req: Request, index: int) -> None: ...

    def removed(self, key: object) -> None: ...


class KVBlocks:
    """The block pool: reference counts, an LRU queue of free blocks, and the prefix cache.

    vLLM's free queue starts with every block in id order and takes from its head; freed
    blocks go to its tail. So blocks never used yet are taken first, in id order (`fresh`
    counts them), then freed ones, least recently freed first (`free`).
    """

    def __init__(self, num_blocks: int, caching: bool) -> None:
        self.caching = caching
        self.size = num_blocks
        self.fresh = 0  # blocks [fresh, size) were never used
        self.ref = [0] * num_blocks
        self.key: list[object | None] = [None] * num_blocks
        self.free: OrderedDict[int, None] = OrderedDict()
        self.cached: dict[object, int] = {}
        self.listener: BlockListener | None = None  # KV events (the live server)
        self.cpu: CpuTier | None = None  # the CPU tier, which keeps evicted prefix blocks

    def available(self) -> int:
        return self.size - self.fresh + len(self.free)

    @property
    def used(self) -> int:
        return self.size - self.available()

    def hits(self, req: Request, max_tokens: int, block_size: int) -> list[int]:
        """Cached blocks of the longest prefix of `req`, without claiming them."""
        if not self.caching:
            return []
        get = self.cached.get
        limit = max_tokens // block_size
        hashes = req.hashes
        # the prompt's blocks: every lookup at once (a lookup has no side effect), cut at the
        # first miss
        found: list[int | None] = [*map(get, hashes[:limit] if limit < len(hashes) else hashes)]
        if None in found:
            return found[: found.index(None)]  # type: ignore[return-value]
        out: list[int] = found  # type: ignore[assignment]
        for i in range(len(out), limit):  # generated tokens (a preempted request's)
            block = get((req.rid, i))
            if block is None:
                break
            out.append(block)
        return out

    def drop_prefix_cache(self) -> None:
        """Forget the cached prefix blocks that no request holds (a sleep that discards the
        KV cache); blocks of running requests keep theirs. No event is published."""
        key, cached = self.key, self.cached
        for block in self.free:
            k = key[block]
            if k is not None:
                if cached.get(k) == block:
                    del cached[k]
                key[block] = None

    def claim(self, blocks: Iterable[int]) -> None:
        ref = self.ref
        for b in blocks:
            if ref[b] == 0:
                del self.free[b]
            ref[b] += 1

    def take(self) -> int:
        if self.fresh < self.size:
            block = self.fresh
            self.fresh += 1
            self.ref[block] = 1
            return block
        block, _ = self.free.popitem(last=False)
        key = self.key[block]
        if key is not None:
            if self.cached.get(key) == block:
                del self.cached[key]
                if self.listener is not None:
                    self.listener.removed(key)
                if self.cpu is not None:
                    self.cpu.put(key)
            self.key[block] = None
        self.ref[block] = 1
        return block

    def take_into(self, out: list[int], n: int) -> None:
        """Append `n` blocks to `out`, as `n` calls of `take` would, in the same order."""
        fresh = self.fresh
        k = min(n, self.size - fresh)
        if k > 0:
            self.fresh = fresh + k
            self.ref[fresh : fresh + k] = [1] * k
            out.extend(range(fresh, fresh + k))
            n -= k
        if n <= 0:
            return
        popitem = self.free.popitem
        keys = self.key
        cached = self.cached
        ref = self.ref
        listener = self.listener
        cpu = self.cpu
        for _ in range(n):
            block, _ = popitem(last=False)
            key = keys[block]
            if key is not None:
                if cached.get(key) == block:
                    del cached[key]
                    if listener is not None:
                        listener.removed(key)
                    if cpu is not None:
                        cpu.put(key)
                keys[block] = None
            ref[block] = 1
            out.append(block)

    def release(self, blocks: list[int]) -> None:
        ref = self.ref
        free = self.free
        for b in reversed(blocks):
            r = ref[b] - 1
            ref[b] = r
            if not r:
                free[b] = None

    def register(self, req: Request, upto: int) -> None:
        """Register `req`'s full blocks below index `upto` in the prefix cache."""
        if self.caching and upto > req.registered:
            keys = self.key
            cached = self.cached
            hashes = req.hashes
            blocks = req.blocks
            listener = self.listener
            for i in range(req.registered, upto):
                block = blocks[i]
                if keys[block] is None:
                    key = hashes[i] if i < len(hashes) else (req.rid, i)
                    keys[block] = key
                    if cached.setdefault(key, block) == block and listener is not None:
                        listener.stored(req, i)
        if upto > req.registered:
            req.registered = upto


class Engine:
    """One vLLM engine on virtual time."""

    def __init__(
        self,
        config: SchedulerConfig,
        step_time: StepTimeFn,
        record_tokens: bool = False,
        record_steps: bool = False,
        decode_time: Callable[[int], Callable[[int], float]] | None = None,
    ) -> None:
        """`decode_time(seqs)`: `step_time` of a decode-only step of `seqs` sequences as a
        function of its pairs (`StepModel.decode`), for the decode fast path."""
        if config.max_num_batched_tokens < config.max_num_seqs:
            raise ValueError(
                f"max_num_batched_tokens ({config.max_num_batched_tokens}) must be greater "
                f"than or equal to max_num_seqs ({config.max_num_seqs})."
            )
        self.cfg = config
        self.step_time = step_time
        self.decode_time = decode_time or (
            lambda seqs: lambda pairs: step_time(seqs, pairs, pairs, seqs, True)
        )
        self.kv = KVBlocks(config.num_blocks, config.enable_prefix_caching)
        self.waiting: deque[Request] = deque()
        self.loading: list[Request] = []  # admitted blocks loading from the CPU tier
        self.loads = 0  # loads from the CPU tier started or given back
        if config.cpu_blocks > 0:
            self.kv.cpu = CpuTier(config.cpu_blocks)
        self.running: list[Request] = []  # admission order; preemption takes the last
        self.active: list[Request] = []  # running requests still in prefill, in running order
        self.now = 0.0
        self.last_start = -1.0  # start and end of the latest step
        self.last_end = -1.0
        self.steps = 0  # steps run; decoding requests have computed = base + steps
        # end times of the steps from `ends_base` on: a decoding request's token times are
        # the ends of the steps since it turned lazy; none are kept while nothing decodes
        self.ends: list[float] = []
        self.ends_base = 0
        self.n_lazy = 0
        self.base_sum = 0
        self.buckets: list[list[Request]] = [[] for _ in range(config.block_size)]
        self.finishes: list[tuple[int, int, int, Request]] = []  # (step, seq, epoch, request)
        self.admissions = 0
        self.preemptions = 0
        self.record_tokens = record_tokens
        self.records: StepLog | None = StepLog() if record_steps else None
        self.ended: list[Request] | None = None  # when a list: every request finished is added

    # ---- admission -------------------------------------------------------------------------
    def add(self, req: Request) -> None:
        """A request arrives (at `req.arrival` <= now): queue it or refuse it."""
        cfg = self.cfg
        total = req.prompt_len + req.output_len
        if total > cfg.max_model_len:
            req.refused = (
                f"This model's maximum context length is {cfg.max_model_len} tokens. However, "
                f"you requested {total} tokens ({req.prompt_len} in the messages, "
                f"{req.output_len} in the completion). Please reduce the length of the messages "
                "or completion."
            )
            return
        if req.output_len < 1 or req.prompt_len < 1:
            req.refused = "prompt and output must have at least one token"
            return
        if cfg.max_waiting is not None and len(self.waiting) >= cfg.max_waiting:
            req.refused = "waiting queue is full"
            return
        if self.record_tokens:
            req.token_times = []
        self.waiting.append(req)

    @property
    def pending(self) -> int:
        """Requests in the engine: waiting, loading from the CPU tier or running."""
        return len(self.running) + len(self.waiting) + len(self.loading)

    def next_ready(self) -> float:
        """The earliest time at which a waiting request arrives (after now) or a load from the
        CPU tier ends (now when one has ended): inf when none."""
        now = self.now
        times = [r.arrival for r in self.waiting if r.arrival > now]
        times += [max(r.ready, now) for r in self.loading]
        return min(times, default=float("inf"))

    # ---- the CPU tier ----------------------------------------------------------------------
    def _load_from_cpu(self, req: Request, hits: list[int], limit: int) -> int:
        """Start loading the blocks of `req`'s prefix that follow its GPU hits and are in the
        CPU tier: they get GPU blocks now and the request is scheduled once they have crossed
        the host link (vLLM's offloading connector loads asynchronously, and the request waits
        for its KV). Returns the blocks loaded; 0 when none is in the tier, -1 when the GPU
        has no room for them yet."""
        cpu = self.kv.cpu
        if cpu is None:
            return 0
        n = cpu.run_length(req.block_key, len(hits), limit)
        if not n:
            return 0
        kv = self.kv
        if n > kv.available() - list(map(kv.ref.__getitem__, hits)).count(0):
            return -1
        self.waiting.popleft()
        kv.claim(hits)
        req.blocks = list(hits)
        req.registered = len(hits)
        kv.take_into(req.blocks, n)
        req.computed = len(req.blocks) * self.cfg.block_size
        kv.register(req, len(req.blocks))
        req.ready = self.now + n * self.cfg.cpu_block_load_s
        self.loading.append(req)
        self.loads += 1
        return n

    def _unload_waiting(self) -> None:
        """Give back the blocks that waiting requests loaded from the CPU tier (they stay in
        the prefix cache, where the requests find them while nothing evicts them): when
        nothing runs and the queue's head does not fit, they would otherwise wait forever."""
        for req in self.waiting:
            if req.blocks:
                self.kv.release(req.blocks)
                req.blocks = []
                req.registered = 0
                req.computed = 0
                self.loads += 1

    def _loaded(self, seen: float) -> None:
        """Requests whose loads ended by `seen` go back to the head of the queue."""
        done = [r for r in self.loading if r.ready <= seen]
        if done:
            self.loading = [r for r in self.loading if r.ready > seen]
            self.waiting.extendleft(reversed(done))

    # ---- decoding requests, advanced together ----------------------------------------------
    def _to_lazy(self, req: Request) -> None:
        """`req` has just produced a token and is not finished: it decodes from the next step."""
        d = self.steps
        req.lazy = True
        req.base = req.computed - d
        req.lazy_from = d
        self.n_lazy += 1
        self.base_sum += req.base
        self.buckets[(-req.base) % self.cfg.block_size].append(req)
        heapq.heappush(self.finishes, (d + req.output_len - req.produced, req.seq, req.epoch, req))

    def _sync(self, req: Request) -> None:
        """Bring a decoding request's fields up to date and take it out of the lazy set."""
        d = self.steps
        req.computed = req.base + d
        req.produced = req.computed - req.prompt_len + 1
        if req.token_times is not None:
            base = self.ends_base
            req.token_times.extend(self.ends[req.lazy_from - base : d - base])
        self.kv.register(req, req.computed // self.cfg.block_size)
        req.lazy = False
        req.epoch += 1
        self.n_lazy -= 1
        self.base_sum -= req.base
        self.buckets[(-req.base) % self.cfg.block_size].remove(req)
        if not self.n_lazy:  # no step's end is needed any more (a long run's memory)
            self.ends.clear()
            self.ends_base = d

    def _preempt_last(self) -> Request:
        victim = self.running.pop()
        if victim.lazy:
            self._sync(victim)
        else:
            self.active.remove(victim)
        self.kv.release(victim.blocks)
        victim.blocks = []
        victim.registered = 0
        victim.computed = 0
        victim.preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(victim)
        return victim

    def abort(self, req: Request) -> None:
        """The client went away: drop the request wherever it is and free its blocks."""
        if req.finished or req.aborted or req.refused is not None:
            return
        req.aborted = True
        for queue in (self.waiting, self.loading):
            if req in queue:
                queue.remove(req)
                self.kv.release(req.blocks)  # loaded from the CPU tier, if any
                req.blocks = []
                return
        if req.lazy:
            self._sync(req)
        elif req in self.active:
            self.active.remove(req)
        if req in self.running:
            self.running.remove(req)
            self.kv.release(req.blocks)
            req.blocks = []

    def _finish(self, req: Request, now: float) -> None:
        req.last_token = now
        if self.ended is not None:
            self.ended.append(req)
        self.running.remove(req)
        self.kv.release(req.blocks)
        req.blocks = []

    def _finish_due(self, now: float) -> None:
        """Finish the decoding requests whose last token came out of the step just run."""
        heap = self.finishes
        d = self.steps
        while heap and heap[0][0] <= d:
            _, _, epoch, req = heapq.heappop(heap)
            if epoch != req.epoch or not req.lazy:
                continue  # stale: preempted since
            self._sync(req)
            self._finish(req, now)

    # ---- one step --------------------------------------------------------------------------
    def step(self) -> bool:
        """Schedule and run one step; False when nothing could be scheduled or changed."""
        cfg = self.cfg
        kv = self.kv
        bs = cfg.block_size
        budget = cfg.max_num_batched_tokens
        running = self.running
        preempted = False
        stop = False
        loads_before = self.loads
        # 1. decoding requests (all ahead of the prefilling ones), one token each
        bucket = self.buckets[self.steps % bs]
        if bucket:
            for req in list(bucket):
                if not req.lazy:
                    continue  # preempted as a victim earlier in this loop
                while not kv.available():
                    victim = self._preempt_last()
                    preempted = True
                    if victim is req:
                        stop = True
                        break
                if stop:
                    break
                req.blocks.append(kv.take())
        n_dec = self.n_lazy
        budget -= n_dec
        tokens = n_dec
        context = self.base_sum + n_dec * self.steps
        pairs = kv_tokens = context + n_dec
        prefills = 0
        scheduled: list[Request] = []
        news: list[int] = []
        # 2. running requests in prefill (chunked), in order
        if not stop:
            for req in list(self.active):
                if budget <= 0:
                    break
                if req not in self.active:
                    break  # preempted as a victim for an earlier one
                computed = req.computed
                new = req.prompt_len + req.produced - computed
                if new > budget:
                    new = budget
                need = -(-(computed + new) // bs) - len(req.blocks)
                while need > kv.available():
                    victim = self._preempt_last()
                    preempted = True
                    if victim is req:
                        stop = True
                        break
                if stop:
                    break
                if need > 0:
                    kv.take_into(req.blocks, need)
                scheduled.append(req)
                news.append(new)
                budget -= new
                tokens += new
                pairs += new * computed + new * (new + 1) // 2
                kv_tokens += computed + new
                prefills += 1
        # 3. waiting requests, unless this step preempted one
        if not preempted:
            waiting = self.waiting
            # --max-loras: a request of another adapter waits while the running requests
            # already use that many (vLLM skips it and admits the requests behind it)
            max_loras = cfg.max_loras or 0
            loras: set[int] | None = None  # adapters of the running requests, when needed
            skipped: list[Request] = []
            # when the engine ran without a gap, this step was scheduled as the last one began
            seen = self.now
            if cfg.async_scheduling and self.last_end == self.now:
                seen = self.last_start
            if self.loading:
                self._loaded(seen)
            while waiting and budget > 0 and len(running) < cfg.max_num_seqs:
                req = waiting[0]
                if req.arrival > seen:
                    break
                if req.lora and max_loras:
                    if loras is None:
                        loras = {r.lora for r in running if r.lora}
                    if req.lora not in loras and len(loras) >= max_loras:
                        skipped.append(waiting.popleft())
                        continue
                total = req.prompt_len + req.produced
                if req.blocks:  # loaded from the CPU tier: held, computed up to req.computed
                    hits = req.blocks
                    start = hit_tokens = req.computed
                    evictable_hits = 0
                else:
                    hits = kv.hits(req, total - 1, bs)
                    loading = self._load_from_cpu(req, hits, (total - 1) // bs)
                    if loading:
                        if loading < 0:
                            break
                        continue
                    start = hit_tokens = len(hits) * bs
                    evictable_hits = list(map(kv.ref.__getitem__, hits)).count(0)
                if req.preloaded > start and req.admitted is None:
                    start = min(req.preloaded, total - 1)  # KV transferred, not computed here
                new = total - start
                if new > budget:
                    if not cfg.enable_chunked_prefill:
                        break
                    new = budget
                need = -(-(start + new) // bs) - len(hits)
                if need > kv.available() - evictable_hits:
                    if not running:
                        self._unload_waiting()  # blocks held by loaded requests: none could run
                    break
                waiting.popleft()
                if hits is not req.blocks:
                    kv.claim(hits)
                    req.blocks = list(hits)
                    req.registered = len(hits)
                req.computed = start
                if req.admitted is None:
                    req.admitted = self.now
                    req.cached_tokens = hit_tokens
                if need > 0:
                    kv.take_into(req.blocks, need)
                self.admissions += 1
                req.seq = self.admissions
                if loras is not None and req.lora:
                    loras.add(req.lora)
                running.append(req)
                self.active.append(req)
                scheduled.append(req)
                news.append(new)
                budget -= new
                tokens += new
                pairs += new * start + new * (new + 1) // 2
                kv_tokens += start + new
                prefills += 1
            if skipped:
                waiting.extendleft(reversed(skipped))  # back at the head, in their order
        seqs = self.n_lazy + len(scheduled)
        if not seqs:
            if not preempted and self.last_end == self.now and (self.waiting or self.loading):
                self.last_end = -1.0  # the engine idles: the next schedule sees the queue now
                return True
            # a preemption or a load from the CPU tier changed the state though nothing ran
            return preempted or self.loads != loads_before
        decode_only = prefills == 0
        start_time = self.last_start = self.now
        now = self.now = start_time + self.step_time(tokens, pairs, kv_tokens, seqs, decode_only)
        self.last_end = now
        self.steps += 1
        self.ends.append(now)
        if self.records is not None:
            self.records.add(start_time, now, tokens, seqs, prefills, kv.used, decode_only)
        self._finish_due(now)
        for req, new in zip(scheduled, news, strict=True):
            computed = req.computed = req.computed + new
            kv.register(req, computed // bs)
            if computed == req.prompt_len + req.produced:
                req.produced += 1
                if req.first_token is None:
                    req.first_token = now
                if req.token_times is not None:
                    req.token_times.append(now)
                self.active.remove(req)
                if req.produced >= req.output_len:
                    self._finish(req, now)
                else:
                    self._to_lazy(req)
        return True

    # ---- the decode fast path --------------------------------------------------------------
    def jump(self, next_event: float) -> bool:
        """Run decode-only steps in a tight loop while the batch cannot change.

        Applies when no request is in prefill and nothing waiting can be admitted: the queue
        is empty, the sequence limit is reached, or the request at its head arrived after the
        step's schedule saw the queue (with asynchronous scheduling, when the step before
        started; else when the step starts). Stops after the step in which a request
        finishes, before a step that starts at or after `next_event` (an arrival or a
        deadline), before a step whose schedule sees the head of the queue, and before a step
        that needs more KV blocks than are free (the general step preempts). Returns False
        when it ran no step.
        """
        if self.active or not self.n_lazy:
            return False
        cfg = self.cfg
        now = self.now
        head = float("inf")  # arrival of the request the next schedule could admit
        waiting = self.waiting
        if waiting and len(self.running) < cfg.max_num_seqs:
            head = waiting[0].arrival
        back_to_back = cfg.async_scheduling
        # what the next step's schedule sees of the queue: requests arrived by then
        seen = self.last_start if back_to_back and self.last_end == now else now
        if head <= seen:
            return False
        kv = self.kv
        buckets = self.buckets
        bs = cfg.block_size
        ends = self.ends
        heap = self.finishes
        while heap and (heap[0][2] != heap[0][3].epoch or not heap[0][3].lazy):
            heapq.heappop(heap)  # drop stale events so heap[0] is the next finish
        stop_at = heap[0][0] if heap else 1 << 62
        r = self.n_lazy
        fn = self.decode_time(r)
        d = self.steps
        d0 = d
        start = now
        pairs = self.base_sum + r * d + r
        records = self.records
        first = now
        used = kv.fresh - len(kv.free)  # kv.used, logged per step (it moves on allocations)
        log_blocks = records.blocks_used.extend if records is not None else None
        while now < next_event and head > seen:
            bucket = buckets[d % bs]
            if bucket:
                if len(bucket) > kv.available():
                    break
                for req in bucket:
                    req.blocks.append(kv.take())
                used = kv.fresh - len(kv.free)
            # the steps up to the next one that allocates a block, or the first finish
            j = 1
            while j < bs and not buckets[(d + j) % bs]:
                j += 1
            limit = d + j if d + j < stop_at else stop_at
            d1 = d
            while True:
                start = now
                now += fn(pairs)
                ends.append(now)
                d += 1
                pairs += r
                if back_to_back:
                    seen = start
                    if d >= limit or now >= next_event or head <= start:
                        break
                elif d >= limit or now >= next_event or head <= now:
                    seen = now
                    break
            if log_blocks is not None:
                log_blocks(repeat(used, d - d1))
            if d >= stop_at:
                break
        ran = d - d0
        if not ran:
            return False
        if records is not None:  # each step starts where the one before it ended
            times = ends[len(ends) - ran :]
            records.start.append(first)
            records.start.extend(times[:-1])
            records.end.extend(times)
            records.tokens.extend(repeat(r, ran))
            records.seqs.extend(repeat(r, ran))
            records.prefills.extend(repeat(0, ran))
            records.decode_only.extend(repeat(1, ran))
        self.steps = d
        self.last_start = start
        self.now = self.last_end = now
        self._finish_due(now)
        return True

    def settled_until(self, until: float) -> bool:
        """Whether every step that starts before `until` leaves the waiting queue, the
        running set and the KV blocks in use as they are: a batch of decoding requests only,
        none to admit, and no block to allocate or request to finish in those steps. A
        scraper reading the engine at `until` then reads it as it is, without running them.

        A decode step's time does not fall as its contexts grow (true of the step-time
        models here), so the next change is no sooner than that many steps of the next one.
        """
        if self.active or not self.n_lazy or self.loading:
            return False
        if self.waiting and len(self.running) < self.cfg.max_num_seqs:
            return False
        d = self.steps
        buckets = self.buckets
        bs = self.cfg.block_size
        j = 0  # steps before the first that allocates a block
        while not buckets[(d + j) % bs]:
            j += 1
        heap = self.finishes
        if heap and heap[0][0] - 1 - d < j:  # a stale entry only makes this sooner
            j = heap[0][0] - 1 - d
        if j <= 0:
            return False
        r = self.n_lazy
        pairs = self.base_sum + r * d + r
        return self.now + j * self.decode_time(r)(pairs) * SETTLED_MARGIN >= until

    # ---- the loop --------------------------------------------------------------------------
    def run(self, requests: Sequence[Request], jump: bool = True) -> RunResult:
        """Serve `requests` (sorted by arrival) until each has finished, was refused or aborted.

        A request with a `deadline` is aborted at the first step boundary at or after it.
        """
        with gc_paused():  # a run allocates much and makes no cycles: nothing to collect
            return self._run(requests, jump)

    def _run(self, requests: Sequence[Request], jump: bool) -> RunResult:
        i = 0
        n = len(requests)
        inf = float("inf")
        deadlines: list[tuple[float, int, Request]] = []
        while True:
            while i < n and requests[i].arrival <= self.now:
                r = requests[i]
                self.add(r)
                if r.deadline is not None and r.refused is None:
                    heapq.heappush(deadlines, (r.deadline, i, r))
                i += 1
            while deadlines and deadlines[0][0] <= self.now:
                self.abort(heapq.heappop(deadlines)[2])
            if not self.pending:
                if i >= n:
                    break
                self.now = max(self.now, requests[i].arrival)
                continue
            next_event = requests[i].arrival if i < n else inf
            if self.loading:
                next_event = min(next_event, self.next_ready())
            if deadlines and deadlines[0][0] < next_event:
                next_event = deadlines[0][0]
            if jump and self.jump(next_event):
                continue
            if not self.step():
                # nothing could run: wait for the next arrival or deadline
                if next_event == inf:
                    raise RuntimeError("scheduler stalled with requests left")  # a bug if hit
                self.now = max(self.now, next_event)
        return RunResult(list(requests), self.steps, self.preemptions, self.records)
