"""`pyllmd calibrate`: runs are rebuilt as inference-perf sends them, replayed, scored and fitted;
the command prints the errors and writes a profile the simulator reads; the fidelity page is
what the package renders from the committed results."""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from tools import fidelity as fidelity_tool

from pyllmd.cli import main as cli_main
from pyllmd.sim.batch.prior import PRIOR, prior_profile
from pyllmd.sim.batch.steptime import Profile
from pyllmd.sim.config.profile import load_profile
from pyllmd.simulate import calibrate as ff
from pyllmd.simulate.deployment import build_engine_spec, variant_from_args
from pyllmd.simulate.fidelity import BEGIN, END, render

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


def test_calibrate_prints_errors_and_medians_and_writes_a_profile_the_simulator_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = write_runs(
        tmp_path,
        [
            ROW.format(itl=9, e2e=453, p90=500, plen=575.0, olen=48),
            ROW.format(itl=9, e2e=453, p90=500, plen=575.0, olen=48).replace("TR:a-", "TR:b-"),
        ],
    )
    out = tmp_path / "profile.yaml"
    results = tmp_path / "results.json"
    argv = ["calibrate", "--runs", str(runs), "--output", str(out), "--iterations", "1"]
    argv += ["--fit-seconds", "5", "--results", str(results)]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "a-llama" in printed and "b-llama" in printed
    assert "median |err|" in printed and f"wrote {out}" in printed
    text = out.read_text()
    assert text.startswith("mfu_linear: ")  # YAML, not JSON
    fitted = load_profile(out)
    assert fitted != Profile()
    # `--latency-profile` (a stack file's args, or pyllmd sim's flag) reads what was written
    variant = variant_from_args("v", ["--model", "meta-llama/Llama-3.1-8B-Instruct",
                                      "--latency-profile", str(out)])  # fmt: skip
    assert build_engine_spec(variant).profile == fitted
    # the results record renders into the fidelity page's tables
    import json

    md = render(json.loads(results.read_text()))
    assert "| a-llama | H100 | 1 |" in md and "### Median |error| per GPU" in md


