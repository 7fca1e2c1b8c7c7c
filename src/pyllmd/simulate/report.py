"""A replay's reports in inference-perf's layout and with its definitions (pure but for `write`).

`lifecycle_summary` is inference-perf's request lifecycle summary of a set of requests, in
seconds: `load_summary` (count, schedule delay; per stage the send duration, requested and
achieved rate, concurrency), `successes` (count; `latency` with `request_latency`,
`time_to_first_token`, `time_per_output_token`, `inter_token_latency`,
`normalized_time_per_output_token`; `prompt_len`, `prompt_tokens`, `output_len`,
`output_tokens`; `throughput`) and `failures` (count, latency, by label). Each distribution
has mean, min, max, median and the percentiles inference-perf reports by default (linear
interpolation between order statistics, as numpy's percentile). The definitions:

- request latency: response end − send time; TTFT: first token − send time;
- TPOT: (last token − first token) / (output tokens − 1);
- inter-token latency: every gap between consecutive tokens of every request;
- NTPOT: request latency / output tokens;
- throughput: successes' tokens or requests / (last end − first send) of the set.

`request_rows` is the per-request CSV (with the engine's view: queue, prefill and decode
time, preemptions, cached tokens); `write` writes every file and the plots.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pyllmd.sim.batch.scheduler import Request, StepRecord
from pyllmd.simulate.workload import Send, Stage

__all__ = [
    "PERCENTILES",
    "exact_sum",
    "lifecycle_summary",
    "load_summary",
    "percentile",
    "request_rows",
    "summarize",
    "write",
]

PERCENTILES = (0.1, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9)  # inference-perf's default

CSV_COLUMNS = (
    "index",
    "stage",
    "pod",
    "user",
    "scheduled_s",
    "send_s",
    "arrival_s",
    "queue_s",
    "prefill_s",
    "decode_s",
    "ttft_s",
    "e2e_s",
    "prompt_len",
    "output_len",
    "cached_tokens",
    "preemptions",
    "error",
)

SMALLEST_NORMAL = 2.2250738585072014e-308


def percentile(sorted_values: Sequence[float] | np.ndarray, p: float) -> float:
    """The p-th percentile (0..100) of sorted values, linearly interpolated."""
    n = len(sorted_values)
    pos = (n - 1) * p / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def summarize(
    values: Sequence[float] | np.ndarray, ordered: bool = False
) -> dict[str, float] | None:
    """mean, min, max, median and the percentiles of `values` (None when empty).

    A float64 array (the inter-token gaps: one per token of every request, millions in a long
    run) is sorted by numpy (unless `ordered`: sorted already); the sorted values, hence every
    figure, are the same as `sorted`'s.
    """
    if len(values) == 0:
        return None
    if isinstance(values, np.ndarray):
        array = values if ordered else np.sort(values)
        total = exact_sum(array)
        out = {"mean": total / len(array), "min": float(array[0]), "max": float(array[-1])}
        for p in PERCENTILES:
            out["median" if p == 50 else f"p{p:g}"] = float(percentile(array, p))
        return out
    listed = sorted(values)
    out = {
        "mean": math.fsum(listed) / len(listed),
        "min": listed[0],
        "max": listed[-1],
    }
    for p in PERCENTILES:
        out["median" if p == 50 else f"p{p:g}"] = percentile(listed, p)
    return out


def exact_sum(ordered: np.ndarray) -> float:
    """`math.fsum` of sorted float64 values (their exact sum, correctly rounded), without a
    Python float per value. A positive normal float is (2**52 + f) * 2**(e - 1075) with its
    bits' exponent field e and fraction field f; sorted, the values of one exponent lie
    together (their bits sort as they do), and each exponent's fractions are summed as
    integers (in two halves, so no sum overflows); the exact total is rounded once.
    Negative, infinite, NaN or subnormal values go to `math.fsum`."""
    if not len(ordered):
        return 0.0
    first, last = float(ordered[0]), float(ordered[-1])
    if not (first >= 0 and math.isfinite(last)):
        return math.fsum(ordered.tolist())
    bits = ordered[np.searchsorted(ordered, 0.0, side="right") :].view(np.int64)
    if not len(bits):
        return 0.0
    low_e, high_e = int(bits[0]) >> 52, int(bits[-1]) >> 52
    if low_e == 0:  # subnormal
        return math.fsum(ordered.tolist())
    edges = np.searchsorted(bits, np.arange(low_e, high_e + 2, dtype=np.int64) << 52).tolist()
    starts = [a for a, b in itertools.pairwise(edges) if b > a]
    exponents = [low_e + k for k, (a, b) in enumerate(itertools.pairwise(edges)) if b > a]
    counts = [b - a for a, b in itertools.pairwise(edges) if b > a]
    fraction = bits & ((1 << 52) - 1)
    high = np.add.reduceat(fraction >> 26, starts).tolist()  # < 2**26 each: no overflow
    low = np.add.reduceat(fraction & ((1 << 26) - 1), starts).tolist()
    total = 0
    for e, n, h, lo in zip(exponents, counts, high, low, strict=True):
        total += ((n << 52) + (h << 26) + lo) << (e - low_e)
    shift = low_e - 1075  # the total is total * 2**shift: a division of integers, rounded once
    result = total / (1 << -shift) if shift < 0 else float(total << shift)
    if result < SMALLEST_NORMAL:  # a subnormal result would round twice
        return math.fsum(ordered.tolist())
    return result


def _token_times(send: Send, req: Request | None) -> list[float]:
    if req is None or not req.token_times:
        return []
    return req.token_times


def lifecycle_summary(
    sends: Sequence[Send],
    engine: dict[int, tuple[str, Request]],
    rate: float | None = None,
    concurrency: int | None = None,
) -> dict[str, Any]:
    """inference-perf's summary of `sends` (a stage's when `rate` or `concurrency` is given)."""
    done = [s for s in sends if s.end is not None]
    ok = [s for s in done if s.error is None]
    failed = [s for s in done if s.error is not None]
    if done:
        total_time = max(s.end or 0.0 for s in done) - min(s.start for s in done)
    else:
        total_time = 0.0
    e2es: list[float] = []
    ntpot: list[float] = []
    ttft: list[float] = []
    tpot: list[float] = []
    runs: list[list[float]] = []  # token times of the requests with two or more
    for s in ok:
        req = engine.get(s.index, ("", None))[1]
        e2e = (s.end or 0.0) - s.start
        e2es.append(e2e)
        ntpot.append(e2e / s.output_len)
        times = _token_times(s, req)
        if len(times) > 1:
            ttft.append(times[0] - s.start)
            tpot.append((times[-1] - times[0]) / (s.output_len - 1) if s.output_len > 1 else 0.0)
            runs.append(times)
    latency: dict[str, list[float] | np.ndarray] = {
        "request_latency": e2es,
        "normalized_time_per_output_token": ntpot,
        "time_per_output_token": tpot,
        "time_to_first_token": ttft,
        "inter_token_latency": _gaps(runs) if runs else [],
    }
    prompt = [float(len(s.tokens)) for s in ok]
    output = [float(s.output_len) for s in ok]
    cached = math.fsum(float(engine[s.index][1].cached_tokens) for s in ok if s.index in engine)

    def per_sec(x: float) -> float:
        return x / total_time if total_time > 0 else 0.0

    prompt_tokens: dict[str, Any] = {
        "total": math.fsum(prompt),
        "cached": cached,
        "uncached": max(math.fsum(prompt) - cached, 0.0),
    }
    prompt_tokens.update(summarize(prompt) or {})
    output_tokens: dict[str, Any] = {"total": math.fsum(output)}
    output_tokens.update(summarize(output) or {})
    labels: dict[str, dict[str, Any]] = {}
    for s in failed:
        label = _label(s.error or "")
        entry = labels.setdefault(label, {"count": 0, "messages": []})
        entry["count"] += 1
        if s.error and {"message": s.error} not in entry["messages"]:
            entry["messages"].append({"message": s.error})
    return {
        "benchmark_time_seconds": total_time,
        "load_summary": load_summary(done, rate, concurrency),
        "successes": {
            "count": len(ok),
            "latency": {
                k: summarize(v, ordered=k == "inter_token_latency") for k, v in latency.items()
            },
            "throughput": {
                "input_tokens_per_sec": per_sec(math.fsum(prompt)),
                "output_tokens_per_sec": per_sec(math.fsum(output)),
                "total_tokens_per_sec": per_sec(math.fsum(prompt) + math.fsum(output)),
                "requests_per_sec": per_sec(len(ok)),
            },
            "prompt_len": summarize(prompt),
            "prompt_tokens": prompt_tokens,
            "output_len": summarize(output),
            "output_tokens": output_tokens,
        },
        "failures": {
            "count": len(failed),
            "request_latency": summarize([(s.end or 0.0) - s.start for s in failed]),
            "by_label": dict(sorted(labels.items(), key=lambda kv: -kv[1]["count"])),
        },
    }


def load_summary(
    done: Sequence[Send], rate: float | None = None, concurrency: int | None = None
) -> dict[str, Any]:
    """`load_summary` of the finished requests `done` (a stage's when `rate` or
    `concurrency` is given)."""
    load: dict[str, Any] = {
        "count": len(done),
        "schedule_delay": summarize([s.start - s.scheduled for s in done]),
    }
    if rate is not None or concurrency is not None:
        starts = [s.start for s in done]
        send_duration = max(starts) - min(starts) if starts else 0.0
        load["send_duration"] = send_duration
        load["requested_rate"] = rate
        load["achieved_rate"] = len(done) / send_duration if send_duration > 0 else 0.0
        if concurrency is not None:
            load["concurrency"] = concurrency
    return load


def _gaps(runs: Sequence[Sequence[float]]) -> np.ndarray:
    """Inter-token latencies, sorted: every gap within a request (b - a, as in Python); one
    diff over all times one after another, without the gaps that span two requests (made
    infinite, they sort last and are cut off)."""
    lengths = np.fromiter(map(len, runs), np.int64, len(runs))
    flat = np.fromiter(itertools.chain.from_iterable(runs), np.float64, int(lengths.sum()))
    gaps = np.diff(flat)
    spans = np.cumsum(lengths)[:-1] - 1
    if not np.isfinite(flat).all():  # a gap of its own could be infinite or NaN
        gaps = np.delete(gaps, spans)
        gaps.sort()
        return gaps
    gaps[spans] = np.inf
    gaps.sort()
    return gaps[: len(gaps) - len(spans)]


def _label(error: str) -> str:
    """inference-perf's short label of an error."""
    if error == "Timeout":
        return "Timeout"
    if "maximum context length" in error:
        return "400 - Context Window"
    return "400 - other"


