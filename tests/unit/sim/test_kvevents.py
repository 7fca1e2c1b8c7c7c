"""KV-event publisher: wire encoding, batching, sequence, timer, drops, shutdown flush.

A real SUB socket bound on loopback receives what the publisher sends; the
publisher's timer runs on a VirtualClock, so "one second later" is exact.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import msgpack
import pytest
import zmq
import zmq.asyncio

from pyllmd.core.clock import SteppingClock, VirtualClock
from pyllmd.core.prefix import block_keys
from pyllmd.sim.engine.kvcache import AllBlocksCleared, BlockRemoved, BlockStored, LoraTag
from pyllmd.sim.server.kvevents import (
    EventQueue,
    KVEventPublisher,
    PublisherError,
    encode_batch,
    encode_event,
    topic,
)

TOPIC = topic("10.0.0.1", "m")
H1, H2 = 3304056276748800391, 17643853483570299582  # kv-events contract §4, seed "", B=16
Frames = list[bytes]


def stored(h: int, parent: int | None = None, size: int = 2) -> BlockStored:
    return BlockStored(h, parent, tuple(range(size)), size)


class Sub:
    """A SUB socket bound on a loopback port, subscribed to `kv@`."""

    def __init__(self, port: int = 0) -> None:
        self.ctx = zmq.asyncio.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"kv@")
        self.sock.setsockopt(zmq.LINGER, 0)
        if port:
            self.sock.bind(f"tcp://127.0.0.1:{port}")
            self.port = port
        else:
            self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{self.port}"

    async def recv(self, timeout: float = 5.0) -> Frames:
        frames = await asyncio.wait_for(self.sock.recv_multipart(), timeout)
        return [bytes(f) for f in frames]

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()


async def until(probe: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Let the loop run (real time, bounded) until `probe()` holds."""
    for _ in range(int(timeout / 0.01)):
        if probe():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


Start = Callable[..., Awaitable[KVEventPublisher]]


@pytest.fixture
async def sub() -> AsyncIterator[Sub]:
    s = Sub()
    yield s
    s.close()


@pytest.fixture
async def start_publisher() -> AsyncIterator[Start]:
    started: list[KVEventPublisher] = []

    async def start(endpoint: str, **kw: object) -> KVEventPublisher:
        args: dict[str, object] = {"dp_rank": 0, "batch_size": 16, "clock": VirtualClock()}
        args.update(kw)
        pub = KVEventPublisher(endpoint, TOPIC, **args)  # type: ignore[arg-type]
        await pub.start()
        started.append(pub)
        return pub

    yield start
    for pub in started:
        await pub.close(timeout=0.1)


async def subscribed(pub: KVEventPublisher, sub: Sub) -> None:
    """Wait until the publisher saw the subscription (the SUB must be read meanwhile)."""
    reader = asyncio.ensure_future(sub.sock.poll(5000))
    await until(lambda: pub.subscribed, "the subscription")
    reader.cancel()


def decode(frames: Frames) -> tuple[bytes, int, list[object]]:
    assert len(frames) == 3
    payload = msgpack.unpackb(frames[2])
    return frames[0], int.from_bytes(frames[1], "big"), payload


# -- encoding ---------------------------------------------------------------


def test_block_stored_bytes_are_vllm_array_form_with_uint64_hashes() -> None:
    event = BlockStored(H2, H1, tuple(range(17, 33)), 16)
    tokens = b"\xdc\x00\x10" + bytes(range(17, 33))  # array16 of positive fixints
    assert encode_event(event) == (
        b"\x98\xabBlockStored\x91\xcf" + H2.to_bytes(8, "big")
        + b"\xcf" + H1.to_bytes(8, "big") + tokens + b"\x10\xc0\xc0\xc0"
    )  # fmt: skip
    first = encode_event(BlockStored(H1, None, (1,), 16))
    assert first.startswith(b"\x98\xabBlockStored\x91\xcf" + H1.to_bytes(8, "big") + b"\xc0")


def test_small_hashes_still_use_the_nine_byte_form() -> None:
    expected = b"\x93\xacBlockRemoved\x91\xcf" + (5).to_bytes(8, "big") + b"\xc0"
    assert encode_event(BlockRemoved(5)) == expected


def test_all_blocks_cleared_and_lora_fields() -> None:
    assert encode_event(AllBlocksCleared()) == b"\x91\xb0AllBlocksCleared"
    event = BlockStored(7, None, (1, 2), 2, lora_id=3, lora_name="ad")
    decoded = msgpack.unpackb(encode_event(event))
    assert decoded == ["BlockStored", [7], None, [1, 2], 2, 3, None, "ad"]


def test_batch_is_ts_float64_events_and_rank() -> None:
    ev = encode_event(BlockRemoved(H1))
    body = encode_batch(1.5, [ev], 3)
    assert body == b"\x93\xcb" + bytes.fromhex("3ff8000000000000") + b"\x91" + ev + b"\x03"
    assert msgpack.unpackb(body) == [1.5, [["BlockRemoved", [H1], None]], 3]


def test_keys_of_the_contract_vector() -> None:
    assert block_keys(list(range(1, 41)), 16, "") == [H1, H2]


# -- queue ------------------------------------------------------------------


def test_queue_drops_new_events_when_full_and_cuts_batches() -> None:
    q = EventQueue(capacity=3, batch_size=2)
    assert [q.push(BlockRemoved(i)) for i in range(5)] == [True, True, True, False, False]
    assert q.dropped == 2 and len(q) == 3
    assert q.ready(flush=False)
    assert q.peek() == [BlockRemoved(0), BlockRemoved(1)]
    q.commit(2)
    assert not q.ready(flush=False) and q.ready(flush=True)
    assert q.peek() == [BlockRemoved(2)]
    with pytest.raises(ValueError):
        EventQueue(1, 0)


