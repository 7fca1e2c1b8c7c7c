"""Index and event processing (kv-events contract §3.1-3.2, §4 vectors): engine keys become the
exact v0.5.0 request keys; removals, clears, LRU bounds and the engine-key fallback."""

from __future__ import annotations

from pyllmd.core.prefix import block_keys, request_keys
from pyllmd.epp.kvindex.events import AllBlocksCleared, BlockRemoved, BlockStored, Event
from pyllmd.epp.kvindex.index import KVBlockIndex, PodEntry, longest_prefix_scores
from pyllmd.epp.kvindex.keys import RequestKeyer
from pyllmd.epp.kvindex.processor import EventProcessor

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
# contract §4: v0.5.0 request keys of tokens 1..40 (block size 16), by seed and root name
KEYS_SEED_EMPTY = [369436768847880749, 14719338691038004320]
KEYS_SEED_42 = [8775620590023426189, 12043309295452643676]
KEYS_SEED_42_LORA = [256384759447370686, 10369673294538182444]
# contract §4: v0.4.0 engine keys of tokens 1..40
ENGINE_SEED_EMPTY = [3304056276748800391, 17643853483570299582]
ENGINE_SEED_42 = [16300212363532267629, 8671309795006503672]
TOKENS = tuple(range(1, 33))  # the two full blocks of 1..40


def stored(
    hashes: list[int],
    tokens: tuple[int, ...],
    parent: int | None = None,
    medium: str | None = None,
    lora: str | None = None,
) -> BlockStored:
    return BlockStored(tuple(hashes), parent, tokens, 16, None, medium, lora)


def setup(seed: str = "42", events: list[Event | None] | None = None) -> EventProcessor:
    proc = EventProcessor(KVBlockIndex(), 16, seed)
    proc.digest("10.0.0.1", LLAMA, events or [])
    return proc


def pods(proc: EventProcessor, key: int) -> list[PodEntry]:
    return proc.index.holders(key)


def test_one_event_with_two_blocks_maps_to_the_contract_request_keys() -> None:
    proc = setup("42", [stored(ENGINE_SEED_42, TOKENS)])
    for key in KEYS_SEED_42:
        assert pods(proc, key) == [PodEntry("10.0.0.1", "GPU")]
    assert [proc.index.request_key(e) for e in ENGINE_SEED_42] == KEYS_SEED_42
    assert proc.stats.stored == 1


def test_seed_empty_vectors() -> None:
    proc = setup("", [stored(ENGINE_SEED_EMPTY, TOKENS)])
    assert [proc.index.request_key(e) for e in ENGINE_SEED_EMPTY] == KEYS_SEED_EMPTY


def test_one_block_per_event_continues_the_chain_from_the_parent() -> None:
    # the shape our simulator sends: one block per event, parent = previous engine key
    proc = setup(
        "42",
        [
            stored(ENGINE_SEED_42[:1], TOKENS[:16]),
            stored(ENGINE_SEED_42[1:], TOKENS[16:], parent=ENGINE_SEED_42[0]),
        ],
    )
    assert [proc.index.request_key(e) for e in ENGINE_SEED_42] == KEYS_SEED_42


def test_lora_name_replaces_the_model_in_the_root() -> None:
    proc = setup("42", [stored(ENGINE_SEED_42, TOKENS, lora="my-lora-adapter")])
    assert [proc.index.request_key(e) for e in ENGINE_SEED_42] == KEYS_SEED_42_LORA


def test_medium_is_the_lower_cased_tier() -> None:
    proc = setup("42", [stored(ENGINE_SEED_42, TOKENS, medium="CPU")])
    assert pods(proc, KEYS_SEED_42[0]) == [PodEntry("10.0.0.1", "cpu")]


def test_token_count_not_matching_the_blocks_is_dropped() -> None:
    proc = setup("42", [stored(ENGINE_SEED_42, TOKENS[:16])])  # 2 hashes, 1 block of tokens
    assert proc.stats.dropped == 1
    assert len(proc.index) == 0


def test_events_without_tokens_or_with_unknown_parent_go_to_the_fallback() -> None:
    proc = setup("", [stored(ENGINE_SEED_EMPTY[:1], ()), stored([77], TOKENS[:16], parent=999)])
    assert proc.stats.fallback == 2
    assert proc.index.has_fallback
    # found by (model, engine key) only; the request-key index stays empty
    assert proc.index.holders(123, ENGINE_SEED_EMPTY[0], LLAMA) == [PodEntry("10.0.0.1")]
    assert proc.index.holders(123, ENGINE_SEED_EMPTY[0], "other-model") == []
    proc.digest("10.0.0.1", LLAMA, [BlockRemoved((ENGINE_SEED_EMPTY[0],), None)])
    assert proc.index.holders(123, ENGINE_SEED_EMPTY[0], LLAMA) == []