def request_rows(
    sends: Sequence[Send], engine: dict[int, tuple[str, Request]], first_token_s: float
) -> list[dict[str, Any]]:
    """One row per request: the client's times and the engine's view of it (seconds)."""
    rows: list[dict[str, Any]] = []
    append = rows.append
    get = engine.get
    missing: tuple[str, Request | None] = ("", None)
    for s in sends:
        pod, req = get(s.index, missing)
        start = s.start
        ok = s.error is None and s.end is not None
        arrival: float | None
        admitted: float | None
        first: float | None
        last: float | None
        if req is not None:
            arrival, admitted = req.arrival, req.admitted
            first, last = req.first_token, req.last_token
            cached, preemptions = req.cached_tokens, req.preemptions
        else:
            arrival = admitted = first = last = None
            cached = preemptions = 0
        append(
            {
                "index": s.index,
                "stage": s.stage,
                "pod": pod,
                "user": s.user,
                "scheduled_s": f"{s.scheduled:.6f}",
                "send_s": f"{start:.6f}",
                "arrival_s": "" if arrival is None else f"{arrival:.6f}",
                "queue_s": (
                    f"{admitted - arrival:.6f}" if admitted is not None and arrival else ""
                ),
                "prefill_s": (
                    f"{first - admitted:.6f}" if first is not None and admitted is not None else ""
                ),
                "decode_s": f"{last - first:.6f}" if last is not None and first is not None else "",
                "ttft_s": f"{first - start:.6f}" if ok and first is not None else "",
                "e2e_s": f"{(s.end or 0.0) - start:.6f}" if ok else "",
                "prompt_len": len(s.tokens),
                "output_len": s.output_len,
                "cached_tokens": cached,
                "preemptions": preemptions,
                "error": s.error or "",
            }
        )
    return rows


