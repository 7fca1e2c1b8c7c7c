"""Latency formulas (spec §3.2-3.5) as a user observes them: TTFT and inter-token gaps."""

from __future__ import annotations

import random

import pytest

from pyllmd.core.errors import ConfigError
from pyllmd.sim.engine.latency import (
    CALCULATORS,
    ConstantCalculator,
    DefaultCalculator,
    LatencyParams,
    PerTokenCalculator,
    jitter,
    load_factor,
    make_calculator,
)

RNG = random.Random(0)


def test_sim_acc_27_ttft_plus_inter_token_latency() -> None:
    calc = make_calculator("", LatencyParams(ttft=0.5, itl=0.1))
    total = calc.ttft(10, 0, False, 1, RNG) + sum(calc.itl(1, RNG) for _ in range(4))
    assert total == pytest.approx(0.9)


def test_sim_acc_28_prefill_formula() -> None:
    calc = make_calculator("", LatencyParams(prefill_overhead=0.1, prefill_time_per_token=0.01))
    assert calc.ttft(20, 0, False, 1, RNG) == pytest.approx(0.3)


def test_prefill_formula_subtracts_cached_tokens() -> None:
    calc = make_calculator("", LatencyParams(prefill_overhead=0.1, prefill_time_per_token=0.01))
    assert calc.ttft(20, 16, False, 1, RNG) == pytest.approx(0.14)


def test_sim_acc_29_remote_prefill_ttft() -> None:
    params = LatencyParams(ttft=1.0, kv_transfer_latency=0.05)
    assert make_calculator("", params).ttft(100, 0, True, 1, RNG) == pytest.approx(0.05)
    assert make_calculator("constant", params).ttft(100, 0, True, 1, RNG) == pytest.approx(0.05)


def test_remote_prefill_per_token_when_constant_transfer_unset() -> None:
    params = LatencyParams(ttft=1.0, kv_transfer_time_per_token=0.002, time_factor_under_load=3)
    # No load factor on the P/D path, even with every slot busy.
    assert make_calculator("", params).ttft(100, 0, True, 5, RNG) == pytest.approx(0.2)
    assert make_calculator("per-token", params).ttft(100, 0, True, 5, RNG) == pytest.approx(0.2)


def test_sim_acc_30_per_token_ignores_ttft() -> None:
    calc = make_calculator("per-token", LatencyParams(ttft=1.0, prefill_overhead=0.02))
    assert calc.ttft(3, 0, False, 1, RNG) == pytest.approx(0.02)


def test_default_uses_constant_ttft_when_set_and_constant_ignores_prefill() -> None:
    params = LatencyParams(ttft=0.25, prefill_overhead=0.1, prefill_time_per_token=0.01)
    assert make_calculator("", params).ttft(20, 0, False, 1, RNG) == pytest.approx(0.25)
    assert make_calculator("constant", params).ttft(20, 0, False, 1, RNG) == pytest.approx(0.25)


def test_constant_calculator_with_zero_ttft_is_zero() -> None:
    calc = make_calculator("constant", LatencyParams(prefill_overhead=0.1))
    assert calc.ttft(20, 0, False, 1, RNG) == 0.0


def test_sim_acc_31_load_factor() -> None:
    params = LatencyParams(ttft=0.1, time_factor_under_load=2.0, max_num_seqs=5)
    calc = make_calculator("", params)
    ttfts = [calc.ttft(10, 0, False, n, RNG) for n in range(1, 6)]
    assert ttfts == pytest.approx([0.1, 0.125, 0.15, 0.175, 0.2])
    assert calc.itl(5, RNG) == 0.0  # itl 0 stays 0 under load
    assert make_calculator("", LatencyParams(itl=0.01, time_factor_under_load=2.0)).itl(
        5, RNG
    ) == pytest.approx(0.02)


def test_load_factor_edges() -> None:
    assert load_factor(1, 5, 3.0) == 1.0
    assert load_factor(5, 5, 3.0) == 3.0
    assert load_factor(10, 1, 3.0) == 1.0
    assert load_factor(3, 0, 3.0) == 1.0


def test_load_factor_scales_prefill_overhead_and_per_token_time() -> None:
    params = LatencyParams(
        prefill_overhead=0.1, prefill_time_per_token=0.01, time_factor_under_load=2.0
    )
    assert make_calculator("", params).ttft(20, 0, False, 5, RNG) == pytest.approx(0.6)


def test_jitter_zero_sd_is_mean() -> None:
    assert jitter(random.Random(1), 0.123, 0.0) == 0.123


def test_jitter_stays_within_bounds_and_keeps_sub_millisecond_values() -> None:
    rng = random.Random(2)
    values = [jitter(rng, 0.0004, 0.0003) for _ in range(5000)]
    assert all(0.3 * 0.0004 <= v <= 1.7 * 0.0004 for v in values)
    assert min(values) == pytest.approx(0.3 * 0.0004)  # clamp is reached
    assert max(values) == pytest.approx(1.7 * 0.0004)
    assert len(set(values)) > 100  # not truncated to whole milliseconds


def test_jitter_mean_is_close_to_mean() -> None:
    rng = random.Random(3)
    values = [jitter(rng, 0.1, 0.02) for _ in range(20000)]
    assert sum(values) / len(values) == pytest.approx(0.1, rel=0.01)


def test_same_seed_same_latencies() -> None:
    params = LatencyParams(ttft=0.2, ttft_std_dev=0.05, itl=0.02, itl_std_dev=0.005)
    calc = make_calculator("", params)

    def run(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [calc.ttft(10, 0, False, 2, rng)] + [calc.itl(2, rng) for _ in range(20)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_registry_and_unknown_name() -> None:
    assert CALCULATORS == {
        "": DefaultCalculator,
        "constant": ConstantCalculator,
        "per-token": PerTokenCalculator,
        "batch": DefaultCalculator,  # the step loop times the tokens; TTFT = P/D KV transfer
    }
    with pytest.raises(ConfigError) as err:
        make_calculator("fancy", LatencyParams())
    assert str(err.value) == (
        "unknown latency-calculator fancy, supported calculators are: constant and per-token"
    )


def test_params_from_config() -> None:
    from pyllmd.sim.config import SimConfig

    cfg = SimConfig.model_validate(
        {
            "model": "m",
            "time-to-first-token": 0.5,
            "inter-token-latency": 0.1,
            "prefill-overhead": 0.02,
            "kv-cache-transfer-time-per-token": 0.001,
            "time-factor-under-load": 2.0,
            "max-num-seqs": 7,
        }
    )
    params = LatencyParams.from_config(cfg)
    assert params.ttft == 0.5
    assert params.itl == 0.1
    assert params.prefill_overhead == 0.02
    assert params.kv_transfer_time_per_token == 0.001
    assert params.time_factor_under_load == 2.0
    assert params.max_num_seqs == 7
