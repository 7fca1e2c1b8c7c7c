"""Step time: the roofline's shape, CUDA-graph padding, TP communication, MoE, profiles."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pyllmd.core.errors import ConfigError
from pyllmd.sim.batch.architecture import get_architecture
from pyllmd.sim.batch.hardware import get_accelerator
from pyllmd.sim.batch.steptime import (
    Chunk,
    Profile,
    StepModel,
    cuda_graph_sizes,
    default_profile,
    step_time,
)

LLAMA7 = get_architecture("meta-llama/Llama-2-7b-hf")
H100 = get_accelerator("H100")
MAX = replace(Profile(), roofline_p=0.0)


def test_decode_at_batch_one_is_weight_bandwidth_bound() -> None:
    p = replace(MAX, step_s=0.0, seq_s=0.0)
    t = step_time([], [500], LLAMA7, H100, 1, p)
    weights = LLAMA7.always_read_bytes(1) / (p.mbu_weights * H100.hbm_bytes_per_s)
    kv = 501 * LLAMA7.kv_bytes_per_token(1) / (p.mbu_kv * H100.hbm_bytes_per_s)
    assert t == pytest.approx(weights + kv, rel=1e-9)


def test_a_long_prefill_is_compute_bound_and_grows_with_its_context() -> None:
    p = replace(MAX, step_s=0.0, seq_s=0.0, layer_s=0.0)
    t = step_time([Chunk(2048, 0)], [], LLAMA7, H100, 1, p)
    linear = 2048 * LLAMA7.linear_flops_per_token(1) / (p.mfu_linear * H100.flops)
    assert t > linear  # plus attention
    assert step_time([Chunk(2048, 1000)], [], LLAMA7, H100, 1, p) > t


def test_more_decodes_take_longer_and_smooth_roofline_is_above_max() -> None:
    times = [step_time([], [600] * n, LLAMA7, H100, 1, Profile()) for n in (1, 8, 64, 128)]
    assert times == sorted(times) and times[0] < times[-1]
    smooth = step_time([Chunk(300, 0)], [], LLAMA7, H100, 1, replace(MAX, roofline_p=2.0))
    assert smooth > step_time([Chunk(300, 0)], [], LLAMA7, H100, 1, MAX)


def test_decode_only_steps_are_padded_to_cuda_graph_sizes() -> None:
    sizes = cuda_graph_sizes(128)
    assert sizes[:5] == [1, 2, 4, 8, 16] and sizes[-1] == 256
    model = StepModel(LLAMA7, H100, 1, Profile(), max_num_seqs=128)
    assert model.padded(9) == 16 and model.padded(16) == 16 and model.padded(300) == 300
    # a compute-heavy profile makes padding visible: 9 and 16 sequences cost the same linear work
    p = replace(MAX, mfu_linear=0.001, step_s=0.0, seq_s=0.0)
    m = StepModel(LLAMA7, H100, 1, p, max_num_seqs=128)
    assert m.time(9, 0, 0, 9, True) == pytest.approx(m.time(16, 0, 0, 9, True))
    assert m.time(9, 0, 0, 9, False) < m.time(16, 0, 0, 9, False)


def test_tensor_parallelism_adds_all_reduces_and_splits_the_work() -> None:
    arch = get_architecture("meta-llama/Llama-3.1-70B-Instruct")
    p = replace(Profile(), allreduce_s=1e-5)
    t2 = StepModel(arch, H100, 2, p).step_time([], [500] * 32)
    t4 = StepModel(arch, H100, 4, p).step_time([], [500] * 32)
    assert t4 < t2
    no_comm = StepModel(arch, H100, 4, replace(p, allreduce_s=0.0)).step_time([], [500] * 32)
    assert t4 - no_comm == pytest.approx((2 * 80 + 1) * 1e-5 * 3, rel=0.01)  # 3 other ranks


def test_the_sampler_costs_each_sequence_passes_over_its_logits_whatever_the_tp() -> None:
    arch = get_architecture("meta-llama/Llama-3.1-70B-Instruct")  # vocabulary 128,256
    row = 128_256 * 4.0 / H100.hbm_bytes_per_s  # one pass over a sequence's fp32 logits
    for tp in (1, 4):
        off = StepModel(arch, H100, tp, MAX)
        on = StepModel(arch, H100, tp, replace(MAX, sampler_passes=50.0))
        extra = on.step_time([], [500] * 32) - off.step_time([], [500] * 32)
        # every rank samples the whole vocabulary: the cost does not shrink with TP
        assert extra == pytest.approx(32 * 50.0 * row, rel=1e-9)
    # a smaller vocabulary (Llama-2: 32,000) costs proportionally less
    small = StepModel(LLAMA7, H100, 1, replace(MAX, sampler_passes=50.0))
    assert small.step_time([], [500]) - StepModel(LLAMA7, H100, 1, MAX).step_time(
        [], [500]
    ) == pytest.approx(50.0 * 32_000 * 4.0 / H100.hbm_bytes_per_s, rel=1e-9)


def test_moe_reads_more_experts_as_the_batch_grows() -> None:
    arch = get_architecture("mistralai/Mixtral-8x7B-v0.1")
    p = replace(MAX, step_s=0.0, seq_s=0.0, mbu_kv=1e9)  # KV reads free: weights only
    m = StepModel(arch, H100, 2, replace(p, allreduce_s=0.0, link_efficiency=1e9))
    one, eight = m.time(1, 1, 1, 1, True), m.time(8, 8, 8, 8, True)
    assert eight > one * 1.5  # 2 experts of 8 per layer at batch 1, nearly all 8 at batch 8


def test_profile_round_trips_and_rejects_bad_keys(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text(Profile(step_s=0.003).to_json())
    assert Profile.load(f).step_s == 0.003
    f.write_text(json.dumps({"step_z": 1}))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) step_z"):
        Profile.load(f)
    f.write_text(json.dumps({"step_s": -1}))
    with pytest.raises(ConfigError, match=r"step_s must be a number >= 0"):
        Profile.load(f)
    assert isinstance(default_profile(), Profile)


def test_profile_reads_yaml_as_calibrate_writes_it_and_as_a_user_writes_it(tmp_path: Path) -> None:
    from pyllmd.sim.config.profile import load_profile, profile_yaml

    f = tmp_path / "p.yaml"
    f.write_text(profile_yaml(Profile(seq_s=2e-5, step_s=0.003)))
    assert load_profile(f) == Profile(seq_s=2e-5, step_s=0.003)
    f.write_text("# hand-written\nseq_s: 1e-5\nstep_s: 0.004\n")  # YAML 1.1: 1e-5 is a string
    assert (load_profile(f).seq_s, load_profile(f).step_s) == (1e-5, 0.004)
    f.write_text("step_s: .nan\n")
    with pytest.raises(ConfigError, match=r"step_s must be a number >= 0"):
        load_profile(f)
    f.write_text("step_s: [1\n")
    with pytest.raises(ConfigError, match=r"^--latency-profile .*p.yaml: not YAML or JSON"):
        load_profile(f)


@pytest.mark.parametrize(
    ("model", "tp", "power"),
    [
        ("meta-llama/Llama-2-7b-hf", 1, 0.0),
        ("meta-llama/Llama-2-7b-hf", 2, 0.0),
        ("meta-llama/Llama-2-7b-hf", 1, 3.0),
        ("mistralai/Mixtral-8x7B-v0.1", 2, 0.0),
    ],
)
def test_the_decode_fast_path_gives_the_step_time_to_the_last_bit(
    model: str, tp: int, power: float
) -> None:
    prof = replace(Profile(), roofline_p=power, sampler_passes=80.0)
    m = StepModel(get_architecture(model), H100, tp, prof, 256)
    for seqs in (1, 3, 8, 100, 255, 256, 300):
        decode = m.decode(seqs)
        for pairs in (seqs, 7 * seqs + 13, 1_000_003, 4_000_000):
            assert decode(pairs) == m.time(seqs, pairs, pairs, seqs, True)
