"""Server model of the queueing analyzer (spec §5.3): a state-dependent birth–death queue.

One replica holds at most `N` requests in service (max batch size) and `K = N · 10`
waiting (`MAX_QUEUE_TO_BATCH_RATIO`); arrivals beyond `N + K` are lost. With `n`
requests in service the replica completes requests at `μ(n) = n / (prefill(n) +
O·decode(n))`, where one engine iteration takes

    T(n) = α + n·(β·(I+O)/(O+1) + γ·(I + O/2))          (ms)

prefill adds `(β+γ)·I` to one iteration (0 when I = 0) and each decoded token adds
`β + γ·(I + O/2)`. `α` is the fixed cost of an iteration, `β` the compute cost and
`γ` the memory-access cost per token. The stationary distribution is computed in
log space so large batches and queues neither overflow nor underflow.

Metrics: throughput `λ·(1 − P[full])`; wait, service and response time by Little's
law; prefill and token time (ITL) evaluated at the effective concurrency, the batch
size whose service time `prefill(n) + O·decode(n)` equals the mean service time (as
upstream's earlier analyzer); TTFT = wait + prefill + one token time.

Difference from upstream's current analyzer: it evaluates prefill at the
time-averaged number in service (idle periods included) and takes the token time
as what is left of the mean service time, so ITL can *fall* as load rises (always
with N = 1). The effective concurrency keeps prefill + O·ITL equal to the mean
service time and makes TTFT and ITL non-decreasing in the arrival rate.

Units: rates outside the model are requests per second, times are milliseconds.
Library only: as upstream, no controller path calls it. Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MAX_QUEUE_TO_BATCH_RATIO = 10
RATE_EPSILON = 0.001
"""The usable rate range is `[μ(1)·ε, μ(N)·(1 − ε)]`, as upstream."""


@dataclass(frozen=True)
class ServiceParams:
    """The per-accelerator constants of the iteration-time model (ms, ms/token)."""

    alpha: float
    beta: float
    gamma: float

    def check(self) -> None:
        if not self.alpha > 0 or self.beta < 0 or self.gamma < 0:
            raise ValueError(f"invalid service parameters {self}: need alpha > 0, beta, gamma >= 0")
        if not all(math.isfinite(v) for v in (self.alpha, self.beta, self.gamma)):
            raise ValueError(f"invalid service parameters {self}: must be finite")

    def iteration_time(self, req: RequestSize, n: float) -> float:
        """`T(n)`: one engine iteration with `n` requests in the batch."""
        i, o = req.input_tokens, req.output_tokens
        return self.alpha + n * (self.beta * (i + o) / (o + 1) + self.gamma * (i + o / 2))

    def prefill_time(self, req: RequestSize, n: float) -> float:
        """Time to process a request's prompt; 0 for decode-only requests (I = 0)."""
        if req.input_tokens == 0:
            return 0.0
        return self.iteration_time(req, n) + (self.beta + self.gamma) * req.input_tokens

    def decode_time(self, req: RequestSize, n: float) -> float:
        """Time to generate one output token."""
        return (
            self.iteration_time(req, n)
            + self.beta
            + self.gamma * (req.input_tokens + req.output_tokens / 2)
        )

    def service_time(self, req: RequestSize, n: float) -> float:
        """Time in service of one request: prefill plus O decodes."""
        return self.prefill_time(req, n) + req.output_tokens * self.decode_time(req, n)


@dataclass(frozen=True)
class RequestSize:
    """Average tokens per request."""

    input_tokens: float
    output_tokens: float

    def check(self) -> None:
        if not self.input_tokens >= 0 or not self.output_tokens >= 1:
            raise ValueError(f"invalid request size {self}: need input >= 0, output >= 1")


@dataclass(frozen=True)
class QueueMetrics:
    """What the model predicts for one replica at one offered rate."""

    offered_rate: float
    """Arrival rate asked for (req/s)."""
    throughput: float
    """Accepted (= departing) rate (req/s); below `offered_rate` only when the queue fills."""
    max_rate: float
    """Highest rate the replica sustains (req/s), `μ(N)·(1 − ε)`."""
    avg_num_in_system: float
    avg_num_in_service: float
    effective_concurrency: float
    """Batch size a request in service sees on average: `s(n) = avg_service_time`."""
    avg_resp_time: float
    avg_wait_time: float
    avg_service_time: float
    avg_prefill_time: float
    avg_token_time: float
    ttft: float
    """wait + prefill + first token (ms)."""
    rho: float
    """Mean number in service / N, within [0, 1]."""
    loss_probability: float

    @property
    def itl(self) -> float:
        """Inter-token latency = average token time (ms)."""
        return self.avg_token_time


