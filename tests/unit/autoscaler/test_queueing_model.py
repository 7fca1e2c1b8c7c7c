"""Queueing-model server (spec §5.3): closed forms, formulas and monotonicity."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyllmd.autoscaler.decide.analyze.queueing import (
    MAX_QUEUE_TO_BATCH_RATIO,
    QueueModel,
    RequestSize,
    ServiceParams,
    stationary,
)

PARAMS = ServiceParams(alpha=6.0, beta=0.04, gamma=0.0002)
REQ = RequestSize(input_tokens=1000, output_tokens=200)


def mm1k(lam: float, mu: float, k: int) -> list[float]:
    """Textbook M/M/1/K stationary distribution (k = most requests in the system)."""
    rho = lam / mu
    if abs(rho - 1) < 1e-6:  # the closed form cancels badly here; sum the series
        total = math.fsum(rho**n for n in range(k + 1))
        return [rho**n / total for n in range(k + 1)]
    return [(1 - rho) * rho**n / (1 - rho ** (k + 1)) for n in range(k + 1)]


@given(
    lam=st.floats(0.01, 50),
    mu=st.floats(0.01, 50),
    k=st.integers(1, 60),
)
def test_constant_service_rate_is_mm1k(lam: float, mu: float, k: int) -> None:
    got = stationary(lam, [mu] * k)
    want = mm1k(lam, mu, k)
    assert sum(got) == pytest.approx(1.0)
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, rel=1e-9, abs=1e-300)


def test_rho_one_is_uniform() -> None:
    assert stationary(2.0, [2.0] * 4) == pytest.approx([0.2] * 5)


@given(rate_factor=st.floats(0.05, 3.0), queue=st.integers(0, 30))
@settings(max_examples=40)
def test_batch_of_one_matches_mm1k_metrics(rate_factor: float, queue: int) -> None:
    model = QueueModel(PARAMS, REQ, max_batch_size=1, max_queue_size=queue)
    mu = 1 / PARAMS.service_time(REQ, 1)  # per ms
    lam = mu * rate_factor
    k = queue + 1
    p = mm1k(lam, mu, k)
    m = model.analyze(lam * 1000)
    length = sum(n * pn for n, pn in enumerate(p))
    busy = 1 - p[0]
    accepted = lam * (1 - p[-1])
    assert m.loss_probability == pytest.approx(p[-1], rel=1e-9, abs=1e-300)
    assert m.throughput == pytest.approx(accepted * 1000, rel=1e-9)
    assert m.avg_num_in_system == pytest.approx(length, rel=1e-9)
    # (the textbook form cancels badly near rho = 1, hence the absolute slack)
    resp = length / accepted
    assert m.avg_wait_time == pytest.approx((length - busy) / accepted, rel=1e-7, abs=1e-9 * resp)
    assert m.avg_resp_time == pytest.approx(length / accepted, rel=1e-9)
    # With one request in service at a time, prefill and token time are those of n = 1.
    assert m.avg_prefill_time == pytest.approx(PARAMS.prefill_time(REQ, 1))
    assert m.itl == pytest.approx(PARAMS.decode_time(REQ, 1))
    assert m.ttft == pytest.approx(m.avg_wait_time + m.avg_prefill_time + m.itl)
    assert m.rho == pytest.approx(busy)


def test_time_formulas() -> None:
    # T(10) = 6 + 10·(0.04·1200/201 + 0.0002·1100)
    t10 = 6 + 10 * (0.04 * 1200 / 201 + 0.0002 * 1100)
    assert PARAMS.iteration_time(REQ, 10) == pytest.approx(t10)
    assert PARAMS.prefill_time(REQ, 10) == pytest.approx(t10 + 0.0402 * 1000)
    assert PARAMS.decode_time(REQ, 10) == pytest.approx(t10 + 0.04 + 0.0002 * 1100)
    assert PARAMS.prefill_time(RequestSize(0, 200), 10) == 0.0


def test_service_rates_and_rate_range() -> None:
    model = QueueModel(PARAMS, REQ, max_batch_size=8)
    for n in (1, 4, 8):
        want = n / (PARAMS.prefill_time(REQ, n) + 200 * PARAMS.decode_time(REQ, n))
        assert model.service_rates[n - 1] == pytest.approx(want)
    assert model.max_rate == pytest.approx(model.service_rates[-1] * 0.999 * 1000)
    assert model.min_rate == pytest.approx(model.service_rates[0] * 0.001 * 1000)


def test_default_queue_is_ten_batches() -> None:
    model = QueueModel(PARAMS, REQ, max_batch_size=16)
    assert MAX_QUEUE_TO_BATCH_RATIO == 10
    assert model.max_queue_size == 160
    assert model.capacity == 176


@given(
    alpha=st.floats(0.5, 30),
    beta=st.floats(0, 0.2),
    gamma=st.floats(0, 0.001),
    inp=st.sampled_from([0, 10, 500, 3000]),
    out=st.sampled_from([1, 2, 50, 500]),
    batch=st.sampled_from([1, 3, 16, 64]),
    f1=st.floats(0.001, 3.0),
    f2=st.floats(0.001, 3.0),
)
@settings(max_examples=80, deadline=None)
def test_higher_rate_never_lowers_latency(
    alpha: float,
    beta: float,
    gamma: float,
    inp: int,
    out: int,
    batch: int,
    f1: float,
    f2: float,
) -> None:
    model = QueueModel(ServiceParams(alpha, beta, gamma), RequestSize(inp, out), batch)
    low, high = sorted((f1, f2))
    a, b = model.analyze(model.max_rate * low), model.analyze(model.max_rate * high)
    tol = 1e-9
    assert b.avg_wait_time >= a.avg_wait_time - tol * max(1.0, a.avg_wait_time)
    assert b.ttft >= a.ttft * (1 - tol)
    assert b.itl >= a.itl * (1 - tol)
    assert b.rho >= a.rho - tol
    for m in (a, b):
        assert m.throughput <= m.offered_rate * (1 + 1e-12)
        assert 0 <= m.rho <= 1
        assert 1 - 1e-9 <= m.effective_concurrency <= batch + 1e-9
        assert m.avg_service_time == pytest.approx(
            m.avg_prefill_time + out * m.avg_token_time, rel=1e-9
        )


def test_overload_saturates_throughput() -> None:
    model = QueueModel(PARAMS, REQ, max_batch_size=8)
    m = model.analyze(model.max_rate * 5)
    assert m.throughput < m.offered_rate
    assert m.throughput <= model.service_rates[-1] * 1000 * (1 + 1e-12)
    assert m.loss_probability > 0.5
    assert m.rho == pytest.approx(1.0, abs=1e-6)


def test_large_system_is_numerically_stable() -> None:
    model = QueueModel(PARAMS, RequestSize(10, 2), max_batch_size=512)
    for factor in (1e-6, 0.5, 0.999, 50):
        m = model.analyze(model.max_rate * factor)
        assert all(math.isfinite(v) for v in (m.ttft, m.itl, m.avg_wait_time, m.throughput))
    probs = stationary(1e6, [1e-6] * 5000)
    assert sum(probs) == pytest.approx(1.0)
    assert probs[-1] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("params", "req", "batch", "queue"),
    [
        (ServiceParams(0, 0.1, 0.1), REQ, 4, None),
        (ServiceParams(1, -0.1, 0.1), REQ, 4, None),
        (ServiceParams(1, 0.1, -1e-9), REQ, 4, None),
        (PARAMS, RequestSize(-1, 10), 4, None),
        (PARAMS, RequestSize(10, 0.5), 4, None),
        (PARAMS, REQ, 0, None),
        (PARAMS, REQ, 4, -1),
    ],
)
def test_invalid_configuration_is_rejected(
    params: ServiceParams, req: RequestSize, batch: int, queue: int | None
) -> None:
    with pytest.raises(ValueError):
        QueueModel(params, req, batch, queue)


@pytest.mark.parametrize("rate", [0.0, -1.0, math.inf, math.nan])
def test_invalid_rate_is_rejected(rate: float) -> None:
    with pytest.raises(ValueError):
        QueueModel(PARAMS, REQ, 4).analyze(rate)
