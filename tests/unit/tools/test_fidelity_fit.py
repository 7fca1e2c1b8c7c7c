"""tools/fidelity_fit.py: runs are rebuilt as inference-perf sends them, replayed and scored."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from tools import fidelity_fit as ff

from pyllmd.sim.batch.steptime import Profile

HEADER = (
    "run_id,model,gpu,tp,precision,workload,max_num_seqs,max_num_batched_tokens,max_model_len,"
    "gpu_memory_utilization,cpu_offload,total_gpu_kv_blocks,cpu_kv_blocks,stage0_rate_rps,"
    "stage0_duration_s,stage1_rate_rps,stage1_duration_s,system_prompt_len,question_len,"
    "output_len,num_unique_system_prompts,num_users_per_system_prompt,enable_multi_turn_chat,"
    "ttft_mean_ms,ttft_p90_ms,ttft_p99_ms,itl_mean_ms,e2e_mean_ms,e2e_p90_ms,e2e_p99_ms,"
    "ttft_p50_ms,tpot_mean_ms,n_success,n_fail,prompt_len_mean,output_len_mean\n"
)


def write_runs(tmp_path: Path, rows: list[str]) -> Path:
    f = tmp_path / "runs.csv"
    f.write_text(HEADER + "".join(r + "\n" for r in rows))
    return f


ROW = (
    "TR:a-llama,meta-llama/Llama-3.1-8B-Instruct,H100,1,BF16,general,128,2048,4096,,,,,"
    "2.0,20,4.0,10,100,447,48,3,2,true,30,35,40,{itl},{e2e},{p90},600,,,,,{plen},{olen}"
)


def test_runs_load_with_stages_shape_and_a_derived_output_length(tmp_path: Path) -> None:
    f = write_runs(
        tmp_path,
        [
            ROW.format(itl=9.0, e2e=453.0, p90=500, plen=575.0, olen=48),
            ROW.format(itl=9.0, e2e=453.0, p90=500, plen=575.0, olen=""),
        ],
    )
    a, b = ff.load_runs(f)
    assert a.stages == ((2.0, 20.0), (4.0, 10.0)) and a.gpu_memory_utilization == 0.9
    assert (a.groups, a.users_per_group, a.output_len_mean) == (3, 2, 48.0)
    assert b.output_len_mean == pytest.approx((453.0 - 30.0) / 9.0 + 1.0)  # from the ITL formula


def test_requests_follow_the_stages_users_and_shared_system_prompts(tmp_path: Path) -> None:
    (run,) = ff.load_runs(
        write_runs(tmp_path, [ROW.format(itl=9, e2e=453, p90=500, plen=575.0, olen=48)])
    )
    sent = ff.build_requests(run, Profile(first_token_s=0.01), reuse="repeat")
    assert len(sent) == 2 * 20 + 4 * 10
    assert [s.stage for s in sent].count(1) == 40
    assert sent[1].send == pytest.approx(0.5) and sent[40].send == pytest.approx(20.0)
    assert sent[0].request.arrival == pytest.approx(0.01)  # the first-token overhead
    assert all(s.request.prompt_len == 575 and s.request.output_len == 48 for s in sent)
    users = 6
    # repeat: a user's rounds send the same prompt; every user shares its group's system prompt
    assert sent[0].request.hashes == sent[users].request.hashes
    heads = {s.request.hashes[:6] for s in sent}
    assert len(heads) == 3  # 100 system tokens = 6 full blocks, one prefix per group
    fresh = ff.build_requests(run, Profile(), reuse="fresh")
    assert fresh[0].request.hashes != fresh[users].request.hashes
    assert fresh[0].request.hashes[:6] == fresh[users].request.hashes[:6]


def test_a_replay_reports_inference_perf_metrics_and_the_fit_lowers_the_loss(
    tmp_path: Path,
) -> None:
    truth = replace(Profile(), step_s=0.004, first_token_s=0.02)
    (run,) = ff.load_runs(
        write_runs(tmp_path, [ROW.format(itl=9, e2e=453, p90=500, plen=575.0, olen=48)])
    )
    rep = ff.replay(run, truth)
    assert rep.n_success == 80 and rep.n_fail == 0
    v = rep.values
    assert v["ttft_mean"] > 20.0 and v["e2e_mean"] > v["ttft_mean"]
    assert v["itl_mean"] == pytest.approx((v["e2e_mean"] - v["ttft_mean"]) / 47.0)
    # measured = what the truth profile gives: a fit from elsewhere gets closer to it
    measured = {
        "ttft_mean": v["ttft_mean"],
        "e2e_mean": v["e2e_mean"],
        "itl_mean": v["itl_mean"],
        "e2e_p90": v["e2e_p90"],
    }
    target = replace(run, measured=measured)
    start = replace(truth, step_s=0.012, first_token_s=0.005)
    before, _ = ff.evaluate([target], start, None, "repeat")
    fitted = ff.fit([target], start, None, "repeat", passes=2, log=lambda s: None)
    after, _ = ff.evaluate([target], fitted, None, "repeat")
    assert after < before / 2
    moved = ff.fit_lm([target], start, None, "repeat", iterations=2, log=lambda s: None)
    assert ff.evaluate([target], moved, None, "repeat")[0] < before / 2


def test_the_linear_solver() -> None:
    assert ff._solve([[2.0, 1.0], [1.0, 3.0]], [3.0, 5.0]) == pytest.approx([0.8, 1.4])
