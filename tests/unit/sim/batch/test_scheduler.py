"""vLLM v1's scheduler on virtual time: behaviours, then properties over random workloads."""

from __future__ import annotations

import gc
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pyllmd.sim.batch.scheduler import (
    Engine,
    Request,
    RunResult,
    SchedulerConfig,
    block_hashes,
)


def linear_time(tokens: int, pairs: int, kv: int, seqs: int, decode_only: bool) -> float:
    """A simple step time: fixed + per token + per attention pair (+ eager launch)."""
    return 1e-3 + 2e-6 * tokens + 1e-9 * pairs + 1e-7 * kv + (0.0 if decode_only else 5e-4)


def req(rid: int, arrival: float, prompt: list[int], out: int) -> Request:
    return Request(rid, arrival, len(prompt), out, block_hashes(prompt))


def run(cfg: SchedulerConfig, reqs: list[Request], jump: bool = True) -> RunResult:
    engine = Engine(cfg, linear_time, record_tokens=True, record_steps=True)
    return engine.run(reqs, jump=jump)


def test_a_long_prompt_is_prefilled_in_budget_sized_chunks_then_decodes() -> None:
    cfg = SchedulerConfig(num_blocks=1000, max_num_batched_tokens=512, max_num_seqs=8)
    r = req(0, 0.0, list(range(1200)), 3)
    res = run(cfg, [r])
    assert res.records is not None
    assert [s.tokens for s in res.records] == [512, 512, 176, 1, 1]
    assert [s.decode_only for s in res.records] == [False, False, False, True, True]
    # tokens come out at step ends: the first after the last prefill chunk
    assert r.token_times == [s.end for s in res.records[2:]]
    assert r.first_token == res.records[2].end and r.last_token == res.records[-1].end


def test_a_prompt_whose_kv_was_transferred_computes_only_its_last_token() -> None:
    cfg = SchedulerConfig(num_blocks=1000, max_num_batched_tokens=512, max_num_seqs=8)
    r = req(0, 0.0, list(range(1200)), 3)
    r.preloaded = 1199  # P/D decode side: the prefill pod computed the rest
    res = run(cfg, [r])
    assert res.records is not None
    assert [s.tokens for s in res.records] == [1, 1, 1]
    assert len(r.blocks) == 0 and r.cached_tokens == 0  # blocks freed; no prefix-cache hit


def test_running_requests_are_served_before_waiting_ones() -> None:
    cfg = SchedulerConfig(num_blocks=1000, max_num_batched_tokens=600, max_num_seqs=8)
    a = req(0, 0.0, list(range(1000)), 2)
    b = req(1, 0.0, list(range(5000, 5300)), 2)
    res = run(cfg, [a, b])
    assert res.records is not None
    # step 1: a takes the whole budget; step 2: a's remaining 400, then b's first 200
    assert [s.tokens for s in res.records[:2]] == [600, 600]
    assert b.admitted == res.records[1].start


def test_asynchronous_scheduling_a_request_arriving_mid_step_starts_two_steps_later() -> None:
    cfg = SchedulerConfig(num_blocks=1000)
    a = req(0, 0.0, list(range(100)), 50)
    b = req(1, 0.0105, list(range(500, 600)), 5)  # arrives during a's second or third step
    res = run(cfg, [a, b])
    assert res.records is not None
    during = next(i for i, s in enumerate(res.records) if s.start <= b.arrival < s.end)
    assert b.admitted == res.records[during + 2].start  # step during+1 was already scheduled
    sync = SchedulerConfig(num_blocks=1000, async_scheduling=False)
    c = req(0, 0.0, list(range(100)), 50)
    d = req(1, 0.0105, list(range(500, 600)), 5)
    res2 = run(sync, [c, d])
    assert res2.records is not None
    during = next(i for i, s in enumerate(res2.records) if s.start <= d.arrival < s.end)
    assert d.admitted == res2.records[during + 1].start
    # an idle engine takes a request at once
    e = req(0, 5.0, list(range(100)), 2)
    run(cfg, [e])
    assert e.admitted == 5.0


