"""A workload's client and a fleet of pods on one virtual clock (pure: no I/O, no wall time).

Each pod is a `pyllmd.sim.batch.scheduler.Engine`, the engine code the simulator runs, in a
`cluster.Fleet` whose pods may come and go; a router (`routing.py`) picks each request's pod.
The loop always moves whoever is furthest behind: the scrape, a held request's poll, a timer
(the autoscaler's cycles, a pod becoming Ready: plain callbacks on a heap) or the client when
due no later than every busy pod's clock, else the busy pod with the earliest clock (a heap
of the busy pods' clocks, `_Busy`), by one
step (or by a run of unchanged decode steps up to the next clock of the client, another pod,
the scrape or the router). Timers read no engine state (but those registered as touching
engines, a cache drop), so they do not cut decode jumps.

When the client is open-loop (`_open_loop`), nothing it does waits on a response, and the
pods do not interact: then a pod need only reach a time when something reads it. The
client's sends and the loop's events run in time order; the router's read at a new 50 ms
tick brings each pod to it, but one whose steps before it change nothing the router reads
(`Engine.settled_until`); a scrape brings every pod to its time; a timer none; the pods left
behind catch up before anything that is not like this happens.
A response ends `last_token_s` after its last token; a request the client gives up on (its
timeout) is aborted at the next step boundary.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from pyllmd.core.heap import gc_paused
from pyllmd.sim.batch.scheduler import Engine, Request, StepLog, StepRecord, block_hashes
from pyllmd.simulate.cluster import Fleet, PodRun
from pyllmd.simulate.gateway import RoundRobin
from pyllmd.simulate.routing import Disaggregated, Router
from pyllmd.simulate.scrape import Scraper
from pyllmd.simulate.workload import Client, Send

__all__ = ["Outcome", "PodRun", "replay"]

TIMEOUT_ERROR = "Timeout"
HASH_CACHE = 8192  # prompts whose block hashes are kept (sessions and shared prompts repeat)


@dataclass
class Outcome:
    """What a replay produced: every request sent, with its engine record, and the steps."""

    sends: list[Send]
    requests: dict[int, tuple[str, Request]]  # by send index: (pod, engine request)
    steps: dict[str, Sequence[StepRecord]]
    num_blocks: int
    preemptions: int
    end: float


def replay(
    client: Client,
    fleet: Fleet,
    progress: Callable[[float], None] | None = None,
    router: Router | None = None,
    scraper: Scraper | None = None,
) -> Outcome:
    """Run `client` against `fleet` until the workload is done; `router` picks each request's
    pod (round robin by default); `scraper` scrapes the pods' metrics at its interval; the
    fleet's timers (autoscaling, start-ups) fire on the way."""
    with gc_paused():  # a replay allocates much and makes no cycles: nothing to collect
        return _replay(client, fleet, progress, router or RoundRobin(), scraper)


