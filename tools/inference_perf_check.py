"""Check `pyllmd simulate`'s inputs and outputs against inference-perf itself.

Run with the Python 3.12 venv of `make inference-perf-venv` (inference-perf 0.7.0 needs
Python >= 3.12; pyllmd stays on 3.11), as `make test-inference-perf` does:

  python tools/inference_perf_check.py [--report DIR] WORKLOAD.yaml ...

- each workload file is read with inference-perf's own config reader (`read_config`), the
  server's address given as a command-line override, as a run gives it;
- with `--trace CSV JSON`, inference-perf's Azure trace reader reads CSV and must give the
  entries (relative time, input and output tokens) that pyllmd's reader wrote as JSON;
- with `--report DIR` (a `pyllmd simulate` output), each latency distribution of
  `summary_lifecycle_metrics.json` is recomputed from `per_request.csv` with inference-perf's
  own `summarize` (numpy's percentiles) and must agree, and the report must have the keys
  inference-perf's summary has.

Prints one line per check and exits 1 on the first failure.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import math
import sys
from pathlib import Path
from typing import Any

BASE_URL = {"server": {"base_url": "http://127.0.0.1:8000"}}
# (report key, CSV column): request-level latencies the CSV carries (microsecond rounding)
COLUMNS = {"request_latency": "e2e_s", "time_to_first_token": "ttft_s"}
TOP_KEYS = {"load_summary", "successes", "failures", "benchmark_time_seconds"}
SUCCESS_KEYS = {"count", "latency", "throughput", "prompt_tokens", "output_len", "output_tokens"}
LATENCY_KEYS = {
    "request_latency",
    "normalized_time_per_output_token",
    "time_per_output_token",
    "time_to_first_token",
    "inter_token_latency",
}


def check_workload(path: Path) -> str:
    config = importlib.import_module("inference_perf.config")
    cfg: Any = config.read_config(str(path), BASE_URL)
    return f"{path}: inference-perf reads it ({cfg.load.type.value}, {cfg.data.type.value})"


def check_report(out: Path) -> list[str]:
    base = importlib.import_module("inference_perf.reportgen.base")
    summary = json.loads((out / "summary_lifecycle_metrics.json").read_text(encoding="utf-8"))
    lines = []
    missing = (TOP_KEYS - set(summary)) | (SUCCESS_KEYS - set(summary["successes"]))
    missing |= LATENCY_KEYS - set(summary["successes"]["latency"])
    if missing:
        raise AssertionError(f"{out}: keys inference-perf writes are missing: {sorted(missing)}")
    with (out / "per_request.csv").open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if not r["error"]]
    percentiles = [0.1, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9]
    for key, column in COLUMNS.items():
        values = [float(r[column]) for r in rows if r[column]]
        theirs = base.summarize(values, percentiles)
        ours = summary["successes"]["latency"][key]
        if set(theirs) != set(ours):
            raise AssertionError(f"{out}: {key}: fields {sorted(ours)} != {sorted(theirs)}")
        for stat, value in theirs.items():
            if not math.isclose(ours[stat], value, rel_tol=1e-5, abs_tol=2e-6):
                raise AssertionError(f"{out}: {key}.{stat}: {ours[stat]} != {value}")
        lines.append(f"{out}: {key} agrees with inference-perf's summarize ({len(values)} values)")
    return lines


def check_trace(csv_file: Path, ours_json: Path) -> str:
    reader = importlib.import_module("inference_perf.utils.trace_reader")
    theirs = reader.AzurePublicDatasetReader().load_traces(csv_file)
    ours = json.loads(ours_json.read_text(encoding="utf-8"))
    if len(theirs) != len(ours):
        raise AssertionError(f"{csv_file}: {len(ours)} entries, inference-perf reads {len(theirs)}")
    for i, ((t1, a1, b1), (t2, a2, b2)) in enumerate(zip(theirs, ours, strict=True)):
        if (a1, b1) != (a2, b2) or not math.isclose(t1, t2, abs_tol=1e-6):
            raise AssertionError(
                f"{csv_file}: entry {i}: ours {(t2, a2, b2)}, theirs {(t1, a1, b1)}"
            )
    return f"{csv_file}: {len(ours)} trace entries read as inference-perf reads them"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workloads", nargs="*", type=Path)
    ap.add_argument("--report", type=Path, action="append", default=[])
    ap.add_argument("--trace", type=Path, nargs=2, action="append", default=[])
    args = ap.parse_args(argv)
    try:
        for csv_file, ours in args.trace:
            print(check_trace(csv_file, ours))
        for path in args.workloads:
            print(check_workload(path))
        for out in args.report:
            for line in check_report(out):
                print(line)
    except Exception as e:  # noqa: BLE001 - any failure is the check's answer
        print(f"inference-perf check failed: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