def lora_requests() -> list[Request]:
    """Five 100-token prompts at once: adapters 1, 2, 3, 1 and the base model."""
    out = []
    for rid, (lora, out_len) in enumerate([(1, 4), (2, 4), (3, 2), (1, 2), (0, 2)]):
        r = req(rid, 0.0, list(range(rid * 1000, rid * 1000 + 100)), out_len)
        r.lora = lora
        out.append(r)
    return out


def test_max_loras_keeps_a_third_adapter_waiting_and_admits_the_requests_behind_it() -> None:
    """vLLM skips a waiting request of another adapter while the running ones use
    `max_loras` adapters, and goes on with the queue; the skipped one keeps its place."""
    a, b, c, d, e = reqs = lora_requests()
    res = run(SchedulerConfig(num_blocks=1000, max_num_seqs=8, max_loras=2), reqs, jump=False)
    assert res.records is not None
    first = res.records[0]
    assert (first.prefills, first.tokens) == (4, 400)  # a, b, d (adapter 1 again) and e
    assert a.admitted == b.admitted == d.admitted == e.admitted == 0.0
    # c (adapter 3) waits until adapters 1 and 2 are free: a and b end together, after d
    assert a.last_token is not None and b.last_token is not None
    assert c.admitted is not None and c.admitted >= max(a.last_token, b.last_token)
    # without the limit, all five start at once
    res = run(SchedulerConfig(num_blocks=1000, max_num_seqs=8), lora_requests(), jump=False)
    assert res.records is not None and res.records[0].prefills == 5


def test_the_decode_step_already_scheduled_when_a_request_arrives_is_jumped_over() -> None:
    """With asynchronous scheduling the step after the one a request arrives in was scheduled
    without it: `jump` runs that decode step too (the request waits), with the same times."""
    cfg = SchedulerConfig(num_blocks=1000)
    engine = Engine(cfg, linear_time, record_tokens=True, record_steps=True)
    a = req(0, 0.0, list(range(100)), 50)
    engine.add(a)
    engine.step()  # a's prefill: a decodes from now on
    assert engine.jump(0.0105)  # up to the step during which b arrives
    b = req(1, 0.0105, list(range(500, 600)), 5)
    assert engine.last_start <= b.arrival < engine.now
    engine.add(b)
    before = engine.steps
    assert engine.jump(float("inf"))  # the next step's schedule could not see b
    assert engine.steps == before + 1 and b.admitted is None
    assert not engine.jump(float("inf"))  # the one after sees b: the general step admits it
    engine.step()
    assert b.admitted == engine.records[-1].start  # type: ignore[index]
    steady = Engine(cfg, linear_time, record_steps=True)
    c = req(0, 0.0, list(range(100)), 50)
    d = req(1, 0.0105, list(range(500, 600)), 5)
    steady.run([c, d], jump=False)
    assert b.admitted == d.admitted
    assert engine.records is not None and steady.records is not None
    ends = list(engine.records.end)
    assert ends == list(steady.records.end)[: len(ends)]  # the same step times so far


def test_a_run_pauses_the_cyclic_garbage_collector_and_restores_it() -> None:
    """A run allocates a record per step and request and makes no reference cycles: the
    collector's passes over them would be wasted (a fifth of a replay's time)."""
    seen: list[bool] = []

    def step_time(tokens: int, pairs: int, kv: int, seqs: int, decode_only: bool) -> float:
        seen.append(gc.isenabled())
        return 1e-3

    assert gc.isenabled()
    Engine(SchedulerConfig(num_blocks=100), step_time).run([req(0, 0.0, list(range(40)), 5)])
    assert seen and not any(seen)
    assert gc.isenabled()


