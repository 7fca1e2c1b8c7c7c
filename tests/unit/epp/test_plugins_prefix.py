"""Approximate prefix-cache scorer (spec §6.3; checks 22, 48, 49)."""

from __future__ import annotations

import pytest
import xxhash

from pyllmd.epp.plugins.scorer import prefix_cache_scorer
from pyllmd.epp.plugins.scorer.prefix_cache_scorer import PrefixCacheScorer, hash_prompt
from pyllmd.epp.scheduling.registry import Handle, ParamError
from pyllmd.epp.scheduling.types import ProfileResult, SchedulingResult
from tests.unit.epp.plugin_helpers import endpoint, request, state

E1, E2 = endpoint("e1-rank-0", "10.0.0.1"), endpoint("e2-rank-0", "10.0.0.2")
PROMPT = "".join(chr(ord("a") + i % 26) for i in range(200))


def route(
    scorer: PrefixCacheScorer, prompt: str, target: object, **body: object
) -> dict[str, float]:
    st = state()
    req = request(prompt, **body)
    scores = scorer.score(st, req, [E1, E2])
    result = SchedulingResult("default", {"default": ProfileResult((target,))})  # type: ignore[arg-type]
    scorer.pre_request(st, req, result)
    return scores


def test_epp_acc_48_prefix_scores_after_routing() -> None:
    scorer = prefix_cache_scorer.factory("prefix-cache-scorer", {"blockSizeTokens": 16}, Handle())
    assert len(hash_prompt(PROMPT.encode(), "m", "", 16, 256)) == 3
    first = route(scorer, PROMPT, E1)
    assert first == {"ns/e1-rank-0": 0.0, "ns/e2-rank-0": 0.0}
    again = scorer.score(state(), request(PROMPT), [E1, E2])
    assert again == {"ns/e1-rank-0": 1.0, "ns/e2-rank-0": 0.0}
    shared = PROMPT[:128] + "Z" * 72  # first two 64-char blocks equal
    partial = scorer.score(state(), request(shared), [E1, E2])
    assert partial["ns/e1-rank-0"] == pytest.approx(2 / 3)
    assert partial["ns/e2-rank-0"] == 0.0


def test_epp_acc_49_hashes_depend_on_salt_and_model() -> None:
    base = hash_prompt(PROMPT.encode(), "m", "", 16, 256)
    assert hash_prompt(PROMPT.encode(), "m", "s1", 16, 256) != base
    assert hash_prompt(PROMPT.encode(), "m2", "", 16, 256) != base
    scorer = PrefixCacheScorer("p", block_size_tokens=16)
    route(scorer, PROMPT, E1, cache_salt="a")
    assert scorer.score(state(), request(PROMPT, cache_salt="b"), [E1])["ns/e1-rank-0"] == 0.0
    assert scorer.score(state(), request(PROMPT, cache_salt="a"), [E1])["ns/e1-rank-0"] == 1.0


def test_hash_chain_matches_spec_formula() -> None:
    data = PROMPT.encode()
    h0 = xxhash.xxh64_intdigest(b"m" + b"salt")
    h1 = xxhash.xxh64_intdigest(data[:64] + h0.to_bytes(8, "little"))
    h2 = xxhash.xxh64_intdigest(data[64:128] + h1.to_bytes(8, "little"))
    assert hash_prompt(data, "m", "salt", 16, 256)[:2] == [h1, h2]
    assert hash_prompt(data, "m", "", 16, 2) == hash_prompt(data[:128], "m", "", 16, 256)
    assert hash_prompt(data[:63], "m", "", 16, 256) == []


def test_epp_acc_22_block_size_alone_is_rejected() -> None:
    with pytest.raises(ParamError, match="BlockSizeTokens"):
        prefix_cache_scorer.factory("p", {"blockSize": 64}, Handle())
    ok = prefix_cache_scorer.factory("p", {"blockSize": 64, "blockSizeTokens": 8}, Handle())
    assert ok.block_size_tokens == 8


def test_auto_tune_uses_endpoint_block_size_and_capacity() -> None:
    scorer = PrefixCacheScorer("p", block_size_tokens=16)
    tuned = endpoint("t-rank-0", cache_block_size=8, cache_num_gpu_blocks=2)
    st = state()
    req = request(PROMPT)  # 200 chars, 32-char blocks → 6 hashes
    scorer.score(st, req, [tuned])
    assert len(st.prefix["p"].hashes) == 6
    scorer.pre_request(st, req, SchedulingResult("d", {"d": ProfileResult((tuned,))}))
    assert scorer.index.size() == 2  # LRU capacity = num_gpu_blocks; older hashes evicted
    # The first hashes were evicted, so the walk stops at once.
    assert scorer.score(state(), req, [tuned])["ns/t-rank-0"] == 0.0
    fixed = PrefixCacheScorer("p", auto_tune=False, block_size_tokens=16)
    st2 = state()
    fixed.score(st2, req, [tuned])
    assert len(st2.prefix["p"].hashes) == 3


def test_prefill_target_also_indexed_and_prune() -> None:
    scorer = PrefixCacheScorer("p", block_size_tokens=16)
    st = state()
    req = request(PROMPT)
    scorer.score(st, req, [E1, E2])
    result = SchedulingResult(
        "decode", {"decode": ProfileResult((E1,)), "prefill": ProfileResult((E2,))}
    )
    scorer.pre_request(st, req, result)
    assert scorer.score(state(), req, [E1, E2]) == {"ns/e1-rank-0": 1.0, "ns/e2-rank-0": 1.0}
    scorer.prune(["ns/e2-rank-0"])
    assert scorer.score(state(), req, [E1, E2]) == {"ns/e1-rank-0": 0.0, "ns/e2-rank-0": 1.0}
    assert scorer.index.size() == 3