def _replay(
    client: Client,
    fleet: Fleet,
    progress: Callable[[float], None] | None,
    router: Router,
    scraper: Scraper | None,
) -> Outcome:
    runs = fleet.runs  # these lists and maps change in place as pods come and go
    names = fleet.routable
    engines = fleet.engines
    by_name = fleet.by_name
    timers = fleet.timers
    timeout = client.wl.request_timeout
    requests: dict[int, tuple[str, Request]] = {}
    model = client.wl.model_name
    hashes: dict[tuple[int, ...], tuple[int, ...]] = {}  # prompt -> block_hashes (sessions repeat)
    bs = {r.engine.cfg.block_size for r in fleet.every}
    rid = 0
    inf = math.inf
    t_scrape = scraper.next_time if scraper is not None else inf
    t_flow = inf
    legs: list[tuple[float, int, PrefillLeg, tuple[int, ...]]] = []  # P/D decode legs due
    busy = _Busy(runs)
    disaggregated = False  # P/D seen: decode legs keep every pod on time (no lazy mode)
    lagging = -inf  # pods may be behind the client action at this time (see `_open_loop`)
    draining = False  # a pod scaled down still serves its requests
    # requests the router holds, and when their client gives up on them (its timeout)
    holding: set[int] = set()
    give_up: list[tuple[float, int, Send]] = []

    def sync(run: PodRun, until: float) -> None:
        """Every step of `run` that starts before `until`, its ended requests reported."""
        eng = run.engine
        while (eng.running or eng.waiting or eng.loading) and eng.now < until:
            _advance(run, until)
            _collect(run, client, timeout, scraper, prefilled)
        busy.push(run)

    def sync_all(until: float) -> None:
        for run in runs:
            eng = run.engine
            if (eng.running or eng.waiting or eng.loading) and eng.now < until:
                sync(run, until)

    def read_all(until: float) -> None:
        """Every pod as a reader sees it at `until`: `sync_all`, but a pod whose steps
        before `until` change nothing a reader sees (`Engine.settled_until`) stays behind."""
        for run in runs:
            eng = run.engine
            if (eng.running or eng.waiting or eng.loading) and eng.now < until:
                if not (run.deadlines and run.deadlines[0][0] < until) and eng.settled_until(until):
                    continue
                sync(run, until)

    def submit(payload: object, pod: str | None, error: str | None, now: float, rid: int) -> int:
        """Hand the request to `pod` at `now` (or fail it with the router's error); the next
        id. A disaggregated one goes to its prefill pod first (the decode pod's sidecar)."""
        nonlocal disaggregated
        decode: str | None = None
        if isinstance(payload, Disaggregated):
            decode, pod = pod, payload.prefill
            payload = payload.payload
            disaggregated = True
        send = cast(Send, payload)
        holding.discard(send.index)
        if pod is None:
            send.error = error or "no endpoint"
            client.done(send, now)
            return rid
        run = by_name[pod]
        size = run.engine.cfg.block_size
        prompt = tuple(send.tokens)
        key = prompt if len(bs) < 2 else (size, *prompt)
        prompt_hashes = hashes.get(key)
        if prompt_hashes is None:
            if len(hashes) >= HASH_CACHE:
                hashes.clear()  # unique prompts (random data): keep memory bounded
            prompt_hashes = hashes[key] = block_hashes(prompt, size)
        output_len = send.output_len if decode is None else 1  # P/D: prefill and one token
        req = Request(rid, now + run.first, len(prompt), output_len, prompt_hashes)
        return hand(run, req, send if decode is None else PrefillLeg(send, decode), send, now)

    def hand(run: PodRun, req: Request, entry: Send | PrefillLeg, send: Send, now: float) -> int:
        """`req` (for `send`) into `run`'s engine at `now`, or refused by it; the next id."""
        eng = run.engine
        if timeout is not None:
            req.deadline = send.start + timeout
        if not run.busy() and eng.now < req.arrival:
            eng.now = req.arrival  # an idle engine waits for the request
        eng.add(req)
        requests[send.index] = (run.name, req)
        if req.refused is not None:
            send.error = req.refused
            client.done(send, now)
            return req.rid + 1
        run.open[req.rid] = (req, entry)
        if req.deadline is not None:
            heapq.heappush(run.deadlines, (req.deadline, req.rid, req))
        busy.push(run)
        return req.rid + 1

    def prefilled(leg: PrefillLeg, req: Request, end: float) -> None:
        """The prefill pod answered: the decode pod's sidecar sends the request on, and the
        decode engine sees it once the prompt's KV has arrived."""
        decode = by_name.get(leg.decode)
        if decode is None or decode.removing:
            leg.send.error = "decode pod gone"
            client.done(leg.send, end)
            return
        spec_transfer = decode.transfer
        wait = spec_transfer.seconds(req.prompt_len) if spec_transfer is not None else 0.0
        heapq.heappush(legs, (end + decode.first + wait, req.rid, leg, req.hashes))

    def submit_decode(t: float, leg: PrefillLeg, hashes: tuple[int, ...], rid: int) -> int:
        run = by_name.get(leg.decode)
        send = leg.send
        if run is None or run.removing:
            send.error = "decode pod gone"
            client.done(send, t)
            return rid
        waiting = run.engine.waiting
        arrival = max(t, waiting[-1].arrival) if waiting else t
        req = Request(rid, arrival, len(send.tokens), send.output_len, hashes)
        req.preloaded = len(send.tokens) - 1  # the KV came from the prefill pod
        return hand(run, req, send, send, t)

    def acts(now: float, rid: int, lazy: bool) -> int:
        """The client's sends at `now`, routed and handed to their pods (when `lazy`, a pod
        first reaches `now`); the next request id."""
        for send in client.due(now):
            if timeout is not None:
                holding.add(send.index)
            for held, pod, error in router.route(send, send.tokens, model, now, names, engines):
                if lazy and pod is not None:
                    sync(by_name[held.prefill if isinstance(held, Disaggregated) else pod], now)
                rid = submit(held, pod, error, now, rid)
            if timeout is not None and send.index in holding:  # the router holds it
                heapq.heappush(give_up, (send.start + timeout, send.index, send))
        if progress is not None:
            progress(now)
        return rid

    while True:
        t_client = client.next_time()
        # the busy pod furthest behind (the first of equals)
        behind, t_pod = busy.first()
        t_leg = legs[0][0] if legs else inf
        while give_up and give_up[0][1] not in holding:
            heapq.heappop(give_up)  # released since
        t_give_up = give_up[0][0] if give_up else inf
        if (
            t_pod < t_client < min(t_scrape, t_flow, timers.next_time(), t_leg, t_give_up)
            and not draining
            and not disaggregated
            and _open_loop(client, t_client, timeout)
        ):  # the client acts next, and only what it reads needs to have reached its time
            if router.reads_engines(t_client, names):
                read_all(t_client)
            rid = acts(t_client, rid, lazy=True)
            t_flow = router.next_poll()
            lagging = t_client
            continue
        t_timer = timers.next_time()
        t_event = min(t_scrape, t_timer, t_leg, t_flow, t_give_up)
        if (
            t_pod < t_event <= t_client
            and t_give_up == inf  # (a client with a timeout is not open-loop)
            and not draining
            and not disaggregated
            and _open_loop(client, t_event, timeout)
        ):  # one of the loop's events comes first: as the client's sends above, only what it
            # reads needs to have reached its time
            if t_scrape == t_event:
                assert scraper is not None
                sync_all(t_scrape)  # the scrape reads every pod
                scraper.scrape(t_scrape, engines)
                t_scrape = scraper.next_time
            elif t_timer == t_event:
                if timers.next_reads_engines():
                    sync_all(t_timer)
                timers.fire()  # the others read no engine state
                busy.rebuild()
                draining = any(r.removing for r in runs)
            else:  # held requests looked at again
                if router.reads_engines(t_flow, names):
                    read_all(t_flow)
                for send, pod, error in router.poll(t_flow, names, engines):
                    if pod is not None:
                        sync(by_name[pod], t_flow)
                    rid = submit(send, pod, error, t_flow, rid)
                t_flow = router.next_poll()
            lagging = max(lagging, t_event)
            continue
        if t_pod < lagging:  # the pods left behind catch up before anything else happens
            sync_all(lagging)
            lagging = -inf
            continue
        if t_client == inf and behind is None and t_flow == inf and t_leg == inf == t_give_up:
            if scraper is not None:  # the scrape after the last response
                scraper.scrape(t_scrape, engines)
            break
        # the earliest of the loop's own events, once every busy pod has reached it (ties:
        # the scrape, then timers, decode legs, a held request's timeout, held requests looked
        # at again; the client's sends after them)
        if t_event <= t_pod and t_event <= t_client:
            if t_scrape == t_event:
                assert scraper is not None
                scraper.scrape(t_scrape, engines)
                t_scrape = scraper.next_time
            elif t_timer == t_event:
                timers.fire()
                busy.rebuild()  # pods may have come (Ready) or gone (drained)
                draining = any(r.removing for r in runs)
            elif t_leg == t_event:  # a decode pod's KV transfer is done
                _, _, leg, leg_hashes = heapq.heappop(legs)
                rid = submit_decode(t_leg, leg, leg_hashes, rid)
            elif t_give_up == t_event:  # the client gives up on a request still held
                _, _, gone = heapq.heappop(give_up)
                holding.discard(gone.index)
                if router.cancel(gone):
                    gone.error = TIMEOUT_ERROR
                    client.done(gone, t_give_up)
            else:  # held requests looked at again
                for send, pod, error in router.poll(t_flow, names, engines):
                    rid = submit(send, pod, error, t_flow, rid)
                t_flow = router.next_poll()
            continue
        if t_client <= t_pod:
            rid = acts(t_client, rid, lazy=False)
            t_flow = router.next_poll()
            continue
        assert behind is not None
        t_other = busy.second()  # the clock of the next busy pod
        _advance(behind, min(t_client, t_other, t_scrape, t_flow, t_leg))
        _collect(behind, client, timeout, scraper, prefilled)
        busy.push(behind)
        if behind.removing and not behind.busy():
            fleet.drained(behind, behind.engine.now)
            busy.rebuild()
            draining = any(r.removing for r in runs)
    pods = fleet.every
    steps: dict[str, Sequence[StepRecord]] = {r.name: r.engine.records or StepLog() for r in pods}
    end = max((s.end for s in client.sends if s.end is not None), default=0.0)
    return Outcome(
        client.sends,
        requests,
        steps,
        max((r.engine.kv.size for r in pods), default=0),
        sum(r.engine.preemptions for r in pods),
        end,
    )


