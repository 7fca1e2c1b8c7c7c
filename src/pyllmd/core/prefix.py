"""KV-cache block hashing shared by the simulator (KV events) and the EPP (prefix scoring).

Two upstream schemes, both exact (see the kv-events contract):

* v0.4.0 "engine keys": SHA-256 over canonical CBOR, chained on the full 32-byte
  digest, key = last 8 bytes big-endian. Equal to vLLM's `sha256_cbor` hashes.
* v0.5.0 "request keys": FNV-1a-64 over canonical CBOR, chained on the uint64 key,
  with the model (or LoRA) name mixed into the root.

CBOR comes from `cbor2` (canonical mode), SHA-256 from `hashlib` and FNV-1a-64
from `fnv-c` (C): a byte loop in Python cost 11 µs per block, most of the precise
prefix scorer's time on a long prompt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

import cbor2
import fnv_c


def fnv1a_64(data: bytes) -> int:
    """FNV-1a 64-bit hash of `data` (the v0.5.0 scheme's hash function)."""
    return int(fnv_c.fnv1a_64(data))


def _check_block_size(block_size: int) -> None:
    # Upstream never validates this and loops forever on 0; we fail loudly instead.
    if block_size <= 0:
        raise ValueError(f"block_size must be > 0, got {block_size}")


def _chunks(tokens: Sequence[int], block_size: int) -> list[Sequence[int]]:
    """Full blocks only; a trailing partial block is dropped."""
    full = len(tokens) - len(tokens) % block_size
    return [tokens[i : i + block_size] for i in range(0, full, block_size)]


def engine_payload(parent: bytes, block: Sequence[int]) -> bytes:
    """v0.4.0 hashed payload of one block: CBOR `[parent digest, tokens, null]`."""
    return cbor2.dumps([parent, list(block), None], canonical=True)


def request_payload(parent: int, block: Sequence[int] | None, extra: str | None) -> bytes:
    """v0.5.0 hashed payload: CBOR `[parent uint, tokens or null, extra or null]`."""
    return cbor2.dumps([parent, None if block is None else list(block), extra], canonical=True)


@lru_cache(maxsize=64)
def root_digest(seed: str) -> bytes:
    """v0.4.0 root parent: SHA-256 of the canonical CBOR text string `seed` (32 bytes)."""
    return hashlib.sha256(cbor2.dumps(seed, canonical=True)).digest()


def block_digests(tokens: Sequence[int], block_size: int, seed: str) -> list[bytes]:
    """v0.4.0 chain of full 32-byte digests, one per full block of `tokens`."""
    _check_block_size(block_size)
    parent = root_digest(seed)
    out: list[bytes] = []
    for block in _chunks(tokens, block_size):
        parent = hashlib.sha256(engine_payload(parent, block)).digest()
        out.append(parent)
    return out


def block_keys(tokens: Sequence[int], block_size: int, seed: str) -> list[int]:
    """v0.4.0 uint64 block keys (as put on the KV-event wire): last 8 digest bytes, big-endian."""
    return [int.from_bytes(d[-8:], "big") for d in block_digests(tokens, block_size, seed)]


@lru_cache(maxsize=256)
def model_root(seed: str, model: str) -> int:
    """v0.5.0 per-model root: H(FNV-1a-64(seed bytes), nil, model)."""
    seed_hash = fnv1a_64(seed.encode("utf-8"))
    return fnv1a_64(request_payload(seed_hash, None, model))


def request_keys(
    tokens: Sequence[int], block_size: int, seed: str, model: str, parent: int = 0
) -> list[int]:
    """v0.5.0 request keys; `parent` != 0 continues an existing chain instead of the root.

    LoRA enters only here: pass the adapter name as `model`.
    """
    _check_block_size(block_size)
    prev = parent if parent != 0 else model_root(seed, model)
    out: list[int] = []
    for block in _chunks(tokens, block_size):
        prev = fnv1a_64(request_payload(prev, block, None))
        out.append(prev)
    return out
