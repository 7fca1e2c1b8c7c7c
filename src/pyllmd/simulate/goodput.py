"""SLO attainment (goodput) and cost of a virtual-time run.

A request attains the SLO when it succeeded, its time to first token is at most `--slo-ttft`
and its mean inter-token latency, (E2E − TTFT) / (output tokens − 1) as inference-perf
defines ITL, at most `--slo-itl` (an SLO left at 0 is not checked). Goodput is the attaining
requests per second of the stage's span (first send to last end). The cost is each variant's
`variantCost` per replica times its replica-seconds, the unit `spec.variantCost` has for the
autoscaler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _attains(row: Mapping[str, Any], slo_ttft: float, slo_itl: float) -> bool:
    if row["error"] or row["ttft_s"] == "" or row["e2e_s"] == "":
        return False
    ttft, e2e, out = float(row["ttft_s"]), float(row["e2e_s"]), int(row["output_len"])
    if slo_ttft > 0 and ttft > slo_ttft:
        return False
    itl = (e2e - ttft) / (out - 1) if out > 1 else 0.0
    return not (slo_itl > 0 and itl > slo_itl)


Graded = tuple[int, bool, float | None, float | None]  # stage, attains, send, end


def _graded(rows: Sequence[Mapping[str, Any]], slo_ttft: float, slo_itl: float) -> list[Graded]:
    """Each row read once: its stage, whether it attains the SLO, its send and end times."""
    out: list[Graded] = []
    for r in rows:
        send = float(r["send_s"]) if r["send_s"] != "" else None
        end = float(r["send_s"]) + float(r["e2e_s"]) if r["e2e_s"] != "" else None
        out.append((int(r["stage"]), _attains(r, slo_ttft, slo_itl), send, end))
    return out


def _attainment(graded: Sequence[Graded]) -> dict[str, Any]:
    good = sum(1 for g in graded if g[1])
    starts = [g[2] for g in graded if g[2] is not None]
    ends = [g[3] for g in graded if g[3] is not None]
    span = max(ends, default=0.0) - min(starts, default=0.0)
    return {
        "requests": len(graded),
        "attained": good,
        "attainment": good / len(graded) if graded else 0.0,
        "goodput_rps": good / span if span > 0 else 0.0,
    }


def attainment(
    rows: Sequence[Mapping[str, Any]], slo_ttft: float, slo_itl: float
) -> dict[str, Any]:
    """Requests, those attaining the SLO, the fraction and the goodput (per second)."""
    return _attainment(_graded(rows, slo_ttft, slo_itl))


def summary(
    rows: Sequence[Mapping[str, Any]],
    stages: int,
    slo_ttft: float,
    slo_itl: float,
    replica_seconds: Mapping[str, float],
    costs: Mapping[str, float],
) -> dict[str, Any]:
    """The run's SLO attainment, overall and per stage, and its cost per variant."""
    graded = _graded(rows, slo_ttft, slo_itl)
    per_variant = {
        v: {
            "replica_seconds": s,
            "variant_cost": costs[v],
            "cost": costs[v] * s,
        }
        for v, s in replica_seconds.items()
    }
    return {
        "slo": {"ttft_s": slo_ttft or None, "itl_s": slo_itl or None},
        "summary": _attainment(graded),
        "stages": [_attainment([g for g in graded if g[0] == i]) for i in range(stages)],
        "cost": {
            "total": sum(v["cost"] for v in per_variant.values()),
            "variants": per_variant,
        },
    }


def attainment_over_time(
    rows: Sequence[Mapping[str, Any]], slo_ttft: float, slo_itl: float, step: float
) -> list[tuple[float, float, float]]:
    """Per `step` of send time: (end of the interval, SLO attainment, attaining requests per
    second), over the requests sent in it."""
    sent: dict[int, list[bool]] = {}
    for r in rows:
        if r["send_s"] != "":
            sent.setdefault(int(float(r["send_s"]) // step), []).append(
                _attains(r, slo_ttft, slo_itl)
            )
    return [((k + 1) * step, sum(ok) / len(ok), sum(ok) / step) for k, ok in sorted(sent.items())]


def cost_over_time(
    counts: Sequence[tuple[float, str, int]], costs: Mapping[str, float], step: float, end: float
) -> list[tuple[float, str, float]]:
    """Per `step`: (end of the interval, variant, cost spent in it), from each variant's pod
    count changes `(time, variant, pods)` in time order."""
    out: list[tuple[float, str, float]] = []
    for variant, cost in sorted(costs.items()):
        changes = [(t, n) for t, v, n in counts if v == variant]
        k, t0, pods, spent = 1, 0.0, 0, 0.0
        for t, n in [*changes, (end, -1)]:
            while k * step <= t:  # close the intervals that end before this change
                spent += pods * (k * step - t0)
                out.append((k * step, variant, cost * spent))
                t0, spent, k = k * step, 0.0, k + 1
            spent += pods * (t - t0)
            t0, pods = t, n
        if spent > 0:
            out.append((end, variant, cost * spent))
    return out
