"""The experiments of docs/developer-guide/experiments.md keep working: a shortened version of
each runs through its one command."""

from __future__ import annotations

from pathlib import Path

import pytest
from tools import experiments


def test_the_autoscaling_experiment_compares_at_equal_slo_attainment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert experiments.main(["autoscaling", "--quick", "--output", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| ") and "policy" not in line]
    assert len(rows) == 1 + len(experiments.QUICK.targets)
    assert rows[0].startswith("| saturation analyzer |")
    assert (tmp_path / "autoscaling" / "replicas.png").stat().st_size > 0
    # every run replays the same requests, and the saturation analyzer scaled the variant
    for name in ("saturation", *(f"hpa-{t}" for t in experiments.QUICK.targets)):
        assert (tmp_path / "autoscaling" / name / "summary_lifecycle_metrics.json").exists()
    events = (tmp_path / "autoscaling" / "saturation" / "scale_events.csv").read_text()
    assert ",autoscaler" in events
    assert ",hpa" in (tmp_path / "autoscaling" / "hpa-8" / "scale_events.csv").read_text()
    # the chosen HPA target (if any) is the largest attaining the SLO as often as the analyzer
    attainment = {r.split("|")[2].strip(): float(r.split("|")[3]) for r in rows}
    base = attainment.pop("-")
    meeting = [int(t) for t, a in attainment.items() if a >= base]
    chosen = [r for r in rows if "(chosen)" in r]
    if meeting:
        assert len(chosen) == 1 and chosen[0].split("|")[2].strip() == str(max(meeting))
        assert "Result: the largest HPA target" in text
    else:
        assert not chosen and "no HPA target" in text


def test_the_routing_experiment_ranks_cache_aware_routing_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert experiments.main(["routing", "--quick", "--output", str(tmp_path)]) == 0
    text, divergent = capsys.readouterr().out.split(experiments.DIVERGENT_TITLE)
    rows = table(text)
    assert set(rows) == set(experiments.POLICIES)
    hit = {name: float(r[4].strip().rstrip(" %")) for name, r in rows.items()}
    p90 = {name: float(r[3]) for name, r in rows.items()}
    for aware in ("precise", "approximate"):
        for blind in ("load-only", "random"):
            assert hit[aware] > hit[blind] and p90[aware] < p90[blind], (aware, blind, text)
    assert "Cache-aware routing beats load-only and random on TTFT p90 and hit rate: held" in text
    # the precise scorer learned the pods' caches from their KV events, not from the prompts
    assert (tmp_path / "routing" / "precise" / "per_request.csv").exists()

    # figure (h)'s divergent workload, replayed: 4 pods, prompts of 11 characters per token
    # (the approximate scorer's 4-per-token estimate is wrong), each pod's cache dropped once
    quick = experiments.DIVERGENT_QUICK
    assert "11 characters per token" in divergent and "dropped at 40, 50, 60, 70 %" in divergent
    (rate,) = quick.rates
    assert f"At {rate:g} requests/s:" in divergent
    rows = table(divergent)
    assert list(rows) == list(experiments.POLICIES)
    hit = {name: float(r[4].strip().rstrip(" %")) for name, r in rows.items()}
    live = {name: float(r[6].strip().rstrip(" %")) for name, r in rows.items()}
    assert live == {k: 100 * v[1] for k, v in experiments.LIVE_DIVERGENT[rate].items()}
    assert hit["approximate"] < hit["precise"], divergent
    assert min(hit["precise"], hit["approximate"]) > max(hit["load-only"], hit["random"])
    assert divergent.count("same order as live: ") == 2  # by TTFT p90 and by hit rate


def test_orders_are_compared_with_figure_hs_ties() -> None:
    live = {"precise": 0.04, "approximate": 1.0, "load-only": 4.0, "random": 4.2}
    # load-only and random 5 % apart live: a tie, so either order here agrees with it
    ours = {"precise": 0.09, "approximate": 0.3, "load-only": 5.2, "random": 3.9}
    text = experiments._compare("TTFT p90", ours, live, False, experiments._p90_tie)
    assert "live: precise < approximate < load-only ≈ random" in text
    assert text.endswith("same order as live: yes.\n")
    # precise behind approximate here, ahead live: an order the other way
    ours = {"precise": 2.0, "approximate": 0.3, "load-only": 5.2, "random": 3.9}
    text = experiments._compare("TTFT p90", ours, live, False, experiments._p90_tie)
    assert "same order as live: no (precise/approximate the other way)" in text


def table(text: str) -> dict[str, list[str]]:
    """The rows of the report's table, by routing policy."""
    return {
        line.split("|")[1].strip(): line.split("|")
        for line in text.splitlines()
        if line.startswith("| ") and "routing" not in line
    }
