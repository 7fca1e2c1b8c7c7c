"""`linear-load`: a simulator latency model in which every running request slows the others
linearly, without a cap.

With `n` the requests running (including this one), `--time-to-first-token` T and
`--inter-token-latency` I (both in milliseconds on the command line):

- time to first token = T * n
- each inter-token gap  = I * n

(no jitter; `--time-factor-under-load` and the per-token options are not used). A P/D decode
request (remote prefill) waits `--kv-cache-transfer-latency` instead of T * n.
"""

from __future__ import annotations

import random

from pyllmd.sim.engine.latency import LatencyParams


class LinearLoadCalculator:
    """pyllmd calls the class with the simulator's `LatencyParams` (seconds)."""

    def __init__(self, params: LatencyParams) -> None:
        self.p = params

    def ttft(
        self,
        prompt_tokens: int,
        cached_tokens: int,
        remote_prefill: bool,
        running: int,
        rng: random.Random,
    ) -> float:
        """Seconds before the first token."""
        if remote_prefill:
            return self.p.kv_transfer_latency
        return self.p.ttft * max(running, 1)

    def itl(self, running: int, rng: random.Random) -> float:
        """Seconds between two output tokens."""
        return self.p.itl * max(running, 1)
