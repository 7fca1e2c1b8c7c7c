"""KV block cache: capacity, reference counts, eviction order, events and lookups."""

from __future__ import annotations

import pytest

from pyllmd.core.prefix import block_keys
from pyllmd.sim.engine.kvcache import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    CacheLookup,
    KVCache,
    KVCacheError,
    ListSink,
)

B = 8


def toks(start: int, n_blocks: int) -> list[int]:
    return list(range(start, start + n_blocks * B))


def keys(tokens: list[int]) -> list[int]:
    return block_keys(tokens, B, "")


def make(capacity: int) -> tuple[KVCache, ListSink]:
    sink = ListSink()
    return KVCache(capacity, B, "", sink), sink


def test_sim_acc_53_kv_capacity_error() -> None:
    cache, sink = make(2)
    with pytest.raises(KVCacheError) as err:
        cache.start("r1", toks(1, 3), 0.0)
    assert err.value.message == (
        "the kv cache does not have sufficient capacity to store this request"
    )
    assert str(err.value) == err.value.message
    assert sink.events == [] and cache.usage == 0.0
    # The failed request left nothing behind: a fitting request with the same id works.
    cache.start("r1", toks(1, 2), 1.0)


def test_sim_acc_54_kv_eviction_events() -> None:
    cache, sink = make(2)
    a, b = toks(1, 2), toks(1000, 2)
    cache.start("r1", a, 0.0)
    assert cache.usage == 1.0
    cache.finish("r1", 1.0)
    assert cache.usage == 0.0
    sink.events.clear()
    cache.start("r2", b, 2.0)
    ka, kb = keys(a), keys(b)
    assert [type(e) for e in sink.events] == [BlockRemoved, BlockStored] * 2
    assert {e.block_hash for e in sink.events if isinstance(e, BlockRemoved)} == set(ka)
    assert [e.block_hash for e in sink.events if isinstance(e, BlockStored)] == kb
    cache.finish("r2", 3.0)
    assert cache.usage == 0.0


def test_block_stored_carries_parent_tokens_and_block_size() -> None:
    cache, sink = make(10)
    tokens = toks(1, 3) + [99, 98]  # trailing partial block is not stored
    cache.start("r", tokens, 0.0)
    k = keys(tokens)
    assert sink.events == [
        BlockStored(k[0], None, tuple(tokens[0:8]), B),
        BlockStored(k[1], k[0], tuple(tokens[8:16]), B),
        BlockStored(k[2], k[1], tuple(tokens[16:24]), B),
    ]


def test_stored_event_parent_is_previous_block_even_when_it_was_cached() -> None:
    cache, sink = make(10)
    cache.start("r1", toks(1, 1), 0.0)
    sink.events.clear()
    longer = toks(1, 2)
    cache.start("r2", longer, 1.0)
    k = keys(longer)
    assert sink.events == [BlockStored(k[1], k[0], tuple(longer[8:16]), B)]


def test_sim_acc_55_cached_tokens() -> None:
    cache, _ = make(100)
    prompt = toks(1, 2) + [7, 7, 7]
    first = cache.start("r1", prompt, 0.0)
    assert (first.total_blocks, first.cached_blocks, first.prefix_blocks) == (2, 0, 0)
    cache.finish("r1", 1.0)
    second = cache.start("r2", prompt, 2.0)
    assert second.cached_blocks * B == 16  # cached tokens reduce TTFT by 16 x per-token time
    assert second.hit_rate == 1.0


def test_a_block_matches_only_after_the_same_prefix() -> None:
    cache, _ = make(100)
    a, b, c = toks(1, 1), toks(100, 1), toks(200, 1)
    cache.start("r1", b + c, 0.0)
    # Keys are chained: block "b" after "a" is not block "b" at position 0.
    lookup = cache.start("r2", a + b, 1.0)
    assert (lookup.cached_blocks, lookup.prefix_blocks) == (0, 0)
    lookup = cache.peek(b + a)
    assert (lookup.total_blocks, lookup.cached_blocks, lookup.prefix_blocks) == (2, 1, 1)
    assert lookup.hit_rate == 0.5


def test_hit_rate_is_computed_before_insertion() -> None:
    cache, _ = make(100)
    lookup = cache.start("r1", toks(1, 4), 0.0)
    assert lookup.hit_rate == 0.0  # upstream would report 1.0 here
    assert cache.peek(toks(1, 4)).hit_rate == 1.0


def test_hit_rate_of_prompt_without_full_block_is_zero() -> None:
    cache, _ = make(100)
    lookup = cache.start("r1", [1, 2, 3], 0.0)
    assert lookup == CacheLookup(0, 0, 0)
    assert lookup.hit_rate == 0.0


def test_reference_counts_shared_blocks() -> None:
    cache, sink = make(10)
    prompt = toks(1, 2)
    k = keys(prompt)
    cache.start("r1", prompt, 0.0)
    lookup = cache.start("r2", prompt, 0.5)
    assert lookup.cached_blocks == 2
    assert cache.block_state(k[0]) == (2, True)
    assert len(sink.events) == 2  # no second store for blocks already in use
    cache.finish("r1", 1.0)
    assert cache.block_state(k[0]) == (1, True)
    assert cache.usage == pytest.approx(0.2)
    cache.finish("r2", 2.0)
    assert cache.block_state(k[0]) == (0, True)
    assert cache.usage == 0.0


