"""KV-event messages as they arrive over ZMQ (kv-events contract §2), decoded to plain data.

A message is three frames `[topic, seq, payload]`: topic `kv@<pod>@<model>`, an
8-byte big-endian sequence number and a msgpack batch `[ts, events, dp_rank?]`
whose events are vLLM's tagged arrays (`["BlockStored", hashes, parent, tokens,
block_size, lora_id, medium, lora_name, ...]`). Decoding is `msgpack.unpackb`,
then a tolerant reading of the arrays, more lenient than upstream's Go decoder on
purpose: any integer width is accepted for hashes and token ids, missing optional
trailing fields take their defaults and extra trailing fields (newer vLLM's
`extra_keys`, `group_idx`, ...) are ignored. An undecodable batch is dropped; an
undecodable event or unknown tag is skipped and the rest of the batch kept.

Also tolerated, unlike upstream: a model name containing `@` (the topic is split
at its first two `@` only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

MASK64 = 0xFFFFFFFFFFFFFFFF
TAG_STORED = "BlockStored"
TAG_REMOVED = "BlockRemoved"
TAG_CLEARED = "AllBlocksCleared"


class DecodeError(ValueError):
    """A frame, batch or event could not be decoded (the message says which part)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One received message: who sent it (from the topic) and its raw payload."""

    topic: str
    seq: int
    pod: str
    model: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class BlockStored:
    """Blocks entered an engine's cache. `parent` is the engine key of the block before
    the first one (None at the start of a prompt); `token_ids` cover all the blocks."""

    block_hashes: tuple[int, ...]
    parent: int | None
    token_ids: tuple[int, ...]
    block_size: int
    lora_id: int | None
    medium: str | None
    lora_name: str | None


@dataclass(frozen=True, slots=True)
class BlockRemoved:
    """Blocks left an engine's cache (on `medium`, the GPU when None)."""

    block_hashes: tuple[int, ...]
    medium: str | None


@dataclass(frozen=True, slots=True)
class AllBlocksCleared:
    """The engine dropped its whole prefix cache (e.g. sleep, reset_prefix_cache)."""


Event = BlockStored | BlockRemoved | AllBlocksCleared


@dataclass(frozen=True, slots=True)
class Batch:
    """A decoded payload: events in order (None where one could not be decoded)."""

    ts: float
    events: tuple[Event | None, ...]
    dp_rank: int | None


def parse_frames(frames: Sequence[bytes]) -> Message:
    """The `Message` of a 3-frame multipart; DecodeError when it is malformed."""
    if len(frames) != 3:
        raise DecodeError(f"expected 3 frames, got {len(frames)}")
    topic_raw, seq_raw, payload = frames
    try:
        topic = bytes(topic_raw).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("topic is not UTF-8") from None
    parts = topic.split("@", 2)
    if len(parts) != 3 or not parts[1]:
        raise DecodeError(f"topic {topic!r} is not kv@<pod>@<model>")
    if len(seq_raw) > 8:
        raise DecodeError(f"sequence frame has {len(seq_raw)} bytes, expected 8")
    seq = int.from_bytes(seq_raw, "big")
    return Message(topic, seq, parts[1], parts[2], bytes(payload))


def hash_to_key(value: Any) -> int:
    """An event hash as a uint64 engine key.

    An integer is used as is (a negative one as its 64-bit two's complement, as Go's
    `uint64(int64)`); bytes become their last 8 bytes read big-endian, left-padded
    with zeros when shorter (vLLM's bytes hashes); anything else is an error.
    """
    if isinstance(value, bool):
        raise DecodeError("hash is a bool")
    if isinstance(value, int):
        return value & MASK64
    if isinstance(value, bytes | bytearray):
        if not value:
            raise DecodeError("hash is an empty byte string")
        return int.from_bytes(bytes(value[-8:]), "big")
    raise DecodeError(f"unsupported hash type {type(value).__name__}")


def _opt_int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{what} is not an integer")
    return value


def _opt_str(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise DecodeError(f"{what} is not a string")
    return value


def _hashes(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list | tuple):
        raise DecodeError("block_hashes is not an array")
    return tuple(hash_to_key(v) for v in value)


def _tokens(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise DecodeError("token_ids is not an array")
    for t in value:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= 0xFFFFFFFF:
            raise DecodeError("token_ids holds a value that is not a uint32")
    return tuple(value)


def decode_event(raw: Any) -> Event:
    """One tagged-array event; DecodeError for a malformed one or an unknown tag."""
    if not isinstance(raw, list | tuple) or not raw:
        raise DecodeError("event is not a non-empty array")
    tag = raw[0]
    if isinstance(tag, bytes):
        tag = tag.decode("utf-8", "replace")
    fields = list(raw[1:]) + [None] * 7  # optional trailing fields default to nil
    if tag == TAG_STORED:
        parent = fields[1]
        return BlockStored(
            block_hashes=_hashes(fields[0]),
            parent=None if parent is None else hash_to_key(parent),
            token_ids=_tokens(fields[2]),
            block_size=_opt_int(fields[3], "block_size") or 0,
            lora_id=_opt_int(fields[4], "lora_id"),
            medium=_opt_str(fields[5], "medium"),
            lora_name=_opt_str(fields[6], "lora_name"),
        )
    if tag == TAG_REMOVED:
        return BlockRemoved(_hashes(fields[0]), _opt_str(fields[1], "medium"))
    if tag == TAG_CLEARED:
        return AllBlocksCleared()
    raise DecodeError(f"unknown event tag {tag!r}")


def decode_batch(payload: bytes) -> Batch:
    """The payload `[ts, events, dp_rank?]`; events that fail to decode become None."""
    try:
        raw = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated exception types
        raise DecodeError(f"payload is not msgpack: {type(e).__name__}") from None
    if not isinstance(raw, list | tuple) or len(raw) < 2:
        raise DecodeError("payload is not an array [ts, events, dp_rank]")
    ts, events = raw[0], raw[1]
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise DecodeError("batch timestamp is not a number")
    if not isinstance(events, list | tuple):
        raise DecodeError("batch events is not an array")
    rank = raw[2] if len(raw) > 2 else None
    decoded: list[Event | None] = []
    for item in events:
        try:
            decoded.append(decode_event(item))
        except DecodeError:
            decoded.append(None)
    return Batch(float(ts), tuple(decoded), rank if isinstance(rank, int) else None)


class SequenceTracker:
    """Notices lost and restarted streams from the sequence numbers of one subscriber.

    Tracked per (topic, data-parallel rank): vLLM counts from 0, our simulator and
    upstream's from 1, each +1 per batch. A jump forward means batches were lost
    (the slow-joiner window, a full high-water mark, a reconnect); a step back
    means the publisher restarted. Both are only counted and logged: upstream
    does not look at the numbers at all, and a gap cannot be replayed.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, int | None], int] = {}
        self.missed = 0  # batches lost in gaps
        self.gaps = 0
        self.restarts = 0

    def observe(self, topic: str, rank: int | None, seq: int) -> int:
        """Records `seq`; returns how many batches were missed before it (0 if none)."""
        key = (topic, rank)
        last = self._last.get(key)
        self._last[key] = seq
        if last is None:
            return 0
        if seq <= last:
            self.restarts += 1
            return 0
        missed = seq - last - 1
        if missed:
            self.gaps += 1
            self.missed += missed
        return missed
