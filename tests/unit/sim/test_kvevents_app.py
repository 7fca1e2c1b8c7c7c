"""KV events from the in-process simulator to a real SUB socket (check 52), as a
v0.5.0 consumer would index them, plus the per-rank random streams of data parallel."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import aiohttp
import cbor2
import msgpack
import pytest
import zmq
import zmq.asyncio
from aiohttp.test_utils import TestServer

from pyllmd.core.clock import SteppingClock, VirtualClock
from pyllmd.core.prefix import request_keys
from pyllmd.core.tokenize import SimpleTokenizer
from pyllmd.sim.config import load_config
from pyllmd.sim.run import build_app, start_publisher
from pyllmd.sim.server.kvevents import KVEventPublisher

from .conftest import SimFactory, metric_value

ENV = {"POD_IP": "1.2.3.4"}


def reference_keys(tokens: list[int], block_size: int, seed: str = "") -> list[int]:
    """Spec §4.2 written out independently: SHA-256 over canonical CBOR, chained on digests."""
    parent = hashlib.sha256(cbor2.dumps(seed, canonical=True)).digest()
    keys = []
    for i in range(0, len(tokens) - len(tokens) % block_size, block_size):
        payload = cbor2.dumps([parent, tokens[i : i + block_size], None], canonical=True)
        parent = hashlib.sha256(payload).digest()
        keys.append(int.from_bytes(parent[-8:], "big"))
    return keys


class Subscriber:
    """A SUB socket bound on a random loopback port that reads in the background."""

    def __init__(self) -> None:
        self.ctx = zmq.asyncio.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"kv@")
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.messages: asyncio.Queue[list[bytes]] = asyncio.Queue()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            frames = await self.sock.recv_multipart()
            await self.messages.put([bytes(f) for f in frames])

    async def next(self, timeout: float = 5.0) -> list[bytes]:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.sock.close()
        self.ctx.term()


@pytest.fixture
async def subscriber() -> AsyncIterator[Subscriber]:
    sub = Subscriber()
    yield sub
    await sub.close()


async def publisher_for(args: list[str], clock: VirtualClock) -> KVEventPublisher:
    cfg = load_config(["--model", "m", *args], ENV, 0).config
    pub = await start_publisher(cfg, 0, clock)
    assert pub is not None
    for _ in range(500):  # the subscription arrives once the SUB is being read
        if pub.subscribed:
            return pub
        await asyncio.sleep(0.01)
    raise AssertionError("no subscription")


async def test_sim_acc_52_block_stored_on_the_wire(
    start_sim: SimFactory, subscriber: Subscriber
) -> None:
    clock = VirtualClock()
    args = ["--enable-kvcache", "--block-size", "8", "--zmq-endpoint", subscriber.endpoint]
    pub = await publisher_for(args, clock)
    try:
        sim = await start_sim(*args, env=ENV, sink=pub)
        prompt = " ".join(f"w{i}" for i in range(20))
        tokens = (await (await sim.post("/tokenize", {"prompt": prompt})).json())["tokens"]
        assert len(tokens) == 20
        await sim.client.completions.create(model="m", prompt=prompt, max_tokens=2)
        await clock.advance(1.0)  # a partial batch goes after one second
        topic, seq, payload = await subscriber.next()
        h1, h2 = reference_keys(tokens[:16], 8)
        assert topic == b"kv@1.2.3.4@m" and seq == (1).to_bytes(8, "big")
        ts, events, rank = msgpack.unpackb(payload)
        assert ts == pytest.approx(clock.wall()) and rank == 0
        # Beyond upstream (kv-events contract §2.4): parent, token ids and block size.
        assert events == [
            ["BlockStored", [h1], None, tokens[0:8], 8, None, None, None],
            ["BlockStored", [h2], h1, tokens[8:16], 8, None, None, None],
        ]
        text = await sim.metrics()
        assert metric_value(text, "pyllmd:kv_events_dropped_total", model_name="m") == 0
    finally:
        await pub.close()


async def test_a_v050_consumer_indexes_the_events_under_the_request_keys(
    start_sim: SimFactory, subscriber: Subscriber
) -> None:
    """Replay the scorer's BlockStored handling (contract §3.2) on what arrives."""
    clock = VirtualClock()
    args = ["--enable-kvcache", "--zmq-endpoint", subscriber.endpoint, "--event-batch-size", "1"]
    pub = await publisher_for(args, clock)
    try:
        sim = await start_sim(*args, env=ENV, sink=pub)
        short = "".join(f"x{i} " for i in range(16))  # a token keeps its trailing space
        long = short + " ".join(f"y{i}" for i in range(40))
        for prompt in (short, long):  # the second extends the first's chain
            await sim.client.completions.create(model="m", prompt=prompt, max_tokens=1)
        engine_to_request: dict[int, int] = {}
        for _ in range(3):  # 1 block, then 2 more (the first is reused)
            _, _, payload = await subscriber.next()
            for _tag, hashes, parent, token_ids, size, *_ in msgpack.unpackb(payload)[1]:
                start = engine_to_request[parent] if parent is not None else 0
                keys = request_keys(token_ids, size, "", "m", parent=start)
                assert len(keys) == len(hashes)
                engine_to_request.update(zip(hashes, keys, strict=True))
        tokens = (await (await sim.post("/tokenize", {"prompt": long})).json())["tokens"]
        assert sorted(engine_to_request.values()) == sorted(request_keys(tokens, 16, "", "m"))
    finally:
        await pub.close()