def test_a_shared_prefix_is_served_from_the_cache_after_its_blocks_fill() -> None:
    cfg = SchedulerConfig(num_blocks=1000)
    system = list(range(100))  # 6 full blocks + 4 tokens
    a = req(0, 0.0, system + list(range(1000, 1050)), 5)
    b = req(1, 1.0, system + list(range(2000, 2050)), 5)
    c = req(2, 2.0, list(range(3000, 3150)), 5)
    run(cfg, [a, b, c])
    assert a.cached_tokens == 0 and b.cached_tokens == 96 and c.cached_tokens == 0
    off = SchedulerConfig(num_blocks=1000, enable_prefix_caching=False)
    d = req(3, 0.0, system + [7], 5)
    e = req(4, 1.0, system + [8], 5)
    run(off, [d, e])
    assert e.cached_tokens == 0


def test_a_repeated_prompt_hits_all_but_its_last_token() -> None:
    cfg = SchedulerConfig(num_blocks=1000)
    prompt = list(range(64))  # exactly 4 blocks
    a, b = req(0, 0.0, prompt, 2), req(1, 1.0, prompt, 2)
    run(cfg, [a, b])
    assert b.cached_tokens == 48  # the last block is recomputed for its last token


def test_when_blocks_run_out_the_most_recently_admitted_request_is_preempted() -> None:
    # 3 requests of 64-token prompts need 4 blocks each to start, and 1 more every 16 tokens
    cfg = SchedulerConfig(num_blocks=14, max_model_len=200, max_num_batched_tokens=256)
    reqs = [req(i, 0.0, list(range(i * 1000, i * 1000 + 64)), 40) for i in range(3)]
    res = run(cfg, reqs)
    assert res.preemptions >= 1
    assert reqs[2].preemptions >= 1 and reqs[0].preemptions == 0
    assert all(r.finished and len(r.token_times or []) == r.output_len for r in reqs)


def test_a_request_past_its_deadline_is_aborted_and_frees_its_blocks() -> None:
    cfg = SchedulerConfig(num_blocks=1000)
    a = req(0, 0.0, list(range(100)), 1000)
    a.deadline = 0.05
    b = req(1, 0.0, list(range(500, 600)), 200)
    res = run(cfg, [a, b])
    assert a.aborted and not a.finished and b.finished
    assert res.records is not None
    assert all(s.seqs == (2 if s.start < 0.05 else 1) for s in res.records)
    assert 0 < len(a.token_times or []) < 1000


def test_a_request_longer_than_max_model_len_is_refused_with_vllms_message() -> None:
    cfg = SchedulerConfig(num_blocks=1000, max_model_len=100)
    r = req(0, 0.0, list(range(90)), 20)
    run(cfg, [r])
    assert r.refused == (
        "This model's maximum context length is 100 tokens. However, you requested 110 tokens "
        "(90 in the messages, 20 in the completion). Please reduce the length of the messages "
        "or completion."
    )
    assert not r.finished


def _evict_then_return(cpu_blocks: int) -> tuple[Request, Request]:
    """A 64-token prompt, then a 112-token one that takes every block of an 8-block GPU
    (evicting the first from its prefix cache), then the first prompt again."""
    cfg = SchedulerConfig(
        num_blocks=8, max_num_batched_tokens=256, cpu_blocks=cpu_blocks, cpu_block_load_s=0.01
    )
    first = list(range(64))
    again = req(2, 1.0, first, 2)
    other = req(1, 0.5, list(range(100, 212)), 2)
    res = run(cfg, [req(0, 0.0, first, 2), other, again])
    assert all(r.finished for r in res.requests)
    return other, again


def test_a_prefix_evicted_from_the_gpu_is_loaded_back_from_the_cpu_tier() -> None:
    _, without = _evict_then_return(cpu_blocks=0)
    other, loaded = _evict_then_return(cpu_blocks=16)
    assert without.cached_tokens == 0
    assert loaded.cached_tokens == 48  # 3 blocks: at most all but the last token
    # the 3 blocks cross the host link (10 ms each) before its prefill is scheduled
    assert loaded.first_token is not None and loaded.admitted is not None
    assert loaded.first_token >= loaded.arrival + 0.03
    assert loaded.admitted >= loaded.arrival + 0.03


