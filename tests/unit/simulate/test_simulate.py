"""`pyllmd simulate` as a user runs it: reports, CSV, plots, same seed → same report, and
one error line for bad input."""

from __future__ import annotations

import csv
import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyllmd.cli import main as cli_main
from pyllmd.core.errors import ConfigError
from pyllmd.sim.config import load_config

HERE = Path(__file__).parent / "workloads"
STACK = HERE / "stack.yaml"
MULTI_TURN = HERE / "shared_prefix_multi_turn.yaml"
POISSON = HERE / "random_poisson.yaml"
CONCURRENT = HERE / "concurrent_synthetic.yaml"
SWEEP = HERE / "sweep_random.yaml"
LATENCIES = (
    "request_latency",
    "time_to_first_token",
    "time_per_output_token",
    "inter_token_latency",
    "normalized_time_per_output_token",
)


def simulate(
    tmp: Path, workload: Path, seed: int = 0, stack: Path = STACK, name: str = "out"
) -> Path:
    out = tmp / name
    assert (
        cli_main(
            [
                "simulate",
                "--stack",
                str(stack),
                "--workload",
                str(workload),
                "--output",
                str(out),
                "--seed",
                str(seed),
            ]
        )
        == 0
    )
    return out


def rows(out: Path) -> list[dict[str, str]]:
    with (out / "per_request.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def report(out: Path, name: str = "summary") -> dict:
    return json.loads((out / f"{name}_lifecycle_metrics.json").read_text(encoding="utf-8"))


def error_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert cli_main(["simulate", *argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("pyllmd simulate: error: ")
    return err.strip()


@pytest.mark.parametrize("workload", [MULTI_TURN, POISSON, CONCURRENT, SWEEP], ids=lambda p: p.stem)
def test_the_same_seed_gives_identical_reports(tmp_path: Path, workload: Path) -> None:
    a = simulate(tmp_path, workload, seed=7, name="a")
    b = simulate(tmp_path, workload, seed=7, name="b")
    names = sorted(p.name for p in a.iterdir() if p.suffix in (".json", ".csv"))
    assert names == sorted(p.name for p in b.iterdir() if p.suffix in (".json", ".csv"))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_another_seed_gives_other_requests(tmp_path: Path) -> None:
    a = simulate(tmp_path, POISSON, seed=1, name="a")
    b = simulate(tmp_path, POISSON, seed=2, name="b")
    assert (a / "per_request.csv").read_bytes() != (b / "per_request.csv").read_bytes()


def test_reports_have_inference_perf_fields_in_seconds(tmp_path: Path) -> None:
    out = simulate(tmp_path, MULTI_TURN)
    summary = report(out)
    assert set(summary) >= {"load_summary", "successes", "failures", "benchmark_time_seconds"}
    ok = summary["successes"]
    assert ok["count"] + summary["failures"]["count"] == summary["load_summary"]["count"] == 44
    for name in LATENCIES:
        dist = ok["latency"][name]
        assert {"mean", "median", "min", "max", "p90", "p99"} <= set(dist), name
        assert dist["min"] <= dist["median"] <= dist["p90"] <= dist["p99"] <= dist["max"]
    lat = ok["latency"]
    # seconds: a 20-token answer of a 7B model on an H100 takes a fraction of a second
    assert 0 < lat["time_to_first_token"]["mean"] < lat["request_latency"]["mean"] < 5
    assert 0 < lat["inter_token_latency"]["mean"] < 0.1
    assert ok["output_len"]["mean"] == 20
    assert ok["prompt_len"]["min"] == ok["prompt_len"]["max"] == 96 + 64
    assert ok["prompt_tokens"]["cached"] > 0  # later rounds and other users hit the cache
    assert ok["throughput"]["requests_per_sec"] > 0
    assert ok["throughput"]["output_tokens_per_sec"] == pytest.approx(
        ok["output_tokens"]["total"] / summary["benchmark_time_seconds"]
    )
    # TPOT of one request: (last token − first token) / (output − 1); ITL averages the gaps
    assert lat["time_per_output_token"]["mean"] == pytest.approx(
        lat["inter_token_latency"]["mean"], rel=0.05
    )
    for i, (rate, count) in enumerate([(4, 20), (8, 24)]):
        stage = report(out, f"stage_{i}")
        assert stage["load_summary"]["requested_rate"] == rate
        assert stage["load_summary"]["count"] == count
        assert stage["load_summary"]["achieved_rate"] > 0


def test_multi_turn_rounds_of_a_user_go_one_after_another(tmp_path: Path) -> None:
    out = simulate(tmp_path, MULTI_TURN)
    by_user: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows(out):
        by_user[row["user"]].append(row)
    assert len(by_user) == 6
    for user_rows in by_user.values():
        user_rows.sort(key=lambda r: float(r["send_s"]))
        for before, after in zip(user_rows, user_rows[1:], strict=False):
            ended = float(before["send_s"]) + float(before["e2e_s"])
            assert float(after["send_s"]) >= ended - 1e-9
            # the next round sends the same prompt: cached up to its last block
            assert after["prompt_len"] == before["prompt_len"]
            if after["pod"] == before["pod"]:
                assert int(after["cached_tokens"]) == (int(after["prompt_len"]) - 1) // 16 * 16


def test_requests_go_round_robin_over_the_replicas(tmp_path: Path) -> None:
    out = simulate(tmp_path, POISSON)
    pods = [r["pod"] for r in sorted(rows(out), key=lambda r: int(r["index"]))]
    assert pods[:4] == ["llama-0", "llama-1", "llama-0", "llama-1"]


def test_a_concurrent_stage_keeps_its_concurrency_level(tmp_path: Path) -> None:
    out = simulate(tmp_path, CONCURRENT)
    all_rows = rows(out)
    for stage, (count, level) in enumerate([(24, 4), (16, 8)]):
        mine = [r for r in all_rows if int(r["stage"]) == stage]
        assert len(mine) == count
        events = []
        for r in mine:
            start = float(r["send_s"])
            # the CSV rounds to microseconds: a request sent as another ends may look earlier
            events += [(start + float(r["e2e_s"]) - 1e-5, -1), (start, 1)]
        in_flight = peak = 0
        for _, delta in sorted(events):
            in_flight += delta
            peak = max(peak, in_flight)
        assert peak == level
        assert report(out, f"stage_{stage}")["load_summary"]["concurrency"] == level


def test_a_request_over_its_timeout_is_a_failure(tmp_path: Path) -> None:
    text = POISSON.read_text(encoding="utf-8").replace(
        "request_timeout: 60", "request_timeout: 0.05"
    )
    workload = tmp_path / "timeout.yaml"
    workload.write_text(text, encoding="utf-8")
    out = simulate(tmp_path, workload)
    failures = report(out)["failures"]
    assert failures["count"] > 0
    assert failures["by_label"]["Timeout"]["count"] == failures["count"]
    assert failures["request_latency"]["max"] == pytest.approx(0.05)


def test_plots_and_the_csv_are_written(tmp_path: Path) -> None:
    out = simulate(tmp_path, POISSON)
    for name in ("latency_over_time.png", "batch_size_over_time.png", "kv_usage_over_time.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    first = rows(out)[0]
    for column in ("arrival_s", "queue_s", "prefill_s", "decode_s", "preemptions", "cached_tokens"):
        assert first[column] != "", column


def test_unmodelled_parts_are_named_in_one_warning_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = MULTI_TURN.read_text(encoding="utf-8")
    text += "report:\n  request_lifecycle:\n    summary: true\n"
    text += "tokenizer:\n  pretrained_model_name_or_path: x\n"
    text = text.replace("  streaming: true\n", "  streaming: true\n  headers: {a: b}\n")
    workload = tmp_path / "extra.yaml"
    workload.write_text(text, encoding="utf-8")
    simulate(tmp_path, workload)
    lines = [line for line in capsys.readouterr().err.splitlines() if "not modelled" in line]
    assert len(lines) == 1
    for name in ("report", "tokenizer", "api.headers"):
        assert name in lines[0]


def test_a_workload_that_is_fully_modelled_warns_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    simulate(tmp_path, MULTI_TURN)
    assert "not modelled" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (
            ("type: constant", "type: trace_session_replay"),
            "load.type: 'trace_session_replay' is not modelled",
        ),
        (("type: constant", "type: trace_replay"), "load.trace: a map with the trace's file"),
        (("type: shared_prefix", "type: shareGPT"), "data.type: 'shareGPT' is not modelled"),
        (("rate: 4", "rate: -1"), "load.stages[0].rate: must be a number > 0"),
        (("stages:", "sweep: {type: log}\n  stages:"), "load.sweep.type: must be geometric"),
    ],
)
def test_a_bad_workload_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], words: str
) -> None:
    workload = tmp_path / "bad.yaml"
    workload.write_text(MULTI_TURN.read_text(encoding="utf-8").replace(*edit, 1), encoding="utf-8")
    line = error_of(
        capsys, "--stack", str(STACK), "--workload", str(workload), "--output", str(tmp_path / "o")
    )
    assert f"--workload: {workload}" in line
    assert words in line


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (('"32"', '"0"'), "max-num-seqs"),
        (("H100", "H200-NVL"), "--accelerator 'H200-NVL': unknown accelerator"),
        (("- batch", "- constant"), "--latency-calculator constant"),
        (("replicas: 2", "replicas: 0"), "deployment.replicas must be an integer >= 1"),
        (('"1024"', '"16"'), "--max-num-batched-tokens (16) must be greater than or equal"),
        (
            (
                "        - --accelerator",
                "        - --tensor-parallel-size\n        - '3'\n        - --accelerator",
            ),
            "Total number of attention heads (32) must be divisible by tensor parallel size (3).",
        ),
        (("Llama-2-7b-hf", "Llama-2-70b-hf"), "model meta-llama/Llama-2-70b-hf does not fit"),
        (
            ("Llama-2-7b-hf", "my-own-model"),
            "--model 'meta-llama/my-own-model': no built-in architecture",
        ),
        (
            (
                "        - --accelerator",
                "        - --kv-cache-size\n        - '100'\n        - --accelerator",
            ),
            "To serve at least one request with the models's max seq len (4096)",
        ),
    ],
)
def test_a_bad_stack_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], words: str
) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text(STACK.read_text(encoding="utf-8").replace(*edit, 1), encoding="utf-8")
    line = error_of(
        capsys, "--stack", str(stack), "--workload", str(POISSON), "--output", str(tmp_path / "o")
    )
    assert f"--stack {stack}" in line
    assert words in line