class _Busy:
    """The busy pods of `runs` by clock, the first of equals in `runs`' order (which pods
    keep as they come and go): a heap whose outdated entries are dropped when they surface.
    `push` after a pod's engine changed; `rebuild` after `runs` changed."""

    def __init__(self, runs: list[PodRun]) -> None:
        self.runs = runs
        self.heap: list[tuple[float, int, int, PodRun]] = []  # clock, rank, version, pod
        self.rank: dict[int, int] = {}
        self.version: dict[int, int] = {}
        self.rebuild()

    def rebuild(self) -> None:
        self.rank = {id(r): i for i, r in enumerate(self.runs)}
        self.heap = []
        for r in self.runs:
            self.push(r)

    def push(self, run: PodRun) -> None:
        """`run`'s entry as its engine is now (none while it is idle)."""
        key = id(run)
        v = self.version[key] = self.version.get(key, 0) + 1
        eng = run.engine
        if eng.running or eng.waiting or eng.loading:
            heapq.heappush(self.heap, (eng.now, self.rank[key], v, run))

    def first(self) -> tuple[PodRun | None, float]:
        """The busy pod furthest behind and its clock (None, inf: none busy)."""
        heap, version = self.heap, self.version
        while heap and version[id(heap[0][3])] != heap[0][2]:
            heapq.heappop(heap)
        return (heap[0][3], heap[0][0]) if heap else (None, math.inf)

    def second(self) -> float:
        """The clock of the busy pod after the first (which leaves the heap until `push`)."""
        heapq.heappop(self.heap)
        return self.first()[1]