def stationary(arrival: float, service: Sequence[float]) -> list[float]:
    """Stationary distribution of a birth–death chain on states 0..len(service).

    `arrival` is the birth rate in every state below the top; `service[k-1]` is the
    death rate in state k. Products of ratios are summed in log space and normalised
    by the largest term, so no intermediate overflows.
    """
    if not arrival > 0:
        raise ValueError("arrival rate must be > 0")
    if any(not mu > 0 for mu in service):
        raise ValueError("service rates must be > 0")
    log_lam = math.log(arrival)
    logs = [0.0]
    for mu in service:
        logs.append(logs[-1] + log_lam - math.log(mu))
    top = max(logs)
    weights = [math.exp(v - top) for v in logs]
    total = math.fsum(weights)
    return [w / total for w in weights]


class QueueModel:
    """One replica of a server: configuration, request size and its service rates."""

    def __init__(
        self,
        params: ServiceParams,
        request: RequestSize,
        max_batch_size: int,
        max_queue_size: int | None = None,
    ) -> None:
        params.check()
        request.check()
        if max_batch_size < 1:
            raise ValueError(f"max batch size must be >= 1, got {max_batch_size}")
        if max_queue_size is None:
            max_queue_size = max_batch_size * MAX_QUEUE_TO_BATCH_RATIO
        if max_queue_size < 0:
            raise ValueError(f"max queue size must be >= 0, got {max_queue_size}")
        self.params = params
        self.request = request
        self.max_batch_size = max_batch_size
        self.max_queue_size = max_queue_size
        self.service_rates: tuple[float, ...] = tuple(
            n / params.service_time(request, n) for n in range(1, max_batch_size + 1)
        )
        """`μ(n)` in requests per ms, for n = 1..N."""

    @property
    def capacity(self) -> int:
        """Most requests a replica holds: batch plus queue."""
        return self.max_batch_size + self.max_queue_size

    @property
    def min_rate(self) -> float:
        """Lowest rate of the search range (req/s)."""
        return self.service_rates[0] * RATE_EPSILON * 1000

    @property
    def max_rate(self) -> float:
        """Highest stable rate (req/s): just below the full-batch service rate."""
        return self.service_rates[-1] * (1 - RATE_EPSILON) * 1000

    def effective_concurrency(self, service_time: float) -> float:
        """The batch size `n` at which one request's service time equals `service_time`.

        Service time is linear in n, `s(n) = s(0) + n·(s(1) − s(0))`, so this inverts it;
        the result lies in [1, N] for any mean the queue produces (rounding aside).
        """
        s0 = self.params.service_time(self.request, 0)
        slope = self.params.service_time(self.request, 1) - s0
        if slope <= 0:
            return 1.0
        return min(max((service_time - s0) / slope, 1.0), float(self.max_batch_size))

    def state_service_rates(self) -> list[float]:
        """Death rate of each state 1..capacity: `μ(min(k, N))`."""
        n = self.max_batch_size
        return [self.service_rates[min(k, n) - 1] for k in range(1, self.capacity + 1)]

    def analyze(self, rate: float) -> QueueMetrics:
        """Metrics at offered `rate` (req/s). Rates above `max_rate` are valid: the
        finite queue drops what it cannot hold, so throughput saturates."""
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"invalid request rate {rate}")
        lam = rate / 1000
        mus = self.state_service_rates()
        probs = stationary(lam, mus)
        n = self.max_batch_size
        in_system = math.fsum(k * p for k, p in enumerate(probs))
        in_service = math.fsum(min(k, n) * p for k, p in enumerate(probs))
        loss = probs[-1]
        throughput = lam * (1 - loss)
        resp = in_system / throughput
        wait = (in_system - in_service) / throughput
        service = in_service / throughput
        conc = self.effective_concurrency(service)
        prefill = self.params.prefill_time(self.request, conc)
        token = self.params.decode_time(self.request, conc)
        return QueueMetrics(
            offered_rate=rate,
            throughput=throughput * 1000,
            max_rate=self.max_rate,
            avg_num_in_system=in_system,
            avg_num_in_service=in_service,
            effective_concurrency=conc,
            avg_resp_time=resp,
            avg_wait_time=wait,
            avg_service_time=service,
            avg_prefill_time=prefill,
            avg_token_time=token,
            ttft=wait + prefill + token,
            rho=min(max(in_service / n, 0.0), 1.0),
            loss_probability=loss,
        )