def test_reactivated_blocks_are_not_stored_again_and_are_not_evicted() -> None:
    cache, sink = make(3)
    a = toks(1, 2)
    cache.start("r1", a, 0.0)
    cache.finish("r1", 1.0)
    sink.events.clear()
    lookup = cache.start("r2", a, 2.0)
    assert lookup.cached_blocks == 2
    assert sink.events == []
    assert cache.usage == pytest.approx(2 / 3)
    # Only one free slot is left and no unused block: a 2-block prompt does not fit.
    with pytest.raises(KVCacheError):
        cache.start("r3", toks(500, 2), 3.0)
    cache.start("r4", toks(500, 1), 3.0)


def test_capacity_counts_reactivated_blocks() -> None:
    cache, _ = make(2)
    cache.start("r1", toks(1, 1), 0.0)
    cache.finish("r1", 1.0)  # 1 unused
    cache.start("r2", toks(100, 1), 2.0)  # 1 used, 1 unused
    with pytest.raises(KVCacheError):
        cache.start("r3", toks(1, 1) + toks(300, 1), 3.0)  # used 1 + reactivate 1 + new 1 > 2


def test_eviction_takes_the_oldest_unused_block() -> None:
    cache, sink = make(3)
    old, mid, young = toks(1, 1), toks(100, 1), toks(200, 1)
    for i, t in enumerate((old, mid, young)):
        cache.start(f"r{i}", t, float(i))
        cache.finish(f"r{i}", float(i) + 0.5)
    sink.events.clear()
    cache.start("new", toks(300, 1), 10.0)
    assert sink.events[0] == BlockRemoved(keys(old)[0])
    assert cache.block_state(keys(mid)[0]) == (0, True)


def test_eviction_of_one_request_frees_its_tail_first() -> None:
    cache, sink = make(3)
    prompt = toks(1, 3)
    cache.start("r1", prompt, 0.0)
    cache.finish("r1", 1.0)
    sink.events.clear()
    cache.start("r2", toks(500, 1), 2.0)
    assert sink.events[0] == BlockRemoved(keys(prompt)[2])
    assert cache.peek(prompt).prefix_blocks == 2


def test_duplicate_request_id_is_rejected() -> None:
    cache, _ = make(10)
    cache.start("same", toks(1, 1), 0.0)
    with pytest.raises(KVCacheError) as err:
        cache.start("same", toks(100, 1), 1.0)
    assert err.value.message == "request already exists for id same"


def test_duplicate_id_is_checked_before_capacity() -> None:
    cache, _ = make(1)
    cache.start("same", toks(1, 1), 0.0)
    with pytest.raises(KVCacheError, match="request already exists for id same"):
        cache.start("same", toks(100, 5), 1.0)


def test_finish_of_unknown_request_is_ignored() -> None:
    cache, sink = make(10)
    cache.finish("nobody", 0.0)
    assert sink.events == [] and cache.usage == 0.0


def test_request_id_can_be_reused_after_finish() -> None:
    cache, _ = make(10)
    cache.start("r", toks(1, 1), 0.0)
    cache.finish("r", 1.0)
    assert cache.start("r", toks(1, 1), 2.0).cached_blocks == 1


def test_clear_drops_everything_and_emits_event() -> None:
    cache, sink = make(10)
    cache.start("r1", toks(1, 2), 0.0)
    cache.clear()
    assert sink.events[-1] == AllBlocksCleared()
    assert cache.usage == 0.0
    assert cache.peek(toks(1, 2)).cached_blocks == 0
    cache.finish("r1", 1.0)  # its blocks are gone; nothing to release
    assert cache.start("r1", toks(1, 2), 2.0).cached_blocks == 0


def test_disabled_cache_records_nothing() -> None:
    cache, sink = make(10)
    cache.start("r1", toks(1, 1), 0.0)
    cache.clear()
    cache.enabled = False
    sink.events.clear()
    lookup = cache.start("r2", toks(1, 3), 1.0)
    assert (lookup.cached_blocks, lookup.prefix_blocks, lookup.hit_rate) == (0, 0, 0.0)
    cache.start("r2", toks(1, 3), 1.5)  # not recorded, so the id is not taken
    cache.finish("r2", 2.0)
    assert sink.events == [] and cache.usage == 0.0
    cache.enabled = True
    assert cache.start("r3", toks(1, 1), 3.0).cached_blocks == 0


def test_peek_does_not_change_state() -> None:
    cache, sink = make(10)
    cache.peek(toks(1, 3))
    assert sink.events == [] and cache.usage == 0.0
    assert cache.start("r", toks(1, 3), 0.0).cached_blocks == 0


def test_zero_capacity_rejects_block_but_accepts_short_prompt() -> None:
    cache, _ = make(0)
    assert cache.start("short", [1, 2], 0.0).total_blocks == 0
    with pytest.raises(KVCacheError):
        cache.start("long", toks(1, 1), 0.0)
    assert cache.usage == 0.0


def test_no_sink_is_fine() -> None:
    cache = KVCache(4, B, "")
    cache.start("r", toks(1, 2), 0.0)
    cache.clear()


def test_hash_seed_changes_block_keys() -> None:
    sink = ListSink()
    KVCache(4, B, "42", sink).start("r", toks(1, 1), 0.0)
    event = sink.events[0]
    assert isinstance(event, BlockStored)
    assert event.block_hash == block_keys(toks(1, 1), B, "42")[0] != keys(toks(1, 1))[0]


def test_invalid_block_size() -> None:
    with pytest.raises(ValueError):
        KVCache(4, 0, "")