def _open_loop(client: Client, now: float, timeout: float | None) -> bool:
    """Whether the client's sends at `now`, and the responses that end before it, act on the
    client the same in any order: then a pod need only reach `now` when it is read (routed
    to, or read by the router), and the others catch up later (before the next scrape,
    timer, poll of held requests, or a client action that is not like this one), since a
    pod's steps do not depend on when they are run and the client's state does not depend
    on the order of these calls.

    So it is when nothing waits on a response: no client timeout (aborts), no multi-turn
    session, no concurrency-level stage, no sweep probe, nothing issued and unsent, and
    after these sends the stage still has scheduled sends and the in-flight cap is not
    reached (reads the client's schedule: `workload.Client`)."""
    if timeout is not None or client.user_busy or client.sendable or client.wake != math.inf:
        return False
    if client.stage < client.offset or client.stage >= len(client.plan):
        return False
    if client.plan[client.stage].concurrency_level is not None:
        return False
    schedule = client.schedule
    if not schedule or schedule[-1] <= now:
        return False
    due = 0
    for t in schedule:
        if t > now:
            break
        due += 1
    return client.in_flight + due < client.wl.max_in_flight


def _advance(run: PodRun, next_event: float) -> None:
    """One step of `run`'s engine, or a jump over unchanged decode steps up to `next_event`
    (the client's next action or another busy pod's clock)."""
    eng = run.engine
    while run.deadlines and run.deadlines[0][0] <= eng.now:
        req = heapq.heappop(run.deadlines)[2]
        if not (req.finished or req.aborted):
            eng.abort(req)
            run.aborted.append(req)
    if run.deadlines:
        next_event = min(next_event, run.deadlines[0][0])
    waiting_at = eng.next_ready() if eng.loading else _next_arrival(eng)
    if eng.jump(min(next_event, waiting_at)):
        return
    if not eng.step():
        # nothing could run now: wait for an arrival, a deadline or someone else's clock
        target = min(next_event, waiting_at)
        if target == math.inf or target <= eng.now:
            if not eng.pending:
                return
            target = min(waiting_at, run.deadlines[0][0] if run.deadlines else math.inf)
            if target == math.inf:
                raise RuntimeError("the engine stalled with requests left")  # a bug if hit
        eng.now = max(eng.now, target)


