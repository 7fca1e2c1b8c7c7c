"""The live step loop (`sim/server/batchloop.py`) on a virtual clock: its tokens come at the
times the batch engine's own `run()` gives the same requests (no second implementation)."""

from __future__ import annotations

import asyncio

import pytest

from pyllmd.core.clock import VirtualClock
from pyllmd.sim.batch.scheduler import Engine, Request, SchedulerConfig, block_hashes
from pyllmd.sim.server.batchloop import QUEUE_FULL, BatchLoop

CFG = SchedulerConfig(num_blocks=64, max_num_seqs=4, max_num_batched_tokens=64, max_model_len=512)


def step_time(tokens: int, pairs: int, kv: int, seqs: int, decode_only: bool) -> float:
    return 0.010 + 0.0001 * tokens + 0.00001 * seqs


# (arrival, prompt length, output length): overlapping requests, chunked prefills, a queue
LOAD = [(0.0, 40, 5), (0.003, 100, 8), (0.021, 30, 3), (0.022, 70, 6), (0.05, 20, 4), (0.2, 10, 2)]


def prompt(i: int, n: int) -> list[int]:
    return [1000 * (i + 1) + k for k in range(n)]


def expected() -> list[list[float]]:
    engine = Engine(CFG, step_time, record_tokens=True)
    reqs = [
        Request(i, at, n, out, block_hashes(prompt(i, n))) for i, (at, n, out) in enumerate(LOAD)
    ]
    engine.run(reqs, jump=False)
    return [list(r.token_times or []) for r in reqs]


def test_the_loop_delivers_each_token_at_the_end_of_the_engine_step_that_computed_it() -> None:
    async def main() -> list[list[float]]:
        clock = VirtualClock(start=100.0)
        loop = BatchLoop(CFG, step_time, clock)
        tickets = []
        for i, (at, n, out) in enumerate(LOAD):
            await clock.advance(100.0 + at - clock.now())
            tickets.append(loop.submit(prompt(i, n), out))
        await clock.advance(5.0)
        await loop.close()
        assert all(t.done for t in tickets)
        return [[x - 100.0 for x in t.times] for t in tickets]

    got = asyncio.run(main())
    want = expected()
    assert [len(g) for g in got] == [out for _, _, out in LOAD]
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-9)


def test_a_bounded_waiting_queue_refuses_with_the_engines_message() -> None:
    async def main() -> str:
        clock = VirtualClock()
        cfg = SchedulerConfig(num_blocks=64, max_num_seqs=1, max_waiting=2)
        loop = BatchLoop(cfg, step_time, clock)
        loop.submit(prompt(0, 10), 50)
        loop.submit(prompt(1, 10), 50)  # the engine has not stepped: both wait
        try:
            loop.submit(prompt(2, 10), 50)
        except ValueError as e:
            return str(e)
        finally:
            await loop.close()
        return ""

    assert asyncio.run(main()) == QUEUE_FULL


def test_a_cancelled_request_frees_its_blocks() -> None:
    async def main() -> tuple[int, int]:
        clock = VirtualClock()
        loop = BatchLoop(CFG, step_time, clock)
        ticket = loop.submit(prompt(0, 100), 400)
        await clock.advance(0.2)
        used = loop.engine.kv.used
        loop.cancel(ticket)
        await clock.advance(0.2)
        await loop.close()
        return used, loop.engine.kv.used

    used, after = asyncio.run(main())
    assert used > 0
    assert after == 0


def test_a_failing_step_fails_the_requests_instead_of_hanging_them() -> None:
    def broken(tokens: int, pairs: int, kv: int, seqs: int, decode_only: bool) -> float:
        raise RuntimeError("a bug")

    async def main() -> tuple[bool, bool]:
        clock = VirtualClock()
        loop = BatchLoop(CFG, broken, clock)
        ticket = loop.submit(prompt(0, 10), 5)
        await clock.advance(1.0)
        await loop.close()
        return ticket.done, ticket.failed

    assert asyncio.run(main()) == (True, True)