def test_the_cpu_tier_keeps_only_its_capacity_least_recently_used_out() -> None:
    # the first prompt's blocks are freed tail first, so evicted tail first: a tier of 2 keeps
    # the leading two (the 4th, 3rd went in first and out first)
    _, loaded = _evict_then_return(cpu_blocks=2)
    assert loaded.cached_tokens == 32


def test_a_request_aborted_while_its_blocks_load_frees_them() -> None:
    cfg = SchedulerConfig(
        num_blocks=8, max_num_batched_tokens=256, cpu_blocks=16, cpu_block_load_s=1.0
    )
    engine = Engine(cfg, linear_time)
    first = list(range(64))
    engine.run([req(0, 0.0, first, 2), req(1, 0.5, list(range(100, 212)), 2)])
    again = req(2, engine.now, first, 2)
    engine.add(again)
    steps = engine.steps
    for _ in range(3):  # schedule until nothing changes: its 3 blocks start loading
        if not engine.step():
            break
    assert engine.steps == steps  # nothing ran
    assert engine.loading == [again] and engine.kv.used == 3
    engine.abort(again)
    assert engine.loading == [] and engine.kv.used == 0 and engine.pending == 0


# ---- properties ----------------------------------------------------------------------------

workload = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 10_000),
        "n": st.integers(1, 40),
        "rate": st.floats(5.0, 400.0),
        "blocks": st.integers(16, 120),
        "mbt": st.sampled_from([64, 128, 512]),
        "seqs": st.integers(1, 16),
        "groups": st.integers(1, 4),
        "caching": st.booleans(),
        "timeout": st.one_of(st.none(), st.floats(0.005, 0.5)),
        "async": st.booleans(),
        "cpu": st.sampled_from([0, 0, 8, 64]),  # blocks of the CPU tier
    }
)


def make(w: dict[str, object]) -> tuple[SchedulerConfig, list[Request]]:
    rnd = random.Random(int(w["seed"]))  # type: ignore[call-overload]
    seqs = int(w["seqs"])  # type: ignore[call-overload]
    mbt = max(int(w["mbt"]), seqs)  # type: ignore[call-overload]
    cfg = SchedulerConfig(
        num_blocks=int(w["blocks"]),  # type: ignore[call-overload]
        max_num_seqs=seqs,
        max_num_batched_tokens=mbt,
        max_model_len=256,
        enable_prefix_caching=bool(w["caching"]),
        async_scheduling=bool(w["async"]),
        cpu_blocks=int(w.get("cpu", 0)),  # type: ignore[call-overload]
        cpu_block_load_s=1e-4,
    )
    groups = [
        [rnd.randrange(50) for _ in range(rnd.randrange(0, 60))] for _ in range(int(w["groups"]))
    ]  # type: ignore[call-overload]
    reqs = []
    t = 0.0
    for i in range(int(w["n"])):  # type: ignore[call-overload]
        t += rnd.expovariate(float(w["rate"]))  # type: ignore[arg-type]
        prompt = rnd.choice(groups) + [rnd.randrange(50, 100) for _ in range(rnd.randrange(1, 200))]
        r = req(i, t, prompt, rnd.randrange(1, 120))
        if w["timeout"] is not None:
            r.deadline = t + float(w["timeout"])  # type: ignore[arg-type]
        reqs.append(r)
    return cfg, reqs


@settings(max_examples=150, deadline=None)
@given(workload)
def test_steps_respect_budget_sequences_and_blocks_and_every_request_ends(
    w: dict[str, object],
) -> None:
    cfg, reqs = make(w)
    res = run(cfg, reqs)
    assert res.records is not None
    for s in res.records:
        assert 0 < s.tokens <= cfg.max_num_batched_tokens
        assert 0 < s.seqs <= cfg.max_num_seqs
        assert 0 <= s.blocks_used <= cfg.num_blocks
    for r in reqs:
        assert [r.finished, r.refused is not None, r.aborted].count(True) == 1
        if r.finished:
            assert r.token_times is not None and len(r.token_times) == r.output_len
            assert r.first_token is not None
            assert r.deadline is None or r.last_token <= r.deadline + 0.5  # type: ignore[operator]
        elif r.aborted:
            assert r.deadline is not None and len(r.token_times or []) < r.output_len
        else:
            assert r.refused and r.prompt_len + r.output_len > cfg.max_model_len


