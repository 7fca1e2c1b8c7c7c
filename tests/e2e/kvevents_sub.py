"""A SUB socket for KV-event e2e tests, and spec §4.2 hashing written out independently."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import cbor2
import msgpack
import pytest
import zmq

POD_IP = "1.2.3.4"
ENV = {"POD_IP": POD_IP}


def reference_keys(tokens: list[int], block_size: int, seed: str = "") -> list[int]:
    """Spec §4.2: SHA-256 of canonical CBOR `[parent digest, tokens, null]`, last 8 bytes."""
    parent = hashlib.sha256(cbor2.dumps(seed, canonical=True)).digest()
    keys = []
    for i in range(0, len(tokens) - len(tokens) % block_size, block_size):
        payload = cbor2.dumps([parent, tokens[i : i + block_size], None], canonical=True)
        parent = hashlib.sha256(payload).digest()
        keys.append(int.from_bytes(parent[-8:], "big"))
    return keys


@dataclass
class Batch:
    topic: bytes
    seq: int
    ts: float
    events: list[list[Any]]
    rank: int


class Subscriber:
    """A SUB bound on a random loopback port; every batch read so far is kept in order."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"kv@")
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.batches: list[Batch] = []

    @property
    def events(self) -> list[list[Any]]:
        return [e for b in self.batches for e in b.events]

    def wait(self, done: Callable[[list[list[Any]]], bool], timeout: float = 5.0) -> None:
        """Read batches until `done(events)` holds; the SUB must be read for the
        publisher to learn the subscription, so this also polls when idle."""
        deadline = time.monotonic() + timeout
        while not done(self.events):
            if time.monotonic() > deadline:
                raise AssertionError(f"events so far: {self.events}")
            if self.sock.poll(50):
                topic, seq, payload = self.sock.recv_multipart()
                ts, events, rank = msgpack.unpackb(payload)
                self.batches.append(Batch(topic, int.from_bytes(seq, "big"), ts, events, rank))

    def held(self) -> set[int]:
        """Blocks stored and not removed since the last AllBlocksCleared."""
        held: set[int] = set()
        for event in self.events:
            if event[0] == "BlockStored":
                held.update(event[1])
            elif event[0] == "BlockRemoved":
                held.difference_update(event[1])
            else:
                held.clear()
        return held

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    sub = Subscriber()
    yield sub
    sub.close()


def words(prefix: str, n: int) -> str:
    return "".join(f"{prefix}{i} " for i in range(n)).strip()
