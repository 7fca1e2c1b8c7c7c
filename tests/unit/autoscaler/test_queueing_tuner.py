"""Kalman-filter tuner of α/β/γ (spec §5.3): convergence, outliers, bounds."""

from __future__ import annotations

import math

import pytest

from pyllmd.autoscaler.decide.analyze.queueing import (
    Environment,
    FilterState,
    ServiceParams,
    TunerConfig,
    bounds_from_factors,
    initial_state,
    tune,
)
from pyllmd.autoscaler.decide.analyze.queueing.tuner import jacobian

TRUE = ServiceParams(alpha=6.0, beta=0.04, gamma=0.0002)
TRUE_X = (TRUE.alpha, TRUE.beta, TRUE.gamma)
# Varied loads and request sizes: one operating point gives two equations for three
# unknowns, so the filter needs several to pin down all parameters.
ENVS = [
    Environment(2.0, 1000, 200, 16),
    Environment(6.0, 200, 50, 16),
    Environment(10.0, 3000, 20, 16),
    Environment(4.0, 100, 400, 16),
    Environment(1.0, 2000, 100, 16),
]


def observe(env: Environment, x: tuple[float, float, float] = TRUE_X) -> tuple[float, float]:
    z = env.observe(x)
    assert z is not None
    return (z[0], z[1])


DEFAULTS = TunerConfig()


def run(state: FilterState, steps: int, config: TunerConfig = DEFAULTS) -> FilterState:
    for step in range(steps):
        env = ENVS[step % len(ENVS)]
        state = tune(state, env, observe(env), config).state
    return state


def assert_close(x: tuple[float, ...], want: tuple[float, ...], rel: float) -> None:
    for got, w in zip(x, want, strict=True):
        assert got == pytest.approx(w, rel=rel)


def test_converges_from_a_close_guess_with_defaults() -> None:
    state = initial_state(ServiceParams(6.2, 0.039, 0.00021))
    accepted = 0
    for step in range(150):
        env = ENVS[step % len(ENVS)]
        result = tune(state, env, observe(env))
        accepted += result.accepted
        state = result.state
    assert accepted == 150
    assert_close(state.x, TRUE_X, rel=1e-3)


def test_converges_from_a_rough_guess_with_wide_start() -> None:
    state = initial_state(ServiceParams(8.0, 0.03, 0.0003), spread=(0.5, 0.5, 0.5))
    state = run(state, 200)
    assert_close(state.x, TRUE_X, rel=1e-4)
    assert state.params == ServiceParams(*state.x)


def test_outlier_is_rejected_and_state_kept() -> None:
    state = run(initial_state(TRUE), 20)
    env = ENVS[0]
    ttft, itl = observe(env)
    result = tune(state, env, (ttft * 10, itl * 10))
    assert not result.accepted
    assert result.nis > 7.378
    assert result.state == state  # estimate and covariance unchanged
    assert "NIS" in result.reason
    # a consistent observation right after is accepted again
    assert tune(state, env, (ttft, itl)).accepted


def test_nis_threshold_boundary() -> None:
    env = ENVS[1]
    state = initial_state(ServiceParams(6.3, 0.04, 0.0002))
    probe = tune(state, env, observe(env), TunerConfig(max_nis=math.inf))
    assert probe.accepted
    nis = probe.nis
    assert tune(state, env, observe(env), TunerConfig(max_nis=nis * (1 + 1e-9))).accepted
    below = tune(state, env, observe(env), TunerConfig(max_nis=nis * (1 - 1e-9)))
    assert not below.accepted
    assert below.state == state


def test_state_bounds_are_respected() -> None:
    lo = (1.0, 0.001, 1e-6)
    hi = (5.0, 1.0, 1.0)  # the true alpha (6) lies above the bound
    config = TunerConfig(min_state=lo, max_state=hi)
    state = initial_state(ServiceParams(4.5, 0.04, 0.0002), spread=(0.5, 0.5, 0.5))
    for step in range(60):
        env = ENVS[step % len(ENVS)]
        result = tune(state, env, observe(env), config)
        state = result.state
        for v, a, b in zip(state.x, lo, hi, strict=True):
            assert a <= v <= b
    assert state.x[0] == 5.0


def test_bounds_from_factors() -> None:
    lo, hi = bounds_from_factors(TRUE)
    assert lo == pytest.approx((0.06, 0.0004, 0.000002))
    assert hi == pytest.approx((600.0, 4.0, 0.02))


def test_observation_noise_and_initial_covariance() -> None:
    config = TunerConfig()
    assert config.noise_factor == pytest.approx((0.05 / 1.96) ** 2)
    assert TunerConfig(gamma_factor=2.0).noise_factor == pytest.approx((0.05 / 1.96) ** 2 / 2)
    assert config.epsilon == 1e-6
    assert config.max_nis == 7.378
    p = initial_state(TRUE).p
    assert p[0][0] == pytest.approx((0.05 * 6.0) ** 2)
    assert p[2][2] == pytest.approx((0.05 * 0.0002) ** 2)
    assert p[0][1] == 0.0


def test_numeric_jacobian_matches_finite_differences() -> None:
    env = ENVS[0]
    h0 = observe(env)
    jac = jacobian(env, TRUE_X, h0, 1e-6)
    for i, step in enumerate((1e-3, 1e-5, 1e-7)):
        x = tuple(v + step if j == i else v for j, v in enumerate(TRUE_X))
        h = observe(env, (x[0], x[1], x[2]))
        for row in range(2):
            assert jac[row][i] == pytest.approx((h[row] - h0[row]) / step, rel=1e-2)
    # every parameter raises both TTFT and ITL
    assert all(v > 0 for row in jac for v in row)


@pytest.mark.parametrize("obs", [(0.0, 5.0), (50.0, -1.0), (math.nan, 5.0), (math.inf, 5.0)])
def test_invalid_observations_are_rejected(obs: tuple[float, float]) -> None:
    with pytest.raises(ValueError):
        tune(initial_state(TRUE), ENVS[0], obs)


def test_undefined_model_keeps_state() -> None:
    state = FilterState((6.0, 0.04, 0.0002), initial_state(TRUE).p)
    broken = Environment(2.0, 1000, 200, max_batch_size=0)
    result = tune(state, broken, (100.0, 10.0))
    assert not result.accepted
    assert result.state == state


def test_update_to_a_non_positive_parameter_is_rejected() -> None:
    env = ENVS[0]
    # gamma very uncertain, the others pinned: a low observation pushes gamma below 0
    state = initial_state(TRUE, spread=(0.01, 0.01, 50.0))
    ttft, itl = observe(env)
    result = tune(state, env, (ttft * 0.5, itl * 0.5))
    assert not result.accepted
    assert result.reason == "parameters must stay positive"
    assert result.state == state