def _next_arrival(eng: Engine) -> float:
    """The earliest arrival after `eng.now` among the requests queued in `eng`.

    A replay queues requests in arrival order (they are added as the client sends them),
    except those preempted, which go back to the queue's head and arrived long before; so
    the ones still to arrive are its tail, and the scan stops at the first that has arrived
    (`Engine.next_ready` scans all, for callers whose arrivals are not in order).
    """
    now = eng.now
    earliest = math.inf
    for r in reversed(eng.waiting):
        if r.arrival <= now:
            break
        earliest = r.arrival
    return earliest


@dataclass(frozen=True)
class PrefillLeg:
    """P/D: the prefill request a decode pod's sidecar sent for `send`."""

    send: Send
    decode: str


def _collect(
    run: PodRun,
    client: Client,
    timeout: float | None,
    scraper: Scraper | None = None,
    prefilled: Callable[[PrefillLeg, Request, float], None] | None = None,
) -> None:
    """Report the requests of `run` that ended (finished, aborted) to the client, in the
    order they were sent, and the finished ones to the scraper's counters (with the time the
    server received each: `first_token_s` before it reached the engine)."""
    ended = run.engine.ended
    assert ended is not None
    if not ended and not run.aborted:
        return
    done = ended + run.aborted
    ended.clear()
    run.aborted.clear()
    if len(done) > 1:
        done.sort(key=lambda r: r.rid)  # request ids follow the send order
    for req in done:
        entry = run.open.pop(req.rid, None)
        if entry is None:
            continue
        send = entry[1]
        leg = None
        if isinstance(send, PrefillLeg):
            leg, send = send, send.send
        if req.finished and req.last_token is not None:
            end = req.last_token + run.last
            if (
                leg is not None
                and prefilled is not None
                and not (timeout is not None and end - send.start > timeout)
            ):
                if scraper is not None:
                    scraper.finished(run.name, req, req.arrival - run.first, end)
                prefilled(leg, req, end)
                continue
            if timeout is not None and end - send.start > timeout:
                send.error = TIMEOUT_ERROR
                end = send.start + timeout
            elif scraper is not None:
                scraper.finished(run.name, req, req.arrival - run.first, end)
            client.done(send, end)
        else:
            send.error = TIMEOUT_ERROR
            client.done(send, send.start + timeout if timeout is not None else run.engine.now)
