"""Which pod a request goes to in `pyllmd simulate` without an endpoint picker.

`BuiltinGateway` is `pyllmd up`'s built-in gateway (`gateway: builtin`, or none), the
default: the pod with the fewest requests in flight, and requests held while no pod is
Ready (what wakes a variant at zero). `RoundRobin` is the replay's own default when it is
given no router (the calibration replays: one pod). Both are `routing.Router`s.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence

from pyllmd.core.balance import pick
from pyllmd.sim.batch.scheduler import Engine
from pyllmd.simulate.routing import Released


class RoundRobin:
    """Requests in turn over the pods."""

    def __init__(self) -> None:
        self.turn = 0

    def route(self, payload: object, tokens: Sequence[int], model: str, now: float,
              pods: Sequence[str], engines: Mapping[str, Engine]) -> list[Released]:  # fmt: skip
        pod = pods[self.turn % len(pods)]
        self.turn += 1
        return [(payload, pod, None)]

    def next_poll(self) -> float:
        return math.inf

    def reads_engines(self, now: float, pods: Sequence[str]) -> bool:
        return False

    def poll(
        self, now: float, pods: Sequence[str], engines: Mapping[str, Engine]
    ) -> list[Released]:
        return []

    def queued(self) -> int:
        return 0

    def cancel(self, payload: object) -> bool:
        return False


class BuiltinGateway:
    """`pyllmd up`'s built-in gateway (`gateway: builtin`): the pod with the fewest requests
    in flight, ties in turn (`core.balance.pick`); while no pod is Ready, requests wait (polled
    every 50 ms) up to `queue_timeout`, then fail with the gateway's 503 message."""

    def __init__(self, queue_timeout: float = 120.0, poll: float = 0.05) -> None:
        self.queue_timeout = queue_timeout
        self.poll_s = poll
        self.turn = 0
        self.held: deque[tuple[object, str, float]] = deque()  # payload, model, deadline
        self.polled_at = -math.inf

    def _pick(self, pods: Sequence[str], engines: Mapping[str, Engine]) -> str | None:
        turn = self.turn
        self.turn += 1
        return pick(pods, {p: engines[p].pending for p in pods}, (), turn)

    def route(self, payload: object, tokens: Sequence[int], model: str, now: float,
              pods: Sequence[str], engines: Mapping[str, Engine]) -> list[Released]:  # fmt: skip
        pod = self._pick(pods, engines)
        if pod is not None:
            return [(payload, pod, None)]
        if not self.held:
            self.polled_at = now
        self.held.append((payload, model, now + self.queue_timeout))
        return []

    def next_poll(self) -> float:
        return self.polled_at + self.poll_s if self.held else math.inf

    def reads_engines(self, now: float, pods: Sequence[str]) -> bool:
        return True  # every pod's requests in flight

    def poll(
        self, now: float, pods: Sequence[str], engines: Mapping[str, Engine]
    ) -> list[Released]:
        self.polled_at = now
        out: list[Released] = []
        while self.held and (pods or self.held[0][2] <= now):
            payload, model, deadline = self.held.popleft()
            pod = self._pick(pods, engines) if pods else None
            error = None if pod else f"no ready endpoint for model {model} after queueing"
            out.append((payload, pod, error))
        return out

    def queued(self) -> int:
        return len(self.held)

    def cancel(self, payload: object) -> bool:
        for entry in self.held:
            if entry[0] is payload:
                self.held.remove(entry)
                return True
        return False
