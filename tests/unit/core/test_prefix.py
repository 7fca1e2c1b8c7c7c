"""Block hashing against every tokenizer-free test vector of the kv-events contract (§4)."""

from __future__ import annotations

import pytest

from pyllmd.core.prefix import (
    block_digests,
    block_keys,
    engine_payload,
    fnv1a_64,
    model_root,
    request_keys,
    request_payload,
    root_digest,
)

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
TOKENS_1_40 = list(range(1, 41))


def test_root_digest_empty_seed() -> None:
    assert root_digest("").hex() == (
        "8d33f520a3c4cef80d2453aef81b612bfe1cb44c8b2025630ad38662763f13d3"
    )


def test_root_digest_seed_42() -> None:
    assert root_digest("42").hex() == (
        "9fa6eb003f14425eb9c8e6baacfbcaab26257357b829c7bfa74ffcc4f31c1780"
    )


def test_engine_block0_payload_bytes() -> None:
    payload = engine_payload(root_digest(""), range(1, 17))
    expected = bytes([0x83, 0x58, 0x20]) + root_digest("") + bytes([0x90, *range(1, 17), 0xF6])
    assert payload == expected


@pytest.mark.parametrize(
    ("seed", "block_size", "tokens", "keys"),
    [
        ("", 16, TOKENS_1_40, [3304056276748800391, 17643853483570299582]),
        ("42", 16, TOKENS_1_40, [16300212363532267629, 8671309795006503672]),
        (
            "42",
            8,
            TOKENS_1_40,
            [
                16688788724021408268,
                4116951586946998730,
                7073195531920637228,
                7523692019666728739,
                14495840133941501121,
            ],
        ),
        ("", 16, list(range(1, 16)), []),
    ],
)
def test_engine_keys_vectors(
    seed: str, block_size: int, tokens: list[int], keys: list[int]
) -> None:
    assert block_keys(tokens, block_size, seed) == keys


def test_engine_key_is_last_8_bytes_and_chain_uses_full_digest() -> None:
    digests = block_digests(TOKENS_1_40, 16, "")
    assert [len(d) for d in digests] == [32, 32]
    assert [int.from_bytes(d[-8:], "big") for d in digests] == block_keys(TOKENS_1_40, 16, "")
    # Block 1's digest depends on block 0's full digest, not its key.
    assert engine_payload(digests[0], range(17, 33))[3:35] == digests[0]


def test_trailing_partial_block_does_not_change_keys() -> None:
    assert block_keys(list(range(1, 33)), 16, "") == block_keys(TOKENS_1_40, 16, "")


def test_seed_hash_vectors() -> None:
    assert fnv1a_64(b"") == 14695981039346656037 == 0xCBF29CE484222325
    assert fnv1a_64(b"42") == 571532774284038691


def test_request_root_payload_bytes() -> None:
    payload = request_payload(fnv1a_64(b""), None, "m")
    assert payload.hex() == "831bcbf29ce484222325f6616d"
    assert model_root("", "m") == fnv1a_64(payload)


@pytest.mark.parametrize(
    ("seed", "model", "keys"),
    [
        ("", LLAMA, [369436768847880749, 14719338691038004320]),
        ("42", LLAMA, [8775620590023426189, 12043309295452643676]),
        ("42", "my-lora-adapter", [256384759447370686, 10369673294538182444]),
    ],
)
def test_request_keys_vectors(seed: str, model: str, keys: list[int]) -> None:
    assert request_keys(TOKENS_1_40, 16, seed, model) == keys


def test_request_keys_continuation_from_parent() -> None:
    keys = request_keys(list(range(17, 41)), 16, "42", LLAMA, parent=8775620590023426189)
    assert keys == [12043309295452643676]


def test_request_keys_parent_zero_means_root() -> None:
    assert request_keys(TOKENS_1_40, 16, "42", LLAMA, parent=0) == request_keys(
        TOKENS_1_40, 16, "42", LLAMA
    )


def test_models_and_seeds_give_different_request_keys_but_same_engine_keys() -> None:
    assert request_keys(TOKENS_1_40, 16, "", "a") != request_keys(TOKENS_1_40, 16, "", "b")
    assert block_keys(TOKENS_1_40, 16, "") != block_keys(TOKENS_1_40, 16, "42")


def test_tuple_input_matches_list_input() -> None:
    assert block_keys(tuple(TOKENS_1_40), 16, "") == block_keys(TOKENS_1_40, 16, "")
    assert request_keys(tuple(TOKENS_1_40), 16, "", LLAMA) == request_keys(
        TOKENS_1_40, 16, "", LLAMA
    )


@pytest.mark.parametrize("block_size", [0, -1])
def test_non_positive_block_size_is_rejected(block_size: int) -> None:
    with pytest.raises(ValueError, match="block_size"):
        block_keys(TOKENS_1_40, block_size, "")
    with pytest.raises(ValueError, match="block_size"):
        request_keys(TOKENS_1_40, block_size, "", "m")
