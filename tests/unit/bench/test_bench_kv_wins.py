"""Pure parts of figure (h): the workload, the configurations, the hit-rate math, the report."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from bench import epp_kv_wins, epp_kv_wins_report, report
from bench.epp_kv_wins_report import ConfigRun, Outcome, Setup

from pyllmd.core.tokenize import SimpleTokenizer
from pyllmd.epp.config.loader import load_config_text
from pyllmd.epp.plugins.scorer.prefix_cache_scorer import CHARS_PER_TOKEN


def test_workload_is_seeded_and_shares_one_system_prompt_per_tenant() -> None:
    reqs = epp_kv_wins.workload(seed=3, tenants=4, requests=40, system_words=64)
    assert reqs == epp_kv_wins.workload(seed=3, tenants=4, requests=40, system_words=64)
    assert reqs != epp_kv_wins.workload(seed=4, tenants=4, requests=40, system_words=64)
    assert len({r.prompt for r in reqs}) == 40  # every question is new
    heads: dict[int, set[str]] = {}
    for r in reqs:
        heads.setdefault(r.tenant, set()).add(r.prompt.split(" q", 1)[0])
    assert len(heads) == 4
    assert all(len(h) == 1 for h in heads.values())
    assert len(set().union(*heads.values())) == 4  # tenants differ


def test_prompt_length_in_simulator_tokens_and_scorer_characters() -> None:
    req = epp_kv_wins.workload(requests=1)[0]
    tokens = SimpleTokenizer().count(req.prompt)
    assert tokens == epp_kv_wins.SYSTEM_WORDS + epp_kv_wins.QUESTION_WORDS
    # the approximate scorer's estimate (characters / 4) is within a token of the truth
    assert abs(len(req.prompt) / CHARS_PER_TOKEN - tokens) <= 1
    system_blocks = epp_kv_wins.SYSTEM_WORDS // epp_kv_wins.BLOCK_SIZE
    # one simulator's cache holds some tenants' prompts but not all; four hold them all
    assert epp_kv_wins.KV_CACHE_BLOCKS < epp_kv_wins.TENANTS * system_blocks
    assert 4 * epp_kv_wins.KV_CACHE_BLOCKS > epp_kv_wins.TENANTS * system_blocks
    # a full batch of running requests always fits (else the simulator answers 500)
    request_blocks = tokens // epp_kv_wins.BLOCK_SIZE
    assert epp_kv_wins.MAX_NUM_SEQS * request_blocks <= epp_kv_wins.KV_CACHE_BLOCKS


@pytest.mark.parametrize("label", epp_kv_wins.LABELS)
def test_every_configuration_loads(label: str) -> None:
    text = epp_kv_wins.config_text(label, 5557)
    config = load_config_text(text)
    assert config is not None
    if label == "precise":
        assert 'zmqEndpoint: "tcp://127.0.0.1:5557"' in text
    assert ("random-picker" in text) == (label == "random")


def test_hit_rate_and_percentiles_skip_failed_requests() -> None:
    outcomes = (
        Outcome(10.0, 100, 80),
        Outcome(20.0, 100, 0),
        Outcome(math.nan),
        Outcome(30.0, 200, 160),
    )
    run = ConfigRun("precise", outcomes, 1.0)
    assert run.errors == 1
    assert run.hit_rate == pytest.approx(240 / 400)
    assert run.ttft(0.5) == 20.0
    assert run.ttft(0.9) == 30.0
    assert math.isnan(ConfigRun("x", (Outcome(math.nan),), 1.0).hit_rate)


def _run(label: str, ttft: float, hit_percent: float) -> ConfigRun:
    outcome = Outcome(ttft, 1000, round(hit_percent * 10))
    return ConfigRun(label, (outcome,) * 10, 2.0, (5, 5))


def test_verdict_checks_each_comparison() -> None:
    published = [
        _run("precise", 40, 95),
        _run("approximate", 60, 90),
        _run("load-only", 1000, 40),
        _run("random", 1050, 38),
    ]
    v = epp_kv_wins_report.verdict(published)
    assert v.aware_ttft and v.precise_ttft and v.blind_same and v.order_held
    assert v.aware_hits and v.precise_hits
    assert not v.aware_tie  # 5 points apart
    tie = [_run("precise", 60, 90), _run("approximate", 58, 90.5), *published[2:]]
    v = epp_kv_wins_report.verdict(tie)
    assert v.aware_ttft and not v.precise_ttft and not v.order_held and not v.precise_hits
    assert v.aware_tie
    # a p90 lower by under 10 % is noise, not an order
    close = [_run("precise", 1000, 87), _run("approximate", 1050, 62), *published[2:]]
    v = epp_kv_wins_report.verdict(close)
    assert not v.precise_ttft and not v.aware_ttft and not v.order_held
    assert v.precise_hits and not v.aware_tie  # 25 points of hit rate are no tie
    apart = [*published[:3], _run("random", 2000, 38)]
    assert not epp_kv_wins_report.verdict(apart).blind_same


def test_a_tie_is_within_ten_percent_or_ten_milliseconds() -> None:
    same, lower = epp_kv_wins_report.same, epp_kv_wins_report.lower
    assert same(37.7, 45.5)  # 7.8 ms apart: 17 % of 45.5, but under 10 ms
    assert not same(30.0, 45.0) and lower(30.0, 45.0)
    assert same(3556.0, 3900.0) and not lower(3556.0, 3900.0)  # 8.8 % of the larger
    assert not same(3556.0, 4364.0) and lower(3556.0, 4364.0)
    assert not lower(45.0, 30.0)


def test_render_reports_the_table_and_what_did_not_hold() -> None:
    runs = [
        _run("precise", 60, 90),
        _run("approximate", 50, 92),
        _run("load-only", 1000, 40),
        _run("random", 1000, 38),
    ]
    setup = Setup(40, 4, 60, 640, 1, 0.925, ceiling_capacity=480, blind_capacity=50)
    block = epp_kv_wins_report.render([(setup, runs)], datetime(2026, 1, 2, 3, 4, tzinfo=UTC))
    assert block.startswith(epp_kv_wins_report.START)
    assert block.rstrip().endswith(epp_kv_wins_report.END)
    assert "40 streamed requests per configuration and rate, 4 tenants, sent open-loop" in block
    assert "about 480 requests per second at that hit rate and about 50 when" in block
    assert "At 60 requests per second, 1.20 × what a cache-blind spread can serve and " in block
    assert "0.12 × what a spread at the ceiling can:" in block
    assert "could reach on this sequence (every tenant's prompt cached after its first " in block
    assert "request) is 92.5 %." in block
    assert "2.0 points of hit rate apart" not in block  # 2 points is not a tie
    assert "Precise − approximate hit rate: -2.0 points." in block
    assert "Last run: 2026-01-02 03:04 UTC" in block
    assert "| precise | 60.0 | 60.0 | 60.0 | 90.0 % | 0 | 5 / 5 | 2.0 |" in block
    assert "| precise beats approximate | **did not hold** | **did not hold** |" in block
    assert "| cache-aware (precise, approximate) beat load-only and random | held | held |" in block
    assert "(TTFT p90): **did not hold**" in block
    doc = "# B\n\n<!-- bench:epp:start -->\nx\n<!-- bench:epp:end -->\n"
    spliced = report.splice(doc, block, epp_kv_wins_report.START, epp_kv_wins_report.END)
    assert spliced.index("bench:epp:end") < spliced.index(epp_kv_wins_report.START)
    again = report.splice(spliced, block, epp_kv_wins_report.START, epp_kv_wins_report.END)
    assert again == spliced


def test_hit_ceiling_counts_only_repeat_visits_system_blocks() -> None:
    reqs = epp_kv_wins.workload(seed=2, tenants=3, requests=30)
    tokens = epp_kv_wins.SYSTEM_WORDS + epp_kv_wins.QUESTION_WORDS
    repeats = 30 - len({r.tenant for r in reqs})
    expected = repeats * epp_kv_wins.SYSTEM_WORDS / (30 * tokens)
    assert epp_kv_wins.hit_ceiling(reqs) == pytest.approx(expected)
    shape = epp_kv_wins.setup(reqs)
    assert (shape.requests, shape.tenants, shape.hit_ceiling) == (30, 3, pytest.approx(expected))


def test_divergent_words_are_one_token_but_about_eleven_characters() -> None:
    reqs = epp_kv_wins.workload(requests=20, letters=epp_kv_wins.LONG_LETTERS)
    tokenizer = SimpleTokenizer()
    for req in reqs:
        tokens = tokenizer.count(req.prompt)
        assert tokens == epp_kv_wins.SYSTEM_WORDS + epp_kv_wins.QUESTION_WORDS
        # the approximate scorer's characters / 4 overcounts by well over 2×
        assert len(req.prompt) / CHARS_PER_TOKEN > 2.5 * tokens
    words = reqs[0].prompt.split()
    assert {len(w) for w in words[: epp_kv_wins.SYSTEM_WORDS]} == set(range(8, 13))
    # other words than the ideal sequence
    ideal = epp_kv_wins.workload(requests=20)
    assert reqs[0].prompt != ideal[0].prompt


def test_arrivals_are_a_seeded_poisson_process_of_the_rate() -> None:
    starts = epp_kv_wins.arrivals(4000, rate=50.0, seed=2)
    assert starts == epp_kv_wins.arrivals(4000, rate=50.0, seed=2)
    assert starts[0] == 0.0 and starts == sorted(starts)
    assert len(starts) / starts[-1] == pytest.approx(50.0, rel=0.05)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    # exponential gaps: the standard deviation equals the mean
    mean = sum(gaps) / len(gaps)
    sd = math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps))
    assert sd == pytest.approx(mean, rel=0.1)


def test_capacity_falls_with_the_miss_share_and_brackets_the_rate() -> None:
    # every request a hit: 24 question tokens of prefill + 3 decode steps per slot
    hit_ms = epp_kv_wins.QUESTION_WORDS + 3 * epp_kv_wins.ITL_MS
    slots = len(epp_kv_wins.HOSTS) * epp_kv_wins.MAX_NUM_SEQS
    assert epp_kv_wins.capacity(0.0) == pytest.approx(slots * 1000 / hit_ms)
    assert epp_kv_wins.capacity(1.0) < epp_kv_wins.capacity(0.5) < epp_kv_wins.capacity(0.0)
    shape = epp_kv_wins.setup(epp_kv_wins.workload())
    # every offered rate overloads a cache-blind spread, none a spread at the ceiling
    for rate in epp_kv_wins.RATES:
        assert shape.blind_capacity < rate < shape.ceiling_capacity / 2


def test_drop_points_take_each_simulator_once_midway() -> None:
    points = epp_kv_wins.drop_points(480)
    assert points == {192: 0, 240: 1, 288: 2, 336: 3}
    assert epp_kv_wins.drop_points(10, (0.5,)) == {5: 0}


def test_render_adds_the_divergent_section_after_the_ideal_one() -> None:
    ideal = [_run("precise", 60, 90), _run("approximate", 60, 91)]
    ideal += [_run("load-only", 1000, 40), _run("random", 1000, 38)]
    divergent = [_run("precise", 60, 90), _run("approximate", 500, 70)]
    divergent += [_run("load-only", 1000, 40), _run("random", 1000, 38)]
    setup = Setup(40, 4, 60, 640, 1, 0.925, ceiling_capacity=480, blind_capacity=50)
    faster = Setup(40, 4, 120, 640, 1, 0.925, ceiling_capacity=480, blind_capacity=50)
    block = epp_kv_wins_report.render(
        [(setup, ideal)], divergent=[(setup, divergent), (faster, ideal)]
    )
    assert block.count(epp_kv_wins_report.START) == 1
    assert block.rstrip().endswith(epp_kv_wins_report.END)
    assert block.index("(h) Ideal: 40") < block.index("AllBlocksCleared")
    assert block.index("AllBlocksCleared") < block.index("(h) Divergent: 40")
    assert "Precise − approximate hit rate: +20.0 points." in block
    assert "| precise beats approximate | held | held |" in block
    assert block.count("At 60 requests per second") == 2
    assert block.index("(h) Divergent: 40") < block.index("At 120 requests per second")
    assert block.count("| configuration |") == 3
    assert "(h) Ideal" not in epp_kv_wins_report.render([(setup, ideal)])
