"""Trace replays in `pyllmd simulate`: Azure LLM inference trace CSVs read as inference-perf's
`trace_replay` reads them, Mooncake-style JSONL with shared blocks, and the time and rate
scales. (`make test-inference-perf` compares the CSV reading with inference-perf's own.)"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pyllmd.cli import main as cli_main
from pyllmd.core.errors import ConfigError
from pyllmd.simulate.traces import azure_timestamp, read_trace

HERE = Path(__file__).parent / "workloads"
STACK = HERE / "stack.yaml"
AZURE = HERE / "azure_trace.csv"


def simulate(tmp: Path, workload: Path, *flags: str) -> list[dict[str, str]]:
    out = tmp / "out"
    argv = ["simulate", "--stack", str(STACK), "--workload", str(workload), "--output", str(out)]
    assert cli_main([*argv, *flags]) == 0
    with (out / "per_request.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def workload(tmp: Path, trace: Path, fmt: str = "AzurePublicDataset", **stage: float) -> Path:
    text = f"""
api: {{type: completion, streaming: true}}
data: {{type: random, trace: {{file: "{trace}", format: {fmt}}}}}
server: {{type: vllm, ignore_eos: true}}
load:
  type: trace_replay
  trace: {{file: "{trace}", format: {fmt}}}
  stages: [{{rate: {stage.get("rate", 1)}, duration: {stage.get("duration", 1)}}}]
"""
    path = tmp / "workload.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def azure_rows() -> list[tuple[str, int, int]]:
    with AZURE.open(newline="", encoding="utf-8") as fh:
        return [(r[0], int(r[1]), int(r[2])) for r in list(csv.reader(fh))[1:]]


def test_an_azure_trace_is_replayed_at_its_times_with_its_lengths(tmp_path: Path) -> None:
    rows = simulate(tmp_path, workload(tmp_path, AZURE))
    trace = azure_rows()
    assert len(rows) == len(trace)
    t0 = azure_timestamp(trace[0][0])
    for row, (ts, prompt, output) in zip(rows, trace, strict=True):
        assert float(row["scheduled_s"]) == pytest.approx(azure_timestamp(ts) - t0, abs=1e-6)
        assert (int(row["prompt_len"]), int(row["output_len"])) == (prompt, output)
        assert not row["error"]


def test_the_time_and_rate_scales_move_the_trace(tmp_path: Path) -> None:
    base = simulate(tmp_path, workload(tmp_path, AZURE))
    faster = simulate(
        tmp_path, workload(tmp_path, AZURE), "--time-scale", "0.5", "--rate-scale", "2"
    )
    for a, b in zip(base, faster, strict=True):
        assert float(b["scheduled_s"]) == pytest.approx(float(a["scheduled_s"]) / 4, abs=1e-6)


def test_a_rate_stage_scales_with_the_rate_and_time_scales(tmp_path: Path) -> None:
    path = tmp_path / "constant.yaml"
    path.write_text(
        (HERE / "random_poisson.yaml").read_text(encoding="utf-8").replace("poisson", "constant"),
        encoding="utf-8",
    )
    base = simulate(tmp_path, path)
    double = simulate(tmp_path, path, "--rate-scale", "2")
    assert len(double) == 2 * len(base)
    stretched = simulate(tmp_path, path, "--time-scale", "2")
    assert len(stretched) == len(base)
    assert float(stretched[-1]["scheduled_s"]) == pytest.approx(2 * float(base[-1]["scheduled_s"]))


def test_without_a_data_trace_the_stage_caps_the_replay_at_rate_times_duration(
    tmp_path: Path,
) -> None:
    text = workload(tmp_path, AZURE, rate=5, duration=4).read_text(encoding="utf-8")
    text = text.replace(
        f'data: {{type: random, trace: {{file: "{AZURE}", format: AzurePublicDataset}}}}',
        "data: {type: random, input_distribution: {min: 10, max: 10, mean: 10}, "
        "output_distribution: {min: 5, max: 5, mean: 5}}",
    )
    path = tmp_path / "capped.yaml"
    path.write_text(text, encoding="utf-8")
    rows = simulate(tmp_path, path)
    assert len(rows) == 20
    assert {int(r["prompt_len"]) for r in rows} == {10}


def test_mooncake_blocks_with_the_same_hash_id_share_the_prefix_cache(tmp_path: Path) -> None:
    lines = [
        {"timestamp": 0, "input_length": 1200, "output_length": 4, "hash_ids": [1, 2, 3]},
        {"timestamp": 500, "input_length": 600, "output_length": 4, "hash_ids": [7, 8]},
        {"timestamp": 1000, "input_length": 1100, "output_length": 4, "hash_ids": [1, 2, 9]},
    ]
    trace = tmp_path / "mooncake.jsonl"
    trace.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    rows = simulate(tmp_path, workload(tmp_path, trace, "Mooncake"))
    assert [float(r["scheduled_s"]) for r in rows] == [0.0, 0.5, 1.0]
    assert [int(r["prompt_len"]) for r in rows] == [1200, 600, 1100]
    # round robin over the stack's two pods: the first and the third go to the same one, and
    # the third shares blocks 1 and 2 (1024 tokens) with the first
    assert [r["pod"] for r in rows][0] == rows[2]["pod"]
    assert [int(r["cached_tokens"]) for r in rows] == [0, 0, 1024]


def test_azure_timestamps_are_read_as_inference_perf_reads_them() -> None:
    assert azure_timestamp("2023-11-16 18:15:46.6805900") == pytest.approx(1700158546.68059)
    assert azure_timestamp("2023-11-16T18:15:46Z") == 1700158546.0
    assert azure_timestamp('"2023-11-16 18:15:46.5"') == 1700158546.5


def test_rows_that_do_not_parse_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.0,10,2\nnot a time,1,1\n2023-11-16 18:15:47.5,20,3\n",
        encoding="utf-8",
    )
    trace = read_trace(str(path), "AzurePublicDataset", "load.trace")
    assert [(e.t, e.input_tokens, e.output_tokens) for e in trace.entries] == [
        (0.0, 10, 2),
        (1.5, 20, 3),
    ]
    assert trace.skipped == 1


@pytest.mark.parametrize(
    ("content", "fmt", "words"),
    [
        (None, "AzurePublicDataset", "load.trace.file"),
        ("x\n", "Parquet", "load.trace.format: 'Parquet' is not one of"),
        ('{"timestamp": 1}\n', "Mooncake", "not a Mooncake trace line"),
        ("", "AzurePublicDataset", "no trace entries"),
    ],
)
def test_a_bad_trace_is_one_line_naming_it(
    tmp_path: Path, content: str | None, fmt: str, words: str
) -> None:
    path = tmp_path / "trace"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")) as err:
        read_trace(str(path), fmt, "load.trace")
    assert "\n" not in str(err.value)


def test_bad_scales_are_refused_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "--stack", str(STACK), "--workload", str(AZURE), "--output", "o"]
    assert cli_main([*argv, "--time-scale", "0"]) == 1
    assert "--time-scale: must be a number > 0" in capsys.readouterr().err
