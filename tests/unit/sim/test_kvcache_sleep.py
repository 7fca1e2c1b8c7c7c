"""KV cache under sleep (spec §4.6) and the LoRA labels of its events."""

from __future__ import annotations

from pyllmd.core.prefix import block_keys
from pyllmd.sim.engine.kvcache import AllBlocksCleared, BlockStored, KVCache, ListSink, LoraTag

B = 4


def make() -> tuple[KVCache, ListSink]:
    sink = ListSink()
    return KVCache(8, B, "", sink), sink


def test_disable_clears_on_every_call_and_records_nothing() -> None:
    cache, sink = make()
    cache.start("r1", list(range(8)), 0.0)
    sink.events.clear()
    cache.disable()
    cache.disable()  # already asleep: cleared again, as upstream
    assert sink.events == [AllBlocksCleared(), AllBlocksCleared()]
    assert cache.usage == 0.0 and not cache.enabled
    lookup = cache.start("r2", list(range(8)), 1.0)
    assert (lookup.cached_blocks, lookup.prefix_blocks) == (0, 0)
    cache.finish("r1", 2.0)  # a request from before the sleep ends: ignored
    assert len(sink.events) == 2


def test_enable_starts_from_the_empty_cache() -> None:
    cache, sink = make()
    cache.start("r1", list(range(8)), 0.0)
    cache.disable()
    cache.enable()
    sink.events.clear()
    lookup = cache.start("r1", list(range(8)), 1.0)  # the id is free again, nothing cached
    assert lookup.cached_blocks == 0 and len(sink.events) == 2
    cache.finish("r1", 2.0)
    assert cache.usage == 0.0


def test_lora_labels_new_blocks_but_not_their_keys() -> None:
    cache, sink = make()
    tokens = list(range(8))
    cache.start("r1", tokens, 0.0, lora=LoraTag(3, "adapter"))
    k = block_keys(tokens, B, "")
    assert sink.events == [
        BlockStored(k[0], None, (0, 1, 2, 3), B, 3, "adapter"),
        BlockStored(k[1], k[0], (4, 5, 6, 7), B, 3, "adapter"),
    ]
    cache.finish("r1", 1.0)
    assert cache.start("r2", tokens, 2.0).cached_blocks == 2  # the base model shares them