# -- publisher over a real socket ---------------------------------------------


async def test_full_batches_go_at_once_with_sequence_from_one(
    sub: Sub, start_publisher: Start
) -> None:
    pub = await start_publisher(sub.endpoint, batch_size=2)
    await subscribed(pub, sub)
    for i in range(5):
        pub.publish(BlockRemoved(i))
    got = [decode(await sub.recv()) for _ in range(2)]
    assert [(t, seq, len(p[1])) for t, seq, p in got] == [(TOPIC, 1, 2), (TOPIC, 2, 2)]  # type: ignore[arg-type]
    assert pub.pending == 1 and pub.sequence == 2
    assert isinstance(pub.clock, VirtualClock)
    await pub.clock.advance(1.0)  # the timer sends the partial batch
    topic_, seq, payload = decode(await sub.recv())
    assert seq == 3 and payload[1] == [["BlockRemoved", [4], None]] and payload[2] == 0


async def test_timer_sends_a_partial_batch_after_one_second(
    sub: Sub, start_publisher: Start
) -> None:
    clock = VirtualClock()
    pub = await start_publisher(sub.endpoint, clock=clock, dp_rank=2)
    await subscribed(pub, sub)
    pub.publish(stored(H1))
    pub.publish(stored(H2, H1))
    await clock.advance(0.9)
    assert pub.pending == 2 and pub.sequence == 0
    await clock.advance(0.1)
    _, seq, payload = decode(await sub.recv())
    assert seq == 1 and payload[0] == pytest.approx(clock.wall())
    assert payload[1] == [
        ["BlockStored", [H1], None, [0, 1], 2, None, None, None],
        ["BlockStored", [H2], H1, [0, 1], 2, None, None, None],
    ]
    assert payload[2] == 2


async def test_events_before_the_subscriber_joins_are_not_lost(start_publisher: Start) -> None:
    with socket.socket() as s:  # a port nobody listens on yet
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pub = await start_publisher(f"tcp://127.0.0.1:{port}", batch_size=1)
    for i in range(3):
        pub.publish(BlockRemoved(i))
    await asyncio.sleep(0.05)
    assert pub.pending == 3 and pub.sequence == 0  # held: nobody subscribed yet
    late = Sub(port)
    try:
        got = [decode(await late.recv()) for _ in range(3)]
    finally:
        late.close()
    assert [(seq, p[1]) for _, seq, p in got] == [  # type: ignore[index]
        (i + 1, [["BlockRemoved", [i], None]]) for i in range(3)
    ]


async def test_overflow_is_dropped_and_counted(start_publisher: Start) -> None:
    pub = await start_publisher("tcp://127.0.0.1:9", capacity=3, batch_size=1)
    for i in range(5):
        pub.publish(BlockRemoved(i))
    assert pub.dropped == 2 and pub.pending == 3
    family = pub.dropped_family("served")
    lines: list[str] = []
    family.render(lines)
    assert 'pyllmd:kv_events_dropped_total{model_name="served"} 2' in lines


async def test_a_bad_event_does_not_stop_the_sender(sub: Sub, start_publisher: Start) -> None:
    pub = await start_publisher(sub.endpoint, batch_size=2)
    await subscribed(pub, sub)
    pub.publish(BlockRemoved(2**64))  # cannot be a uint64: encoding fails
    pub.publish(BlockRemoved(1))
    _, seq, payload = decode(await sub.recv())
    assert seq == 1 and payload[1] == [["BlockRemoved", [1], None]]
    pub.publish(BlockRemoved(2))
    pub.publish(BlockRemoved(3))
    _, seq, payload = decode(await sub.recv())
    assert seq == 2 and len(payload[1]) == 2  # type: ignore[arg-type]
    assert pub.lost == 1 and pub.dropped == 1


async def test_close_flushes_pending_events(sub: Sub) -> None:
    pub = KVEventPublisher(sub.endpoint, TOPIC, 0, 16, VirtualClock())
    await pub.start()
    await subscribed(pub, sub)
    pub.publish(BlockRemoved(7))
    pub.publish(AllBlocksCleared())
    assert pub.pending == 2
    await pub.close()
    _, seq, payload = decode(await sub.recv())
    assert seq == 1 and payload[1] == [["BlockRemoved", [7], None], ["AllBlocksCleared"]]
    pub.publish(BlockRemoved(8))  # after close: counted, not sent
    assert pub.dropped == 1


async def test_connect_failure_retries_one_second_apart() -> None:
    clock = SteppingClock()
    pub = KVEventPublisher("tcp://127.0.0.1", TOPIC, 0, 16, clock, connect_attempts=2)
    with pytest.raises(PublisherError) as err:
        await pub.start()
    assert "after 3 attempt(s)" in str(err.value) and "\n" not in str(err.value)
    assert clock.now() == 2.0


async def test_lora_and_cache_events_reach_the_wire(sub: Sub, start_publisher: Start) -> None:
    from pyllmd.sim.engine.kvcache import KVCache

    pub = await start_publisher(sub.endpoint, batch_size=3)
    await subscribed(pub, sub)
    cache = KVCache(8, 2, "", sink=pub)
    cache.start("r", [1, 2, 3, 4, 5], 0.0, lora=LoraTag(1, "ad"))
    cache.disable()
    _, _, payload = decode(await sub.recv())
    k1, k2 = block_keys([1, 2, 3, 4], 2, "")
    assert payload[1] == [
        ["BlockStored", [k1], None, [1, 2], 2, 1, None, "ad"],
        ["BlockStored", [k2], k1, [3, 4], 2, 1, None, "ad"],
        ["AllBlocksCleared"],
    ]
