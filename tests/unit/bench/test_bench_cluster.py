"""Figure (j): `pyllmd simulate` of the 100-pod stack behind the endpoint picker, run through
`python -m bench --only cluster --cluster-quick` (one simulated minute), and its block."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bench import cluster_speed
from bench import run as bench_run
from bench.cluster_speed import ClusterTiming

from pyllmd.epp.config.gateway import DEFAULT_EPP_CONFIG


def test_the_quick_run_simulates_the_cluster_and_writes_its_block(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text(
        f"# Benchmarks\n\nbefore\n\n{cluster_speed.START}\nold\n{cluster_speed.END}\n\nafter\n",
        encoding="utf-8",
    )
    assert bench_run.main(["--only", "cluster", "--cluster-quick", "--output", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nbefore\n") and text.endswith("\nafter\n")
    assert "old" not in text
    block = text[text.index(cluster_speed.START) : text.index(cluster_speed.END)]
    assert "Last run: " in block
    assert "(shortened: 60 simulated s)" in block
    assert "100 fixed pods + an autoscaled variant, default EPP profile" in block
    assert "the profile alone over 101 endpoints" in block
    for row in (
        "| virtual time | 60 s |",
        "| requests sent / succeeded / failed |",
        "| pods ever created / scale events | 101 /",
        "| `simulate()` wall s (CPU s) |",
        "| of which the replay: wall s, requests per wall-second |",
        "| the profile alone: wall s |",
    ):
        assert row in block
    sent = block.split("| requests sent / succeeded / failed | ")[1].split(" |")[0]
    total, ok, failed = (int(x.replace(",", "")) for x in sent.split(" / "))
    assert 5_000 < total < 7_000  # poisson at 100/s for 60 s
    assert ok == total and failed == 0


def test_the_stack_is_the_pickers_default_profile_with_an_autoscaled_variant() -> None:
    """No eppConfig: the chart's default plugins (queue, KV-cache utilization and prefix-cache
    scorers, weights 2/2/3; max-score picker by default) with the flow-control gate."""
    assert "gateway: envoy-epp" in cluster_speed.STACK and "eppConfig" not in cluster_speed.STACK
    for line in (
        "- type: queue-scorer",
        "- type: kv-cache-utilization-scorer",
        "- type: prefix-cache-scorer",
        "weight: 3",
        "featureGates: [flowControl]",
    ):
        assert line in DEFAULT_EPP_CONFIG
    assert "kind: VariantAutoscaling" in cluster_speed.STACK
    assert "wva-saturation-scaling-config" in cluster_speed.STACK
    assert f"replicas: {cluster_speed.FIXED_PODS}" in cluster_speed.STACK


def test_the_block_gives_the_rate_the_baseline_ratio_and_whether_the_target_is_met() -> None:
    t = ClusterTiming(
        virtual_s=3600.0,
        requests=360_000,
        succeeded=359_990,
        failed=10,
        pods_max=103,
        scale_events=2,
        wall_s=240.0,
        cpu_s=238.0,
        replay_s=200.0,
        baseline_s=120.0,
        endpoints=101,
    )
    block = cluster_speed.render(t, datetime(2026, 1, 2, 3, 4, tzinfo=UTC))
    assert "Last run: 2026-01-02 03:04 UTC" in block
    assert "shortened" not in block
    assert "| 1,500 | 3,000 (the profile alone over 101 endpoints) | 2.0× |" in block
    assert "| yes |" in block
    assert "| 360,000 / 359,990 / 10 |" in block
    assert "| 200.0, 1,800 |" in block
    slow = ClusterTiming(**{**t.__dict__, "wall_s": 720.0})
    assert "| no |" in cluster_speed.render(slow)