def test_block_removed_drops_only_that_pod_and_tier() -> None:
    proc = setup(
        "42", [stored(ENGINE_SEED_42, TOKENS), stored(ENGINE_SEED_42, TOKENS, medium="cpu")]
    )
    proc.digest("10.0.0.2", LLAMA, [stored(ENGINE_SEED_42, TOKENS)])
    proc.digest("10.0.0.1", LLAMA, [BlockRemoved((ENGINE_SEED_42[0],), None)])
    assert set(pods(proc, KEYS_SEED_42[0])) == {PodEntry("10.0.0.1", "cpu"), PodEntry("10.0.0.2")}
    proc.digest("10.0.0.1", LLAMA, [BlockRemoved((ENGINE_SEED_42[0],), "CPU")])
    proc.digest("10.0.0.2", LLAMA, [BlockRemoved((ENGINE_SEED_42[0],), None)])
    assert pods(proc, KEYS_SEED_42[0]) == []
    assert proc.index.request_key(ENGINE_SEED_42[0]) is None  # mapping gone with the last pod
    proc.digest("10.0.0.2", LLAMA, [BlockRemoved((424242,), None)])  # unknown: no-op
    assert proc.stats.removed == 4


def test_all_blocks_cleared_forgets_that_pod_only() -> None:
    proc = setup("42", [stored(ENGINE_SEED_42, TOKENS)])
    proc.digest("10.0.0.2", LLAMA, [stored(ENGINE_SEED_42, TOKENS)])
    proc.digest("10.0.0.1", LLAMA, [AllBlocksCleared()])
    assert pods(proc, KEYS_SEED_42[1]) == [PodEntry("10.0.0.2")]
    proc.digest("10.0.0.1", LLAMA, [stored(ENGINE_SEED_42, TOKENS)])  # stored again: counts
    assert {e.pod for e in pods(proc, KEYS_SEED_42[1])} == {"10.0.0.1", "10.0.0.2"}


def test_lru_bounds_keys_and_pods_per_key() -> None:
    index = KVBlockIndex(size=2, pod_cache_size=2)
    for pod in ("a", "b", "c"):
        index.add([1], [101], PodEntry(pod))
    assert [e.pod for e in index.holders(101)] == ["b", "c"]  # least recently added went
    index.add([2], [102], PodEntry("a"))
    index.holders(101)  # a lookup marks 101 recently used
    index.add([3], [103], PodEntry("a"))
    assert index.holders(102) == []
    assert index.holders(101) != [] and index.holders(103) != []


def test_add_refuses_mismatched_keys() -> None:
    index = KVBlockIndex()
    for engine, request in (([], []), ([1, 2], [3])):
        try:
            index.add(engine, request, PodEntry("a"))
        except ValueError:
            continue
        raise AssertionError("accepted")


WEIGHTS = {"gpu": 1.0, "cpu": 0.8}


def test_longest_consecutive_prefix_with_tier_weights() -> None:
    a, b, c = PodEntry("a", "gpu"), PodEntry("b", "cpu"), PodEntry("c", "GPU")
    per_block = [[a, b, c], [a, b], [a, PodEntry("b", "gpu"), c], [c]]
    # c breaks at block 1, so it never counts again; the walk ends when nobody is left
    assert longest_prefix_scores(per_block, WEIGHTS) == {"a": 3.0, "b": 2.6, "c": 1.0}
    assert longest_prefix_scores([[], [a]], WEIGHTS) == {}
    # a pod on two tiers counts its best one; an unlisted tier weighs 1
    assert longest_prefix_scores([[b, PodEntry("b", "gpu")], [PodEntry("b", "disk")]], WEIGHTS) == {
        "b": 2.0
    }


def test_fallback_keys_are_the_vllm_engine_keys() -> None:
    assert block_keys(range(1, 41), 16, "") == ENGINE_SEED_EMPTY


def test_memoised_keys_equal_the_reference_scheme() -> None:
    keyer = RequestKeyer(16, "42", capacity=4)
    assert keyer.keys(range(1, 41), LLAMA) == KEYS_SEED_42
    assert keyer.keys(range(1, 41), LLAMA) == KEYS_SEED_42  # from the memo
    assert keyer.keys(range(1, 41), "my-lora-adapter") == KEYS_SEED_42_LORA
    assert keyer.keys(range(17, 41), LLAMA, parent=KEYS_SEED_42[0]) == KEYS_SEED_42[1:]
    tokens = [(i * 7919) % 50_000 for i in range(300)]
    for block_size in (1, 5, 16):
        expected = request_keys(tokens, block_size, "s", "m")
        assert RequestKeyer(block_size, "s", capacity=3).keys(tokens, "m") == expected
