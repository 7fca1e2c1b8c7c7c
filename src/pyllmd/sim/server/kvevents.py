"""KV events over ZMQ (spec §5, kv-events contract §2): encoding, batching, publishing.

Wire format: each batch is a 3-frame message `[topic, seq, payload]`, topic
`kv@<POD_IP>@<--model>`, seq an 8-byte big-endian counter from 1 per publisher
(one per data-parallel rank), payload msgpack `[ts, events, dp_rank]` with the
events as vLLM's tagged arrays. BlockStored has vLLM's eight elements: tag,
block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium (nil) and
lora_name. Upstream's simulator sends the first seven with nil parent and token
ids, block size 0 and dp_rank 0; consumers that read the array form accept both.

The msgpack of events is assembled by hand from `msgpack.packb` pieces because
the Go consumers decode hashes only as uint64/int64, so every hash must be the
9-byte `0xcf` form, and msgpack-python always picks the shortest integer form.

Sending runs as asyncio tasks on the server's loop, not in a thread: the cache
emits events on that loop, sends never block (non-blocking, NODROP), encoding a
batch takes microseconds, and the injected Clock then drives the 1-second flush
timer, so tests run it in virtual time.

The socket is an XPUB, not a PUB: on the wire the two are the same publisher to
a SUB (ZMTP allows SUB to talk to either), but XPUB reports subscriptions. Events
wait in the bounded queue until a subscription matching the topic has arrived,
so nothing is lost to the slow-joiner window at start (nor to libzmq's delay in
passing a bound SUB's subscription to a connecting publisher, which a handshake
monitor would not catch). A connecting socket keeps its pipe and subscriptions
across reconnects, so later outages are buffered by libzmq up to the
high-water mark, then by the queue. Beyond upstream as well: a failed send or an
unencodable event is logged and counted, never stops the sender; events dropped
for any reason are counted (`pyllmd:kv_events_dropped_total`); pending events
are flushed at shutdown, within a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from typing import cast

import msgpack
import zmq
import zmq.asyncio

from pyllmd.core.clock import Clock
from pyllmd.core.metricset import CollectorFamily
from pyllmd.sim.engine.kvcache import AllBlocksCleared, BlockRemoved, BlockStored, KVEvent

log = logging.getLogger(__name__)

QUEUE_CAPACITY = 10_000  # events waiting to be sent (upstream's channel size)
FLUSH_INTERVAL = 1.0  # a partial batch is sent after at most this long
CONNECT_RETRY_INTERVAL = 1.0
CLOSE_TIMEOUT = 1.0  # bound on the shutdown flush, and the socket's linger
SEND_HWM = 100_000  # messages libzmq may hold for a slow or absent subscriber
DROPPED_METRIC = "pyllmd:kv_events_dropped_total"

_NIL = b"\xc0"
_STORED: bytes = msgpack.packb("BlockStored")
_REMOVED: bytes = msgpack.packb("BlockRemoved")
_CLEARED: bytes = msgpack.packb("AllBlocksCleared")


class PublisherError(Exception):
    """The publisher could not connect; the message is one line."""


def topic(pod_ip: str, model: str) -> bytes:
    """The ZMQ topic of every batch: `kv@<pod ip>@<model>`."""
    return f"kv@{pod_ip}@{model}".encode()


def _array(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _hash(value: int) -> bytes:
    """A block hash as msgpack uint64 (`0xcf`); OverflowError outside 0..2^64-1."""
    return b"\xcf" + value.to_bytes(8, "big")


def encode_event(event: KVEvent) -> bytes:
    """One event as vLLM's msgpack tagged array (module docstring)."""
    if isinstance(event, BlockStored):
        parent = event.parent_block_hash
        return b"".join(
            (
                _array(8),
                _STORED,
                _array(1),
                _hash(event.block_hash),
                _NIL if parent is None else _hash(parent),
                msgpack.packb(list(event.token_ids)),
                msgpack.packb(event.block_size),
                msgpack.packb(event.lora_id),
                _NIL,  # medium: vLLM's default tier
                msgpack.packb(event.lora_name),
            )
        )
    if isinstance(event, BlockRemoved):
        return b"".join((_array(3), _REMOVED, _array(1), _hash(event.block_hash), _NIL))
    if isinstance(event, AllBlocksCleared):
        return _array(1) + _CLEARED
    raise TypeError(f"not a KV event: {event!r}")


