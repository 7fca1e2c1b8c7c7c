"""Online estimation of the service parameters `[α, β, γ]` (spec §5.3): an extended
Kalman filter whose observations are a replica's measured `[TTFT, ITL]`.

The state is assumed constant between steps (identity transition) with process noise
`Q = diag((percent_change_i · x_i)²)`, which lets the estimate follow slow drift. The
observation function is the queueing model (`model.QueueModel`) at the replica's
current load; its Jacobian is taken numerically with step `epsilon` (1e-6). The
observation noise is proportional to the observations themselves:
`R = diag(((error_level / t_percentile)² / gamma_factor) · z_j²)`, i.e. a measurement
is trusted to within ±5 % at 95 % confidence by default. After the update the state
is clipped to optional bounds. An update is rejected, and the previous state and
covariance are kept, when a parameter is not positive or when the normalised
innovation squared `yᵀ S⁻¹ y` is above 7.378 (χ² with 2 degrees of freedom at 95 %):
such a measurement is more likely an outlier or a regime change than noise.

The linear algebra (3×3 covariance, 2×2 innovation covariance) is written out by
hand: it is a few lines, and numpy would be a large runtime dependency for a library
that the controller does not call. The covariance update uses the Joseph form, which
keeps P symmetric and positive definite despite rounding.

Difference from upstream: the TTFT the filter matches is the model's TTFT (wait +
prefill + first token), the same quantity the sizing uses; upstream's tuner matches
wait + prefill. Library only: as upstream, no controller path calls it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pyllmd.autoscaler.decide.analyze.queueing.model import QueueModel, RequestSize, ServiceParams

DEFAULT_ERROR_LEVEL = 0.05
DEFAULT_T_PERCENTILE = 1.96
DEFAULT_GAMMA_FACTOR = 1.0
DEFAULT_PERCENT_CHANGE = 0.05
DEFAULT_MAX_NIS = 7.378
DEFAULT_EPSILON = 1e-6
DEFAULT_MIN_STATE_FACTOR = 0.01
DEFAULT_MAX_STATE_FACTOR = 100.0

Vec = tuple[float, ...]
Mat = tuple[tuple[float, ...], ...]


def _t(a: Mat) -> Mat:
    return tuple(zip(*a, strict=True))


def _mul(a: Mat, b: Mat) -> Mat:
    bt = _t(b)
    return tuple(
        tuple(math.fsum(x * y for x, y in zip(row, col, strict=True)) for col in bt) for row in a
    )


def _mulv(a: Mat, v: Vec) -> Vec:
    return tuple(math.fsum(x * y for x, y in zip(row, v, strict=True)) for row in a)


def _add(a: Mat, b: Mat) -> Mat:
    return tuple(
        tuple(x + y for x, y in zip(ra, rb, strict=True)) for ra, rb in zip(a, b, strict=True)
    )


def _diag(v: Sequence[float]) -> Mat:
    return tuple(tuple(v[i] if i == j else 0.0 for j in range(len(v))) for i in range(len(v)))


def _inv2(m: Mat) -> Mat:
    (a, b), (c, d) = m
    det = a * d - b * c
    if not det > 0:  # S is symmetric positive definite when R is
        raise ZeroDivisionError("innovation covariance is singular")
    return ((d / det, -b / det), (-c / det, a / det))


@dataclass(frozen=True)
class Environment:
    """The load a replica ran under while the observations were taken."""

    arrival_rate: float
    """Requests per second reaching one replica."""
    input_tokens: float
    output_tokens: float
    max_batch_size: int
    max_queue_size: int | None = None
    """None → `max_batch_size · 10`."""

    def observe(self, x: Sequence[float]) -> Vec | None:
        """Model `[TTFT, ITL]` (ms) for state `x`, or None where the model is undefined."""
        try:
            model = QueueModel(
                ServiceParams(x[0], x[1], x[2]),
                RequestSize(self.input_tokens, self.output_tokens),
                self.max_batch_size,
                self.max_queue_size,
            )
            metrics = model.analyze(self.arrival_rate)
        except (ValueError, ZeroDivisionError, OverflowError):
            return None
        return (metrics.ttft, metrics.itl)


@dataclass(frozen=True)
class TunerConfig:
    error_level: float = DEFAULT_ERROR_LEVEL
    t_percentile: float = DEFAULT_T_PERCENTILE
    gamma_factor: float = DEFAULT_GAMMA_FACTOR
    percent_change: tuple[float, float, float] = (DEFAULT_PERCENT_CHANGE,) * 3
    """Expected relative change of α, β, γ per step (process noise)."""
    min_state: tuple[float, float, float] | None = None
    max_state: tuple[float, float, float] | None = None
    max_nis: float = DEFAULT_MAX_NIS
    epsilon: float = DEFAULT_EPSILON

    @property
    def noise_factor(self) -> float:
        """Variance of an observation relative to its square."""
        return (self.error_level / self.t_percentile) ** 2 / self.gamma_factor


@dataclass(frozen=True)
class FilterState:
    x: tuple[float, float, float]
    """[α, β, γ]."""
    p: Mat
    """3×3 estimate covariance."""

    @property
    def params(self) -> ServiceParams:
        return ServiceParams(*self.x)


@dataclass(frozen=True)
class TuneResult:
    state: FilterState
    """The new state when accepted, otherwise the state passed in."""
    accepted: bool
    nis: float
    """Normalised innovation squared; NaN when the step stopped before computing it."""
    innovation: Vec
    reason: str = ""
    """Why the update was rejected."""


def initial_state(
    params: ServiceParams,
    config: TunerConfig = TunerConfig(),
    spread: Sequence[float] | None = None,
) -> FilterState:
    """A filter start at `params` with standard deviation `spread_i · x_i` (default:
    the per-step percent change; pass more when the guess is rough)."""
    x = (params.alpha, params.beta, params.gamma)
    s = config.percent_change if spread is None else spread
    return FilterState(x, _diag([(si * xi) ** 2 for si, xi in zip(s, x, strict=True)]))


def bounds_from_factors(
    params: ServiceParams,
    min_factor: float = DEFAULT_MIN_STATE_FACTOR,
    max_factor: float = DEFAULT_MAX_STATE_FACTOR,
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """State bounds as multiples of a reference (e.g. the initial guess)."""
    x = (params.alpha, params.beta, params.gamma)
    lo = (x[0] * min_factor, x[1] * min_factor, x[2] * min_factor)
    hi = (x[0] * max_factor, x[1] * max_factor, x[2] * max_factor)
    return lo, hi


def jacobian(env: Environment, x: Vec, h0: Vec, epsilon: float) -> Mat:
    """2×3 derivative of the observation function: central differences, forward ones
    where a parameter is within `epsilon` of 0; a column where the model is undefined
    is left 0 (that parameter is then not corrected this step)."""
    cols: list[Vec] = []
    for i in range(len(x)):
        up = tuple(v + epsilon if j == i else v for j, v in enumerate(x))
        hi = env.observe(up)
        if x[i] > epsilon:
            down = tuple(v - epsilon if j == i else v for j, v in enumerate(x))
            lo, width = env.observe(down), 2 * epsilon
        else:
            lo, width = h0, epsilon
        if hi is None or lo is None:
            cols.append((0.0, 0.0))
        else:
            cols.append(tuple((a - b) / width for a, b in zip(hi, lo, strict=True)))
    return _t(tuple(cols))


def _clip(x: Vec, config: TunerConfig) -> Vec:
    lo, hi = config.min_state, config.max_state
    out = list(x)
    for i in range(len(out)):
        if lo is not None:
            out[i] = max(out[i], lo[i])
        if hi is not None:
            out[i] = min(out[i], hi[i])
    return tuple(out)


def tune(
    state: FilterState,
    env: Environment,
    observed: Sequence[float],
    config: TunerConfig = TunerConfig(),
) -> TuneResult:
    """One predict + update step with measured `[TTFT, ITL]` (ms) under `env`."""
    z = (float(observed[0]), float(observed[1]))
    if not all(math.isfinite(v) and v > 0 for v in z):
        raise ValueError(f"observations must be finite and > 0, got {z}")
    x = state.x
    p = _add(state.p, _diag([(c * v) ** 2 for c, v in zip(config.percent_change, x, strict=True)]))
    h = env.observe(x)
    if h is None:
        return TuneResult(state, False, math.nan, (), "model undefined at the current state")
    y = (z[0] - h[0], z[1] - h[1])
    hm = jacobian(env, x, h, config.epsilon)
    r = _diag([config.noise_factor * v**2 for v in z])
    pht = _mul(p, _t(hm))
    s_inv = _inv2(_add(_mul(hm, pht), r))
    k = _mul(pht, s_inv)
    nis = math.fsum(a * b for a, b in zip(y, _mulv(s_inv, y), strict=True))
    new_x = _clip(tuple(a + b for a, b in zip(x, _mulv(k, y), strict=True)), config)
    if any(v <= 0 for v in new_x):
        return TuneResult(state, False, nis, y, "parameters must stay positive")
    if nis > config.max_nis:
        return TuneResult(state, False, nis, y, f"NIS {nis:.3f} above {config.max_nis}")
    ikh = _add(_diag([1.0, 1.0, 1.0]), tuple(tuple(-v for v in row) for row in _mul(k, hm)))
    new_p = _add(_mul(_mul(ikh, p), _t(ikh)), _mul(_mul(k, r), _t(k)))
    sym = tuple(tuple((new_p[i][j] + new_p[j][i]) / 2 for j in range(3)) for i in range(3))
    return TuneResult(FilterState((new_x[0], new_x[1], new_x[2]), sym), True, nis, y)
