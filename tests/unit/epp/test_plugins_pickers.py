"""Pickers: max-score (check 37), random, weighted-random."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from pyllmd.epp.plugins.picker import max_score_picker, random_picker, weighted_random_picker
from pyllmd.epp.plugins.picker.common import shuffle
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle
from tests.unit.epp.plugin_helpers import endpoint, state

EPS = [endpoint(f"e{i}-rank-0", f"10.0.0.{i}", 8000 + i) for i in range(4)]


def test_epp_acc_37_max_score_picker_top_two_highest_first() -> None:
    picker = max_score_picker.factory("p", {"maxNumOfEndpoints": 2}, Handle())
    scored = list(zip(EPS, (0.2, 0.9, 0.1, 0.5), strict=True))
    for seed in range(20):
        targets = picker.pick(state(seed), scored)
        assert ",".join(ep.hostport for ep in targets) == "10.0.0.1:8001,10.0.0.3:8003"


def test_max_score_picker_breaks_ties_randomly_and_defaults_to_one() -> None:
    picker = max_score_picker.factory("p", {"maxNumOfEndpoints": 0}, Handle())
    assert picker.max_num_of_endpoints == 1
    scored = [(ep, 1.0) for ep in EPS]
    rng = random.Random(7)
    seen = Counter(picker.pick(CycleState(rng=rng, now=0), scored)[0].name for _ in range(200))
    assert set(seen) == {ep.name for ep in EPS}


def test_random_picker_ignores_scores() -> None:
    picker = random_picker.factory("r", {"maxNumOfEndpoints": 3}, Handle())
    rng = random.Random(1)
    picks = [
        picker.pick(CycleState(rng=rng, now=0), [(EPS[0], 1.0)] + [(e, 0.0) for e in EPS[1:]])
        for _ in range(100)
    ]
    assert all(len(p) == 3 and len({ep.name for ep in p}) == 3 for p in picks)
    assert Counter(p[0].name for p in picks)["e3-rank-0"] > 10


def test_weighted_random_picker_follows_scores() -> None:
    picker = weighted_random_picker.factory("w", None, Handle())
    rng = random.Random(3)
    scored = [(EPS[0], 0.9), (EPS[1], 0.1), (EPS[2], 0.0)]
    counts = Counter(picker.pick(CycleState(rng=rng, now=0), scored)[0].name for _ in range(2000))
    assert counts["e2-rank-0"] == 0  # score 0 never beats a positive key
    assert 0.85 < counts["e0-rank-0"] / 2000 < 0.95


def test_weighted_random_picker_all_zero_is_uniform() -> None:
    picker = weighted_random_picker.factory("w", {"maxNumOfEndpoints": 1}, Handle())
    rng = random.Random(5)
    scored = [(ep, 0.0) for ep in EPS]
    counts = Counter(picker.pick(CycleState(rng=rng, now=0), scored)[0].name for _ in range(400))
    assert set(counts) == {ep.name for ep in EPS}


@pytest.mark.parametrize("size", [0, 1, 2, 3, 7, 64, 101, 300])
def test_the_pickers_shuffle_is_randoms_own_permutation_from_the_same_draws(size: int) -> None:
    for seed in range(20):
        ours, theirs = random.Random(seed), random.Random(seed)
        a, b = list(range(size)), list(range(size))
        shuffle(ours, a)
        theirs.shuffle(b)
        assert a == b
        assert ours.random() == theirs.random()  # the streams stay in step
