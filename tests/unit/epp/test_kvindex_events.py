"""KV-event decoding (kv-events contract §2): the simulator's and vLLM's byte layouts, tolerance,
topic parsing and sequence gaps."""

from __future__ import annotations

import struct

import msgpack
import pytest

from pyllmd.epp.kvindex.events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    DecodeError,
    SequenceTracker,
    decode_batch,
    decode_event,
    hash_to_key,
    parse_frames,
)

H = 3304056276748800391  # contract §4: v0.4.0 key of tokens 1..16, seed ""
PINNED_SIM_EVENT = (
    b"\x97\xab"
    + b"BlockStored"
    + b"\x91\xcf"
    + bytes.fromhex("2dda5dad95831187")
    + b"\xc0\xc0\x00\xc0\xc0"
)


def test_pinned_simulator_bytes_decode() -> None:
    assert H == 0x2DDA5DAD95831187
    batch = decode_batch(
        b"\x93\xcb" + struct.pack(">d", 1.5) + b"\x91" + PINNED_SIM_EVENT + b"\x00"
    )
    assert batch.ts == 1.5
    assert batch.dp_rank == 0
    assert batch.events == (BlockStored((H,), None, (), 0, None, None, None),)


def test_vllm_block_stored_with_all_eight_fields() -> None:
    raw = ["BlockStored", [H, 7], 5, list(range(1, 33)), 16, 3, "CPU", "adapter"]
    assert decode_event(raw) == BlockStored((H, 7), 5, tuple(range(1, 33)), 16, 3, "CPU", "adapter")


@pytest.mark.parametrize(
    ("value", "key"),
    [
        (5, 5),  # positive fixint
        (300, 300),  # uint16
        (2**64 - 1, 2**64 - 1),  # uint64
        (-1, 2**64 - 1),  # int64: Go's uint64(int64)
        (bytes(range(32)), int.from_bytes(bytes(range(24, 32)), "big")),  # last 8 bytes
        (b"\x01\x02", 0x0102),  # short: left-padded
    ],
)
def test_hashes_of_any_integer_width_or_bytes(value: int | bytes, key: int) -> None:
    assert hash_to_key(value) == key
    wire = msgpack.packb([0.0, [["BlockRemoved", [value], None]]])
    assert decode_batch(wire).events == (BlockRemoved((key,), None),)


def test_bad_events_are_skipped_and_the_rest_kept() -> None:
    wire = msgpack.packb(
        [
            0.0,
            [
                ["BlockRemoved", [b""], None],  # empty bytes hash
                ["Nope", 1],  # unknown tag
                "not an array",
                ["BlockStored", [1], None, [1, -2], 16],  # a token id is not a uint32
                ["BlockStored", [9], None, [1, 2]],  # missing trailing fields: defaults
                ["BlockRemoved", [8], "GPU", "extra", 4],  # extra trailing fields: ignored
                ["AllBlocksCleared"],
            ],
        ]
    )
    events = decode_batch(wire).events
    assert events[:4] == (None, None, None, None)
    assert events[4] == BlockStored((9,), None, (1, 2), 0, None, None, None)
    assert events[5] == BlockRemoved((8,), "GPU")
    assert events[6] == AllBlocksCleared()


@pytest.mark.parametrize(
    "payload",
    [b"\xc1", msgpack.packb({"ts": 1}), msgpack.packb([1.0]), msgpack.packb(["x", []])],
)
def test_undecodable_batches_are_refused(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_batch(payload)


def test_batch_without_rank_or_with_nil_rank() -> None:
    assert decode_batch(msgpack.packb([2, []])).dp_rank is None
    assert decode_batch(msgpack.packb([2.0, [], None])).dp_rank is None
    assert decode_batch(msgpack.packb([2.0, [], 3])).dp_rank == 3


def test_topic_and_sequence_frames() -> None:
    msg = parse_frames([b"kv@10.0.0.7@meta-llama/Llama-3.1-8B", (42).to_bytes(8, "big"), b"p"])
    assert (msg.pod, msg.model, msg.seq, msg.payload) == (
        "10.0.0.7",
        "meta-llama/Llama-3.1-8B",
        42,
        b"p",
    )
    # upstream drops a model name containing "@"; it is split at the first two only here
    assert parse_frames([b"kv@ip@org/m@v2", bytes(8), b""]).model == "org/m@v2"


@pytest.mark.parametrize(
    "frames",
    [
        [b"kv@ip@m", bytes(8)],
        [b"kv@ip@m", bytes(8), b"", b""],
        [b"kv@ip", bytes(8), b""],
        [b"kv@@m", bytes(8), b""],
        [b"\xff@a@b", bytes(8), b""],
        [b"kv@ip@m", bytes(9), b""],
    ],
)
def test_malformed_messages_are_refused(frames: list[bytes]) -> None:
    with pytest.raises(DecodeError):
        parse_frames(frames)


def test_sequence_gaps_and_restarts_are_counted_per_topic_and_rank() -> None:
    seqs = SequenceTracker()
    assert seqs.observe("kv@a@m", 0, 1) == 0  # first sight: nothing to compare
    assert seqs.observe("kv@a@m", 0, 2) == 0
    assert seqs.observe("kv@a@m", 0, 5) == 2  # 3 and 4 lost
    assert seqs.observe("kv@a@m", 1, 0) == 0  # another rank counts on its own
    assert seqs.observe("kv@b@m", 0, 9) == 0  # another pod too
    assert seqs.observe("kv@a@m", 0, 0) == 0  # publisher restarted
    assert (seqs.gaps, seqs.missed, seqs.restarts) == (1, 2, 1)