def encode_batch(ts: float, events: Sequence[bytes], dp_rank: int) -> bytes:
    """The payload frame: msgpack `[ts (float64), [events...], dp_rank]`."""
    return b"".join(
        (b"\x93", msgpack.packb(float(ts)), _array(len(events)), *events, msgpack.packb(dp_rank))
    )


class EventQueue:
    """Bounded FIFO of events, read in batches of at most `batch_size` (pure state)."""

    def __init__(self, capacity: int, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.capacity = capacity
        self.batch_size = batch_size
        self.dropped = 0
        self._events: deque[KVEvent] = deque()

    def __len__(self) -> int:
        return len(self._events)

    def push(self, event: KVEvent) -> bool:
        """Queue `event`; when full it is dropped (and counted), as upstream."""
        if len(self._events) >= self.capacity:
            self.dropped += 1
            return False
        self._events.append(event)
        return True

    def ready(self, flush: bool) -> bool:
        """A batch is due: a full one, or any events when flushing."""
        return len(self._events) >= self.batch_size or (flush and bool(self._events))

    def peek(self) -> list[KVEvent]:
        """The next batch, left in the queue until `commit`."""
        return list(itertools.islice(self._events, self.batch_size))

    def commit(self, n: int) -> None:
        """Remove the first `n` events (the batch just handled)."""
        for _ in range(n):
            self._events.popleft()


class KVEventPublisher:
    """An `EventSink` that publishes KV events in batches on a connecting XPUB socket."""

    def __init__(
        self,
        endpoint: str,
        topic: bytes,
        dp_rank: int,
        batch_size: int,
        clock: Clock,
        *,
        connect_attempts: int = 0,
        capacity: int = QUEUE_CAPACITY,
        interval: float = FLUSH_INTERVAL,
    ) -> None:
        self.endpoint = endpoint
        self.topic = topic
        self.dp_rank = dp_rank
        self.clock = clock
        self.connect_attempts = connect_attempts
        self.interval = interval
        self.sequence = 0  # of the last batch sent
        self.lost = 0  # events that failed to encode or to send
        self._queue = EventQueue(capacity, batch_size)
        self._wake = asyncio.Event()
        self._flush = False
        self._subscriptions: set[bytes] = set()
        self._subscribed = asyncio.Event()
        self._ctx: zmq.asyncio.Context | None = None
        self._sock: zmq.asyncio.Socket | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @property
    def dropped(self) -> int:
        """Events that never went out: queue overflow, encoding or send errors."""
        return self._queue.dropped + self.lost

    @property
    def subscribed(self) -> bool:
        """A subscription matching the topic has arrived (sending is allowed)."""
        return self._subscribed.is_set()

    @property
    def pending(self) -> int:
        """Events waiting in the queue."""
        return len(self._queue)

    def publish(self, event: KVEvent) -> None:
        """Queue one event (the cache calls this); a full batch wakes the sender."""
        if self._closed:
            self.lost += 1
            return
        if self._queue.push(event) and len(self._queue) >= self._queue.batch_size:
            self._wake.set()

    def dropped_family(self, model: str) -> CollectorFamily:
        """The `pyllmd:kv_events_dropped_total{model_name}` counter, read at scrape time."""
        return CollectorFamily(
            DROPPED_METRIC,
            "counter",
            "KV events never published: queue full, encoding or send errors.",
            ("model_name",),
            lambda: [((model,), float(self.dropped))],
        )

    async def start(self) -> None:
        """Connect (retrying `connect_attempts` more times, 1 s apart) and start sending."""
        self._ctx = zmq.asyncio.Context()
        sock = self._ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.XPUB_NODROP, 1)
        sock.setsockopt(zmq.SNDHWM, SEND_HWM)
        sock.setsockopt(zmq.LINGER, 0)
        for attempt in range(self.connect_attempts + 1):
            try:
                sock.connect(self.endpoint)
                break
            except zmq.ZMQError as e:
                if attempt == self.connect_attempts:
                    sock.close()
                    self._ctx.term()
                    self._ctx = None
                    raise PublisherError(
                        f"--zmq-endpoint: cannot connect the KV-events publisher to "
                        f"{self.endpoint!r} "
                        f"after {attempt + 1} attempt(s): {e}"
                    ) from None
                log.warning("kv events: connect to %s failed: %s; retrying", self.endpoint, e)
                await self.clock.sleep(CONNECT_RETRY_INTERVAL)
        self._sock = sock
        self._tasks = [
            asyncio.create_task(self._watch_subscriptions(), name="kv-events-subscriptions"),
            asyncio.create_task(self._send_loop(), name="kv-events-sender"),
            asyncio.create_task(self._tick_loop(), name="kv-events-timer"),
        ]
        log.info(
            "kv events: publishing to %s topic=%s dp_rank=%d",
            self.endpoint,
            self.topic.decode(),
            self.dp_rank,
        )

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Flush pending events to a present subscriber, then close; libzmq gets at most
        `timeout` to deliver them."""
        if self._closed:
            return
        self._closed = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sock, ctx = self._sock, self._ctx
        if sock is None or ctx is None:
            return
        # Without a subscriber so far there is nobody to flush to: do not wait for one.
        self._drain(flush=True)
        if len(self._queue):
            self.lost += len(self._queue)
            log.warning("kv events: %d events not published at shutdown", len(self._queue))
            self._queue.commit(len(self._queue))
        sock.close(linger=int(timeout * 1000))
        await asyncio.to_thread(ctx.term)  # returns once sent, or after the linger
        self._sock = self._ctx = None

    async def _watch_subscriptions(self) -> None:
        """Track the subscriptions an XPUB reports (`\\x01topic` / `\\x00topic`)."""
        sock = self._sock
        assert sock is not None
        while True:
            message = await sock.recv()
            if not message or message[0] not in (0, 1):
                continue
            if message[0] == 1:
                self._subscriptions.add(bytes(message[1:]))
            else:
                self._subscriptions.discard(bytes(message[1:]))
            self._on_subscriptions()

    def _on_subscriptions(self) -> None:
        if any(self.topic.startswith(prefix) for prefix in self._subscriptions):
            if not self._subscribed.is_set():
                log.info("kv events: subscriber present on %s", self.endpoint)
            self._subscribed.set()
            self._flush = True  # what waited for the subscriber goes now
            self._wake.set()
        else:
            self._subscribed.clear()

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            flush, self._flush = self._flush, False
            self._drain(flush)

    async def _tick_loop(self) -> None:
        while True:
            await self.clock.sleep(self.interval)
            if len(self._queue):
                self._flush = True
                self._wake.set()

    def _drain(self, flush: bool) -> None:
        """Send due batches while a subscriber is present; synchronous (no awaits)."""
        sock = self._sock
        while sock is not None and self._subscribed.is_set() and self._queue.ready(flush):
            events = self._queue.peek()
            payloads = list(self._encode(events))
            if payloads:
                seq = self.sequence + 1
                body = encode_batch(self.clock.wall(), payloads, self.dp_rank)
                frames = [self.topic, seq.to_bytes(8, "big"), body]
                try:
                    # Non-blocking: zmq.asyncio hands back an already finished future.
                    sent = sock.send_multipart(frames, flags=zmq.NOBLOCK)
                    cast("asyncio.Future[object]", sent).result()
                except zmq.Again:
                    return  # libzmq's queue is full: retry at the next tick
                except Exception:  # noqa: BLE001 - a failed send must not stop the sender
                    log.exception("kv events: sending %d events failed", len(payloads))
                    self.lost += len(payloads)
                else:
                    self.sequence = seq
            self._queue.commit(len(events))

    def _encode(self, events: Iterable[KVEvent]) -> Iterable[bytes]:
        for event in events:
            try:
                yield encode_event(event)
            except (OverflowError, TypeError, ValueError) as e:
                self.lost += 1
                log.warning("kv events: cannot encode %r: %s", event, e)


def event_rank(data_parallel_size: int, data_parallel_rank: int, rank: int) -> int:
    """The dp_rank a rank's batches carry: its own rank, or `--data-parallel-rank`
    for a single-rank process that sets one (upstream: always 0)."""
    if data_parallel_size > 1:
        return rank
    return max(data_parallel_rank, 0)