def test_bad_flags_and_files_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "o")
    assert "--stack: required" in error_of(capsys, "--workload", str(POISSON), "--output", out)
    missing = str(tmp_path / "nope.yaml")
    line = error_of(capsys, "--stack", str(STACK), "--workload", missing, "--output", out)
    assert f"--workload {missing}: No such file or directory" in line
    broken = tmp_path / "broken.yaml"
    broken.write_text("load: [\n", encoding="utf-8")
    line = error_of(capsys, "--stack", str(STACK), "--workload", str(broken), "--output", out)
    assert f"--workload {broken}:" in line
    a_file = tmp_path / "file"
    a_file.write_text("", encoding="utf-8")
    line = error_of(
        capsys, "--stack", str(STACK), "--workload", str(POISSON), "--output", str(a_file)
    )
    assert "--output" in line and "not a directory" in line
    assert "--seed" in error_of(capsys, "--seed", "x", "--stack", "s")


def test_a_variant_without_autoscaling_is_named_by_its_deployment(tmp_path: Path) -> None:
    stack = tmp_path / "stack.yaml"
    shutil.copy(STACK, stack)
    out = simulate(tmp_path, POISSON, stack=stack)
    assert {r["pod"] for r in rows(out)} == {"llama-0", "llama-1"}


def test_the_live_server_accepts_the_batch_calculator() -> None:
    cfg = load_config(["--model", "m", "--latency-calculator", "batch"], {}, 0).config
    assert cfg.latency_calculator == "batch"


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--kv-cache-dtype", "int4", "--kv-cache-dtype: unknown type 'int4'"),
        ("--gpu-memory-utilization", "1.5", "--gpu-memory-utilization: must be in (0, 1]"),
        ("--tensor-parallel-size", "0", "--tensor-parallel-size: must be 1 or more"),
        ("--kv-offloading-size", "-1", "--kv-offloading-size: must be a finite number of GiB >= 0"),
    ],
)
def test_batch_model_flags_are_checked_in_one_line(flag: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(["--model", "m", flag, value], {}, 0)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_the_progress_bar_is_drawn_on_the_stream_it_is_given(tmp_path: Path) -> None:
    import io

    from pyllmd.simulate.run import load_options
    from pyllmd.simulate.run import simulate as run_simulation

    stream = io.StringIO()
    config = load_options(
        ["--stack", str(STACK), "--workload", str(POISSON), "--output", str(tmp_path / "o")]
    )
    run_simulation(config, stream)
    text = stream.getvalue()
    assert text.startswith("\r[")
    assert text.endswith("\n")
    assert text.rstrip("\n").rsplit("\r", 1)[-1].startswith("[" + "#" * 30 + "] 100%")


def test_the_packaged_stack_is_replayed_over_every_variant_of_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its two variants serve one model: the built-in gateway sends to the pods of both, as
    `pyllmd up`'s does; a model no variant serves is one error line."""
    import pyllmd

    stack = Path(pyllmd.__file__).parent / "stack" / "stack.yaml"
    result = simulate(tmp_path, POISSON, stack=stack)
    assert report(result)["successes"]["count"] > 0
    assert {r["pod"] for r in rows(result)} == {"sim-a100-0", "sim-h100-0"}
    workload = tmp_path / "named.yaml"
    text = POISSON.read_text(encoding="utf-8")
    workload.write_text(
        text.replace("  type: vllm\n", "  type: vllm\n  model_name: other/model\n"), "utf-8"
    )
    out = str(tmp_path / "o")
    line = error_of(capsys, "--stack", str(stack), "--workload", str(workload), "--output", out)
    assert "server.model_name 'other/model': no variant serves it" in line


def test_a_sweep_probes_saturation_then_runs_stages_up_to_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = simulate(tmp_path, SWEEP)
    assert "(and 400 in the sweep's probe)" in capsys.readouterr().out
    rates = [report(out, f"stage_{i}")["load_summary"]["requested_rate"] for i in range(3)]
    assert not (out / "stage_3_lifecycle_metrics.json").exists()
    assert rates[0] == 1.0  # linear from 1 request/s up to the saturation point
    assert rates[2] > rates[1] > rates[0]
    assert rates[1] == pytest.approx((rates[0] + rates[2]) / 2, abs=0.01)
    counts = [report(out, f"stage_{i}")["load_summary"]["count"] for i in range(3)]
    assert counts == [round(r * 2) for r in rates]  # stage_duration 2 s
    assert report(out)["load_summary"]["count"] == sum(counts)  # the probe is not reported
    assert len(rows(out)) == sum(counts)


def test_geometric_sweep_rates_are_inference_perfs() -> None:
    from pyllmd.simulate.workload import Sweep

    # numpy: [round(1 + 50 - r, 2) for r in np.geomspace(50, 1, num=4)]
    assert Sweep(type="geometric", num_stages=4).rates(50.0) == [1.0, 37.43, 47.32, 50.0]
    assert Sweep(type="linear", num_stages=3).rates(21.0) == [1.0, 11.0, 21.0]


def test_a_model_that_is_not_built_in_comes_with_its_config_json(tmp_path: Path) -> None:
    config = {
        "model_type": "llama",
        "num_hidden_layers": 16,
        "hidden_size": 2048,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 8192,
        "vocab_size": 128256,
    }
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    stack = tmp_path / "stack.yaml"
    text = STACK.read_text(encoding="utf-8").replace("Llama-2-7b-hf", "my-small-model")
    config_arg = f"        - --model-config\n        - {tmp_path / 'config.json'}\n"
    text = text.replace("        - --accelerator\n", config_arg + "        - --accelerator\n")
    stack.write_text(text, encoding="utf-8")
    small = report(simulate(tmp_path, POISSON, stack=stack, name="small"))
    big = report(simulate(tmp_path, POISSON, name="big"))
    # a 1B model decodes faster than a 7B one on the same GPU
    small_itl = small["successes"]["latency"]["inter_token_latency"]["mean"]
    assert small_itl < big["successes"]["latency"]["inter_token_latency"]["mean"]


@given(st.lists(st.floats(min_value=0.0, max_value=1e4, allow_nan=False), min_size=1, max_size=300))
@settings(max_examples=200, deadline=None)
def test_the_numpy_summary_of_inter_token_gaps_is_the_list_summary_bit_for_bit(
    values: list[float],
) -> None:
    # the report sorts the (millions of) inter-token gaps with numpy: same figures as sorted()
    import numpy as np

    from pyllmd.simulate.report import summarize

    assert summarize(np.asarray(values, dtype=np.float64)) == summarize(values)
    times = np.cumsum(np.asarray(values))
    gaps = [b - a for a, b in zip(times.tolist(), times.tolist()[1:], strict=False)]
    assert np.diff(times).tolist() == gaps


@given(
    st.lists(
        st.one_of(
            st.floats(min_value=0.0, max_value=1e4, allow_nan=False),
            st.floats(min_value=0.0, max_value=1e300, allow_nan=False),  # subnormals to huge
            st.floats(min_value=-1.0, max_value=1.0, allow_nan=False),  # negatives: fsum's
            st.sampled_from([0.0, 0.1, 0.2, 0.3, 1e-3, 5e-324]),
        ),
        max_size=300,
    )
)
@settings(max_examples=300, deadline=None)
def test_the_exact_sum_of_inter_token_gaps_is_fsums(values: list[float]) -> None:
    # the report sums the (millions of) inter-token gaps as integers per binary exponent
    import math

    import numpy as np

    from pyllmd.simulate.report import exact_sum

    assert exact_sum(np.sort(np.asarray(values, dtype=np.float64))) == math.fsum(values)


def test_a_single_stage_report_is_the_runs_with_the_stages_load(tmp_path: Path) -> None:
    # one stage sent every request: its report is the run's, with the stage's rate (written
    # from the run's figures, not computed twice)
    out = simulate(tmp_path, POISSON)
    whole, stage = report(out), report(out, "stage_0")
    assert {k: v for k, v in stage.items() if k != "load_summary"} == {
        k: v for k, v in whole.items() if k != "load_summary"
    }
    load = stage["load_summary"]
    assert list(load) == ["count", "schedule_delay", "send_duration", "requested_rate",
                          "achieved_rate"]  # fmt: skip
    assert load["count"] == whole["load_summary"]["count"] == len(rows(out))
    assert load["schedule_delay"] == whole["load_summary"]["schedule_delay"]
    assert load["requested_rate"] == 10
    sends = sorted(float(r["send_s"]) for r in rows(out))
    assert load["send_duration"] == pytest.approx(sends[-1] - sends[0], abs=2e-6)
    assert load["achieved_rate"] == load["count"] / load["send_duration"]


def test_a_cpu_kv_tier_serves_prefixes_the_gpu_evicted(tmp_path: Path) -> None:
    """A GPU cache of 40 blocks cannot keep the workload's system prompts between rounds; with
    `--kv-offloading-size` they come back from the CPU tier, counted as cached tokens."""
    text = STACK.read_text(encoding="utf-8").replace("replicas: 2", "replicas: 1")
    text = text.replace('"4096"', '"512"').replace(
        "        - batch\n", '        - batch\n        - --kv-cache-size\n        - "40"\n'
    )
    cached: dict[str, int] = {}
    for name, extra in (("gpu", ""), ("cpu", '        - --kv-offloading-size\n        - "1"\n')):
        stack = tmp_path / f"{name}.yaml"
        stack.write_text(text + extra, encoding="utf-8")
        out = simulate(tmp_path, MULTI_TURN, stack=stack, name=name)
        cached[name] = sum(int(r["cached_tokens"]) for r in rows(out))
        assert report(out)["successes"]["count"] == len(rows(out))
    assert cached["cpu"] > cached["gpu"] * 1.2


def test_an_envoy_epp_stack_routes_with_the_endpoint_pickers_profile(tmp_path: Path) -> None:
    """With `gateway: envoy-epp` the picker's default profile (prefix, queue and KV-cache
    scorers) sends requests where their prefix is cached (this load never queues): every
    user's rounds go to one pod, and the users who share a system prompt go to the same pod,
    so more prompt tokens are cached than with round robin over the same two pods."""
    stack = tmp_path / "epp.yaml"
    stack.write_text("gateway: envoy-epp\n" + STACK.read_text(encoding="utf-8"), encoding="utf-8")
    plain = rows(simulate(tmp_path, MULTI_TURN, name="rr"))
    routed = rows(simulate(tmp_path, MULTI_TURN, stack=stack, name="epp"))
    assert len(routed) == len(plain)

    def pods_per_user(rs: list[dict[str, str]]) -> list[int]:
        by_user: dict[str, set[str]] = {}
        for r in rs:
            by_user.setdefault(r["user"], set()).add(r["pod"])
        return sorted(len(p) for p in by_user.values())

    assert set(pods_per_user(routed)) == {1}
    cached = lambda rs: sum(int(r["cached_tokens"]) for r in rs)  # noqa: E731
    assert cached(routed) > cached(plain)


def test_a_bad_epp_config_in_the_stack_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stack = tmp_path / "epp.yaml"
    stack.write_text(
        "gateway: envoy-epp\neppConfig: 'plugins: [{type: no-such-plugin}]'\n"
        + STACK.read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    line = error_of(
        capsys,
        "--stack",
        str(stack),
        "--workload",
        str(MULTI_TURN),
        "--output",
        str(tmp_path / "o"),
    )
    assert "eppConfig" in line and "no-such-plugin" in line


def test_slo_attainment_goodput_and_cost_are_reported(tmp_path: Path) -> None:
    out = tmp_path / "slo"
    argv = ["simulate", "--stack", str(STACK), "--workload", str(MULTI_TURN), "--output"]
    assert cli_main([*argv, str(out), "--slo-ttft", "1s", "--slo-itl", "1s"]) == 0
    loose = json.loads((out / "slo_and_cost.json").read_text(encoding="utf-8"))
    assert loose["summary"]["attainment"] == 1.0 and loose["summary"]["attained"] == 44
    assert [s["requests"] for s in loose["stages"]] == [20, 24]
    fastest = min(float(r["ttft_s"]) for r in rows(out))
    tight_ttft = f"{fastest * 1000 * 0.99:.6f}ms"  # below every request's TTFT
    assert cli_main([*argv, str(tmp_path / "tight"), "--slo-ttft", tight_ttft]) == 0
    tight = json.loads((tmp_path / "tight" / "slo_and_cost.json").read_text(encoding="utf-8"))
    assert tight["summary"]["attained"] == 0 and tight["summary"]["goodput_rps"] == 0.0
    assert cli_main([*argv, str(tmp_path / "itl"), "--slo-itl", "1us"]) == 0
    itl = json.loads((tmp_path / "itl" / "slo_and_cost.json").read_text(encoding="utf-8"))
    assert itl["summary"]["attained"] == 0 and itl["slo"] == {"ttft_s": None, "itl_s": 1e-06}
    # two replicas of the default variant cost (10 per replica-second) over the whole run
    end = max(float(r["send_s"]) + float(r["e2e_s"]) for r in rows(out))
    variant = loose["cost"]["variants"]["llama"]
    assert variant["replica_seconds"] == pytest.approx(2 * end, rel=1e-6)
    assert loose["cost"]["total"] == pytest.approx(10.0 * 2 * end, rel=1e-6)


def test_a_negative_slo_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = error_of(
        capsys, "--stack", str(STACK), "--workload", str(MULTI_TURN), "--output",
        str(tmp_path / "o"), "--slo-itl", "-5ms",
    )  # fmt: skip
    assert "--slo-itl" in line


OVERLOAD = """
api: {type: completion, streaming: true}
data:
  type: random
  input_distribution: {min: 200, max: 200, mean: 200}
  output_distribution: {min: 100, max: 100, mean: 100}
server: {type: vllm, ignore_eos: true}
load:
  type: constant
  stages: [{rate: 40, duration: 3}]
"""


def _overloaded(tmp_path: Path, epp_config: str | None, name: str) -> list[dict[str, str]]:
    head = "gateway: envoy-epp\n"
    if epp_config is not None:
        head += "eppConfig: |\n" + "".join(f"  {line}\n" for line in epp_config.splitlines())
    text = STACK.read_text(encoding="utf-8").replace("replicas: 2", "replicas: 1")
    text = text.replace('- "32"', '- "4"')  # --max-num-seqs 4: the pod saturates
    stack = tmp_path / f"{name}.yaml"
    stack.write_text(head + text, encoding="utf-8")
    workload = tmp_path / "overload.yaml"
    workload.write_text(OVERLOAD, encoding="utf-8")
    return rows(simulate(tmp_path, workload, stack=stack, name=name))


def _held(rs: list[dict[str, str]]) -> float:
    """The longest a request spent between its send and the pod (the flow-control queue)."""
    return max(float(r["arrival_s"]) - float(r["send_s"]) for r in rs if r["arrival_s"])


def test_flow_control_holds_requests_while_the_pod_is_saturated(tmp_path: Path) -> None:
    """The stack's default EndpointPickerConfig has the flowControl gate: once the pod's
    queue passes the saturation detector's threshold, requests wait in the picker's queues
    instead of the pod's; without the gate they all go to the pod at once."""
    gated = _overloaded(tmp_path, None, "gated")
    plain = _overloaded(
        tmp_path,
        "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"
        "plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: default\n  plugins:\n"
        "  - pluginRef: queue-scorer\n",
        "plain",
    )
    assert len(gated) == len(plain) == 120
    assert _held(plain) < 0.01  # only the first-token offset before the engine
    assert _held(gated) > 1.0
    # the pod's own queue is shorter when the picker holds the requests
    queue = lambda rs: max(float(r["queue_s"]) for r in rs if r["queue_s"])  # noqa: E731
    assert queue(gated) < queue(plain)


def test_a_request_past_its_flow_control_ttl_fails_with_the_pickers_message(
    tmp_path: Path,
) -> None:
    config = (
        "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"
        "featureGates: [flowControl]\nflowControl:\n  defaultRequestTTL: 500ms\n"
        "plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: default\n  plugins:\n"
        "  - pluginRef: queue-scorer\n"
    )
    rs = _overloaded(tmp_path, config, "ttl")
    errors = {r["error"] for r in rs if r["error"]}
    assert errors == {"request timed out in queue: not dispatched within its 0.5s TTL"}


def test_the_endpoint_pickers_dashboard_shows_its_queue_and_its_routing(tmp_path: Path) -> None:
    """The picker's own `/metrics` (its request and scheduling counters, the pool gauges and
    the flow-control queue) is scraped with the pods, so its dashboard's panels are drawn."""
    _overloaded(tmp_path, None, "gated")  # writes the stack and the workload
    out = tmp_path / "scraped"
    argv = ["simulate", "--stack", str(tmp_path / "gated.yaml"), "--workload",
            str(tmp_path / "overload.yaml"), "--output", str(out),
            "--scrape-interval", "1s"]  # fmt: skip
    assert cli_main(argv) == 0
    with (out / "timeline.csv").open(newline="", encoding="utf-8") as fh:
        points = [p for p in csv.DictReader(fh) if p["dashboard"] == "endpoint-picker"]
    by_panel: dict[str, float] = defaultdict(float)
    for p in points:
        by_panel[p["panel"]] = max(by_panel[p["panel"]], float(p["value"]))
    assert by_panel["Flow control: queued requests"] > 0, sorted(by_panel)
    assert by_panel["Requests per model"] > 0
    assert by_panel["Pool: ready endpoints"] == 1
    assert any(p.name.startswith("timeline-endpoint-picker-") for p in out.iterdir())