@pytest.mark.parametrize(
    ("row", "extra", "message"),
    [
        (None, [], "--runs {runs}: missing column(s) e2e_mean_ms"),
        (ROW.format(itl=9, e2e=453, p90=500, plen=575.0, olen=48).replace(",1,BF16", ",x,BF16"),
         [], "--runs {runs}:2: tp: not a number: 'x'"),
        (ROW.format(itl=9, e2e=453, p90=500, plen=575.0, olen=48), ["--holdout", "all"],
         "--holdout: must be one of none, model, gpu, both, got 'all'"),
        (ROW.format(itl=9, e2e=453, p90=500, plen=575.0, olen=48), ["--prior", "nope.yaml"],
         "--prior nope.yaml: No such file or directory"),
        (ROW.format(itl=9, e2e=453, p90=500, plen=575.0, olen=48), ["--profile", "nope.yaml"],
         "--profile nope.yaml: No such file or directory"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_1(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    row: str | None,
    extra: list[str],
    message: str,
) -> None:
    if row is None:
        runs = tmp_path / "runs.csv"
        runs.write_text(HEADER.replace(",e2e_mean_ms", "") + "\n")
    else:
        runs = write_runs(tmp_path, [row])
    argv = ["calibrate", "--runs", str(runs), "--output", str(tmp_path / "p.yaml"), *extra]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert err == f"pyllmd calibrate: error: {message.format(runs=runs)}\n"
    assert not (tmp_path / "p.yaml").exists()


def test_the_fidelity_page_is_what_the_package_renders_from_the_committed_results() -> None:
    page = fidelity_tool.PAGE.read_text(encoding="utf-8")
    assert page.count(BEGIN) == 1 and page.count(END) == 1
    assert fidelity_tool.rendered_page() == page, "stale: run make fidelity"
    import json

    record = json.loads(fidelity_tool.RESULTS.read_text(encoding="utf-8"))
    block = page.split(BEGIN, 1)[1].split(END, 1)[0]
    kinds = {r["kind"] for r in record["runs"]}
    assert kinds == {"fitted", "offload", "overloaded"}
    for r in record["runs"]:  # every run is in the page, once per table it belongs to
        assert f"| {r['run_id'].split(':', 1)[-1]} | {r['gpu']} | {r['tp']} |" in block
    assert set(record["holdout"]) == {"leave one model out", "leave one GPU out"}


def _truth_run(tmp_path: Path, truth: Profile, tp: str = "1") -> ff.Run:
    """A run whose measurements are what `truth` gives (a fit should find it again)."""
    (run,) = ff.load_runs(
        write_runs(
            tmp_path, [ROW.format(itl=9, e2e=453, p90=500, plen=575.0, olen=48).replace(
                ",H100,1,", f",H100,{tp},")]
        )
    )  # fmt: skip
    v = ff.replay(run, truth).values
    return replace(run, measured={m: v[m] for m in ff.METRICS})


def test_a_fit_starts_from_the_physical_prior_and_leaves_what_the_runs_cannot_identify(
    tmp_path: Path,
) -> None:
    prior = prior_profile()
    # every fitted coefficient has a documented prior inside the fit's bounds
    for name, (lo, hi) in ff.FIT_BOUNDS.items():
        term = PRIOR[name]
        assert lo <= term.value <= hi and term.spread > 0 and term.reason
        assert getattr(prior, name) == term.value
    truth = replace(prior, step_s=3 * prior.step_s, first_token_s=2 * prior.first_token_s)
    run = _truth_run(tmp_path, truth)
    before, _ = ff.evaluate([run], prior, None, "repeat")
    fitted = ff.fit_map([run], prior, None, "repeat", iterations=4, log=lambda s: None)
    after, _ = ff.evaluate([run], fitted, None, "repeat")
    assert after < before / 2
    # a single-GPU run says nothing about all-reduces: the fit leaves them at the prior
    assert fitted.allreduce_s == pytest.approx(prior.allreduce_s, rel=1e-9)
    # one run leaves most coefficients poorly determined: the prior keeps them closer to it
    # than the same fit without it
    free = ff.fit_lm([run], prior, None, "repeat", iterations=4, log=lambda s: None)
    assert sum(abs(math.log(getattr(fitted, n) / getattr(prior, n))) for n in ff.FIT_BOUNDS) <= sum(
        abs(math.log(getattr(free, n) / getattr(prior, n))) for n in ff.FIT_BOUNDS
    )


def test_a_profile_written_before_the_sampler_term_can_be_the_prior(tmp_path: Path) -> None:
    # such a profile has sampler_passes 0 (the term off): the fit starts it at its lower bound
    old = replace(prior_profile(), sampler_passes=0.0)
    lo, _ = ff.FIT_BOUNDS["sampler_passes"]
    assert ff.log_in_bounds("sampler_passes", 0.0) == math.log(lo)
    run = _truth_run(tmp_path, prior_profile())
    fitted = ff.fit_map([run], old, None, "repeat", iterations=1, log=lambda s: None)
    assert lo <= fitted.sampler_passes < prior_profile().sampler_passes


def test_hold_out_refits_start_from_the_prior_not_from_the_profile_being_scored(
    tmp_path: Path,
) -> None:
    prior = prior_profile()
    runs = [
        _truth_run(tmp_path, replace(prior, step_s=2 * prior.step_s)),
        replace(
            _truth_run(tmp_path, replace(prior, step_s=2 * prior.step_s)),
            run_id="TR:b-mistral",
            model="mistralai/Mistral-Nemo-Instruct-2407",
        ),
    ]
    settings = ff.Settings(iterations=0, holdout=("model",), fit_seconds=10.0, prior=prior)
    # the profile scored (the shipped one, here two different ones) does not leak into the
    # hold-out refits: their predictions are the same
    _, a = ff.calibrate(runs, prior, settings, log=lambda s: None)
    _, b = ff.calibrate(runs, replace(prior, step_s=0.02), settings, log=lambda s: None)
    assert a["runs"] != b["runs"]
    assert a["holdout"] == b["holdout"]
    assert a["settings"]["prior"] == asdict(prior)  # type: ignore[index]


def test_replays_generate_the_requested_tokens_and_count_the_measured_ones(
    tmp_path: Path,
) -> None:
    # ignore_eos: the server generates max_tokens = output_len; the client counted 40
    (run,) = ff.load_runs(
        write_runs(tmp_path, [ROW.format(itl=9, e2e=453, p90=500, plen=575.0, olen=40)])
    )
    sent = ff.build_requests(run, Profile())
    assert {s.request.output_len for s in sent} == {48}
    v = ff.replay(run, Profile()).values
    assert v["itl_mean"] == pytest.approx((v["e2e_mean"] - v["ttft_mean"]) / 39.0)