async def test_each_rank_has_its_own_random_stream() -> None:
    """Beyond upstream: rank r draws from seed + r, so ranks do not repeat each other."""
    cfg = load_config(["--model", "m", "--seed", "7"], {}, 0).config
    body = {"model": "m", "prompt": "hi", "max_tokens": 30, "ignore_eos": True}
    texts = []
    for rank in (0, 0, 1):
        app = build_app(cfg, cfg.port + rank, SteppingClock(), SimpleTokenizer(), None, rank)
        async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as http:
            async with http.post(str(server.make_url("/v1/completions")), json=body) as resp:
                texts.append((await resp.json())["choices"][0]["text"])
    assert texts[0] == texts[1] != texts[2]


async def test_batch_calculator_stores_generated_blocks_as_they_fill(
    start_sim: SimFactory, subscriber: Subscriber
) -> None:
    """With `--latency-calculator batch` a block of generated tokens is stored at the end of
    the step that computed its last token, as vLLM does, not only the prompt's blocks."""
    clock = VirtualClock()
    args = ["--enable-kvcache", "--block-size", "8", "--zmq-endpoint", subscriber.endpoint]
    args += ["--event-batch-size", "1", "--mode", "echo"]
    batch = ["--served-model-name", "m", "--model", "meta-llama/Llama-2-7b-hf"]
    batch += ["--latency-calculator", "batch", "--kv-cache-size", "600"]
    pub = await publisher_for(args, clock)
    try:
        sim = await start_sim(*args, *batch, env=ENV, sink=pub, clock=clock)
        prompt = " ".join(f"w{i}" for i in range(20))
        tokens = (await (await sim.post("/tokenize", {"prompt": prompt})).json())["tokens"]
        # echo: the reply is the prompt again; 40 tokens, the last one's KV never computed:
        # blocks 0-1 of the prompt, 2 (4 prompt + 4 generated tokens) and 3 (generated)
        sequence = tokens + tokens
        keys = reference_keys(sequence[:32], 8)
        chunks: list[str] = []

        async def read() -> None:
            stream = await sim.client.completions.create(
                model="m", prompt=prompt, max_tokens=20, stream=True
            )
            async for chunk in stream:
                chunks.extend(c.text for c in chunk.choices if c.text)

        call = asyncio.create_task(read())
        events: list[list[object]] = []
        streamed: list[int] = []  # tokens the client had when each event arrived
        for _ in range(5000):  # 1 ms at a time, with real time for the socket to deliver
            await clock.advance(0.001)
            await asyncio.sleep(0.002)
            while not subscriber.messages.empty():
                _, _, payload = subscriber.messages.get_nowait()
                new = msgpack.unpackb(payload)[1]
                events += new
                streamed += [len(chunks)] * len(new)
            if call.done():
                break
        await call
        assert "".join(chunks) == prompt
        assert events == [
            ["BlockStored", [keys[i]], keys[i - 1] if i else None, sequence[i * 8 : i * 8 + 8], 8]
            + [None, None, None]
            for i in range(4)
        ]
        # block 2 fills as the 5th generated token's KV is computed, block 3 with the 13th
        # (the step that produces the next token), long before the 20th and last token
        assert streamed[2] <= 6 and streamed[3] <= 14, streamed
    finally:
        await pub.close()