def write(
    out: Path,
    stages: Sequence[Stage],
    sends: Sequence[Send],
    engine: dict[int, tuple[str, Request]],
    steps: Mapping[str, Sequence[StepRecord]],
    num_blocks: int,
    first_token_s: float,
    plots: bool = True,
    dump: Callable[[Any], str] | None = None,
    rows: Sequence[dict[str, Any]] | None = None,
) -> list[Path]:
    """Write the reports, the per-request CSV and the plots into `out`; the paths written.
    `rows`: `request_rows` of the measured requests (stage 0 or more), when the caller has
    them already."""
    out.mkdir(parents=True, exist_ok=True)
    encode = dump or (lambda obj: json.dumps(obj, indent=2) + "\n")
    written: list[Path] = []
    summary = out / "summary_lifecycle_metrics.json"
    measured = [s for s in sends if s.stage >= 0]  # a sweep's probe (-1) is not reported
    whole = lifecycle_summary(measured, engine)
    summary.write_text(encode(whole), encoding="utf-8")
    written.append(summary)
    for i, st in enumerate(stages):
        path = out / f"stage_{i}_lifecycle_metrics.json"
        stage_sends = [s for s in sends if s.stage == i]
        if len(stage_sends) == len(measured):  # the one stage that sent: the run's requests
            done = [s for s in stage_sends if s.end is not None]
            load = load_summary(done, st.rate, st.concurrency_level)
            summary_i = {**whole, "load_summary": load}
        else:
            summary_i = lifecycle_summary(stage_sends, engine, st.rate, st.concurrency_level)
        path.write_text(encode(summary_i), encoding="utf-8")
        written.append(path)
    if rows is None:
        rows = request_rows(measured, engine, first_token_s)
    per_request = out / "per_request.csv"
    with per_request.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(map(operator.itemgetter(*CSV_COLUMNS), rows))
    written.append(per_request)
    if plots:
        from pyllmd.simulate.plots import plot_all

        written += plot_all(out, rows, steps, num_blocks)
    return written