@settings(max_examples=150, deadline=None)
@given(workload)
def test_virtual_time_never_goes_backwards(w: dict[str, object]) -> None:
    cfg, reqs = make(w)
    res = run(cfg, reqs)
    assert res.records is not None
    prev = 0.0
    for s in res.records:
        assert prev <= s.start < s.end
        prev = s.end
    for r in reqs:
        if r.finished:
            times = r.token_times or []
            assert r.arrival <= (r.admitted or 0.0) < times[0]
            assert times == sorted(times)


@settings(max_examples=150, deadline=None)
@given(workload)
def test_jumping_over_decode_steps_gives_the_same_token_times(w: dict[str, object]) -> None:
    cfg, fast = make(w)
    _, slow = make(w)
    a = run(cfg, fast, jump=True)
    b = run(cfg, slow, jump=False)
    assert a.steps == b.steps and a.preemptions == b.preemptions
    assert a.records is not None and b.records is not None
    for p, q in zip(a.records, b.records, strict=True):  # the same steps, the same blocks
        assert (p.tokens, p.seqs, p.prefills, p.blocks_used, p.decode_only) == (
            q.tokens,
            q.seqs,
            q.prefills,
            q.blocks_used,
            q.decode_only,
        )
        assert abs(p.start - q.start) <= 1e-6 and abs(p.end - q.end) <= 1e-6
    for x, y in zip(fast, slow, strict=True):
        assert x.refused == y.refused and x.aborted == y.aborted
        tx, ty = x.token_times or [], y.token_times or []
        assert len(tx) == len(ty)
        assert all(abs(p - q) <= 1e-6 for p, q in zip(tx, ty, strict=True))


@settings(max_examples=50, deadline=None)
@given(workload)
def test_the_same_input_gives_the_same_result(w: dict[str, object]) -> None:
    cfg, one = make(w)
    _, two = make(w)
    run(cfg, one)
    run(cfg, two)
    assert [(r.first_token, r.last_token, r.preemptions, r.cached_tokens) for r in one] == [
        (r.first_token, r.last_token, r.preemptions, r.cached_tokens) for r in two
    ]


def _advance_to(engine: Engine, until: float) -> None:
    """Run every step that starts before `until` (nothing new arrives)."""
    while engine.pending and engine.now < until:
        if not engine.jump(until) and not engine.step():
            break


def _seen(engine: Engine) -> tuple[int, int, int]:
    """What a scraper reads of an engine: waiting, running, KV blocks in use."""
    return len(engine.waiting) + len(engine.loading), len(engine.running), engine.kv.used


@settings(max_examples=100, deadline=None)
@given(workload, st.floats(0.0005, 0.2))
def test_an_engine_settled_until_a_time_reads_the_same_after_running_to_it(
    w: dict[str, object], ahead: float
) -> None:
    import copy

    cfg, reqs = make(w)
    cfg = SchedulerConfig(**{**cfg.__dict__, "cpu_blocks": 0})
    engine = Engine(cfg, linear_time, record_tokens=True)
    settled = 0
    i = 0
    for _ in range(5_000):
        while i < len(reqs) and reqs[i].arrival <= engine.now:
            engine.add(reqs[i])
            i += 1
        if not engine.pending:
            if i >= len(reqs):
                break
            engine.now = reqs[i].arrival
            continue
        until = engine.now + ahead
        if engine.settled_until(until):
            settled += 1
            ahead_copy = copy.deepcopy(engine)
            before = _seen(ahead_copy)
            _advance_to(ahead_copy, until)
            assert _seen(ahead_copy) == before
        next_arrival = reqs[i].arrival if i < len(reqs) else float("inf")
        if not engine.jump(min(next_arrival, engine.now + ahead / 3)) and not engine.step():
            engine.now = max(engine.now, next_arrival)
