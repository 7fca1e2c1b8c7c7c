"""`pyllmd simulate` with the autoscaler in the loop, as a user runs it: the controller's own
engines scale the stack's Deployments directly, or an HPA / KEDA ScaledObject does from
`wva_desired_replicas`; new pods serve only after their start-up delay; a variant at zero is
woken by the requests the gateway holds; cost counts every pod's life."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pyllmd.cli import main as cli_main

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
NS = "llm-d-sim"
SATURATION = """\
kvCacheThreshold: 0.80
queueLengthThreshold: 5
kvSpareTrigger: 0.1
queueSpareTrigger: 3
"""
WORKLOAD = {
    "api": {"type": "completion", "streaming": True},
    "data": {
        "type": "random",
        "input_distribution": {"min": 500, "max": 1500, "mean": 1000, "std_dev": 200},
        "output_distribution": {"min": 200, "max": 400, "mean": 300, "std_dev": 50},
    },
    "server": {"type": "vllm", "model_name": MODEL, "ignore_eos": True},
    "load": {
        "type": "poisson",
        "stages": [
            {"rate": 2, "duration": 60},
            {"rate": 20, "duration": 300},
            {"rate": 1, "duration": 300},
        ],
    },
}
DESIRED = f'sum(wva_desired_replicas{{variant_name="h100",exported_namespace="{NS}"}})'


def stack(replicas: int = 1, zero: bool = False, **extra: Any) -> dict[str, Any]:
    config_maps: list[dict[str, Any]] = [
        {
            "metadata": {
                "name": "wva-saturation-scaling-config",
                "namespace": "workload-variant-autoscaler-system",
            },
            "data": {"default": SATURATION},
        }
    ]
    if zero:
        config_maps.append(
            {
                "metadata": {
                    "name": "wva-model-scale-to-zero-config",
                    "namespace": "workload-variant-autoscaler-system",
                },
                "data": {"default": "enable_scale_to_zero: true\nretention_period: 2m\n"},
            }
        )
    variant: dict[str, Any] = {
        "variantAutoscaling": {
            "apiVersion": "llmd.ai/v1alpha1",
            "kind": "VariantAutoscaling",
            "metadata": {
                "name": "h100",
                "labels": {"inference.optimization/acceleratorName": "H100"},
            },
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "h100"},
                "modelID": MODEL,
                "variantCost": "15.0",
            },
        },
        "deployment": {
            "replicas": replicas,
            "labels": {"app": "sim"},
            "args": [
                "--model",
                MODEL,
                "--accelerator",
                "H100",
                "--max-num-seqs",
                "16",
                "--max-model-len",
                "4096",
            ],  # fmt: skip
        },
        **extra,
    }
    return {"namespace": NS, "variants": [variant], "configMaps": config_maps}


HPA = {
    "apiVersion": "autoscaling/v2",
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "h100"},
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "h100"},
        "minReplicas": 1,
        "maxReplicas": 10,
        "metrics": [
            {
                "type": "External",
                "external": {
                    "metric": {
                        "name": "wva_desired_replicas",
                        "selector": {
                            "matchLabels": {"variant_name": "h100", "exported_namespace": NS}
                        },
                    },
                    "target": {"type": "AverageValue", "averageValue": "1"},
                },
            }
        ],
    },
}
SCALED_OBJECT = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "ScaledObject",
    "metadata": {"name": "h100"},
    "spec": {
        "scaleTargetRef": {"name": "h100"},
        "pollingInterval": 5,
        "cooldownPeriod": 120,
        "minReplicaCount": 0,
        "maxReplicaCount": 10,
        "triggers": [
            {
                "type": "prometheus",
                "metadata": {
                    "serverAddress": "http://prometheus:9090",
                    "query": DESIRED,
                    "threshold": "1",
                },  # fmt: skip
            }
        ],
    },
}


def run(tmp: Path, doc: dict[str, Any], name: str, *flags: str) -> Path:
    s, w, out = tmp / f"{name}-stack.yaml", tmp / f"{name}-workload.yaml", tmp / name
    s.write_text(yaml.safe_dump(doc), encoding="utf-8")
    w.write_text(yaml.safe_dump(WORKLOAD), encoding="utf-8")
    argv = ["simulate", "--stack", str(s), "--workload", str(w), "--output", str(out)]
    assert cli_main([*argv, "--interval", "15s", "--pod-startup-jitter", "0", *flags]) == 0
    return out


def events(out: Path) -> list[dict[str, str]]:
    with (out / "scale_events.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def requests(out: Path) -> list[dict[str, str]]:
    with (out / "per_request.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary_lifecycle_metrics.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run(tmp_path_factory.mktemp("direct"), stack(), "out", "--pod-startup-delay", "30s")


def test_the_autoscaler_scales_up_under_load_and_back_down_after_it(direct: Path) -> None:
    ev = events(direct)
    assert ev and {e["by"] for e in ev} == {"autoscaler"}
    ups = [e for e in ev if int(e["to_replicas"]) > int(e["from_replicas"])]
    downs = [e for e in ev if int(e["to_replicas"]) < int(e["from_replicas"])]
    assert ups and downs
    assert float(ups[0]["time_s"]) >= 60  # not before the load rises (stage 1 starts at 60 s)
    assert max(int(e["to_replicas"]) for e in ev) >= 3
    # the controller cycles every --interval: each change is at a cycle
    assert all(float(e["time_s"]) % 15 == 0 for e in ev)
    assert summary(direct)["failures"]["count"] == 0


def test_the_autoscaler_dashboard_panels_show_its_desired_replicas(direct: Path) -> None:
    with (direct / "timeline.csv").open(newline="", encoding="utf-8") as f:
        points = [r for r in csv.DictReader(f) if r["dashboard"] == "autoscaler"]
    desired = [
        float(r["value"]) for r in points if "desired" in r["series"] or "Desired" in r["panel"]
    ]
    assert desired and max(desired) >= 3
    assert (direct / "timeline-autoscaler-desired-and-current-replicas-per-variant.png").exists()


def test_a_new_pod_gets_requests_only_after_its_start_up_delay(direct: Path) -> None:
    first_up = next(e for e in events(direct) if e["from_replicas"] == "1")
    created = float(first_up["time_s"])
    sent = [float(r["send_s"]) for r in requests(direct) if r["pod"] == "h100-1"]
    assert sent and min(sent) >= created + 30.0


def test_cost_counts_every_pod_from_creation_to_its_end(direct: Path) -> None:
    doc = json.loads((direct / "slo_and_cost.json").read_text(encoding="utf-8"))
    variant = doc["cost"]["variants"]["h100"]
    end = max(float(r["send_s"]) + float(r["e2e_s"]) for r in requests(direct))
    peak = max(int(e["to_replicas"]) for e in events(direct))
    assert 1.5 * end < variant["replica_seconds"] < peak * end
    assert variant["cost"] == pytest.approx(15.0 * variant["replica_seconds"])


def test_an_hpa_scales_the_deployment_from_wva_desired_replicas(
    tmp_path: Path, direct: Path
) -> None:
    out = run(tmp_path, stack(hpa=HPA), "hpa", "--pod-startup-delay", "30s")
    ev = events(out)
    assert ev and {e["by"] for e in ev} == {"hpa"}
    # the HPA syncs every 15 s; it reads the metric the autoscaler publishes
    assert all(float(e["time_s"]) % 15 == 0 for e in ev)
    assert max(int(e["to_replicas"]) for e in ev) >= 3

    def up_and_downs(ev: list[dict[str, str]]) -> tuple[float, list[float]]:
        ups = [float(e["time_s"]) for e in ev if int(e["to_replicas"]) > int(e["from_replicas"])]
        downs = [float(e["time_s"]) for e in ev if int(e["to_replicas"]) < int(e["from_replicas"])]
        return max(ups), downs

    last_up, downs = up_and_downs(ev)
    # the autoscaler's desired replicas fell soon after the load did (direct scaling follows
    # it), but the HPA keeps its highest recommendation of the last 300 s (its default
    # scale-down stabilization window)
    direct_up, direct_downs = up_and_downs(events(direct))
    assert any(t < direct_up + 300 for t in direct_downs)
    assert not any(t < last_up + 300 for t in downs)


def test_keda_and_scale_from_zero_wake_a_variant_at_zero_without_losing_a_request(
    tmp_path: Path,
) -> None:
    out = run(tmp_path, stack(0, zero=True, scaledObject=SCALED_OBJECT), "keda",
              "--pod-startup-delay", "20s")  # fmt: skip
    ev = events(out)
    assert ev[0]["from_replicas"] == "0" and ev[0]["to_replicas"] == "1"
    assert ev[0]["by"] == "scale-from-zero"
    first = min(float(r["send_s"]) for r in requests(out))
    assert first <= float(ev[0]["time_s"]) <= first + 0.2  # the engine ticks every 100 ms
    assert "keda" in {e["by"] for e in ev[1:]}
    assert summary(out)["failures"]["count"] == 0
    # the first requests waited in the gateway for the pod's start-up
    ttft = [float(r["ttft_s"]) for r in requests(out) if float(r["send_s"]) <= first]
    assert ttft and min(ttft) >= 20.0 - 0.2


def test_the_same_seed_gives_the_same_scaling(tmp_path: Path, direct: Path) -> None:
    again = run(tmp_path, stack(), "again", "--pod-startup-delay", "30s")
    assert events(again) == events(direct)
    assert (again / "summary_lifecycle_metrics.json").read_bytes() == (
        direct / "summary_lifecycle_metrics.json"
    ).read_bytes()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"hpa": {"spec": {"metrics": []}}}, "variants[0].hpa: spec.metrics: one External metric"),
        (
            {"scaledObject": {"spec": {"triggers": [{"type": "prometheus", "metadata": {}}]}}},
            "variants[0].scaledObject: spec.triggers[0].metadata.threshold: required",
        ),
        ({"hpa": HPA, "scaledObject": SCALED_OBJECT}, "give an hpa or a scaledObject, not both"),
    ],
)
def test_a_bad_scaler_manifest_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: dict[str, Any], message: str
) -> None:
    s, w = tmp_path / "s.yaml", tmp_path / "w.yaml"
    s.write_text(yaml.safe_dump(stack(**extra)), encoding="utf-8")
    w.write_text(yaml.safe_dump(WORKLOAD), encoding="utf-8")
    argv = ["simulate", "--stack", str(s), "--workload", str(w), "--output", str(tmp_path / "o")]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_the_virtual_run_uses_the_live_servers_decision_code(tmp_path: Path) -> None:
    """One implementation: the objects doing the work in virtual time are the classes the
    live servers run (the autoscaler's engines and collector, the simulator's engine, the
    endpoint picker's scheduler), not copies."""
    from pyllmd.autoscaler.collect.source import PrometheusMetricsSource
    from pyllmd.autoscaler.config_table import ControllerConfig
    from pyllmd.autoscaler.loops.saturation import SaturationEngine
    from pyllmd.autoscaler.loops.scalefromzero import ScaleFromZeroEngine
    from pyllmd.autoscaler.run import build_controller
    from pyllmd.epp.scheduling.runner import ProfileRunner
    from pyllmd.sim.batch.scheduler import Engine
    from pyllmd.sim.server import batchloop
    from pyllmd.simulate.cluster import Fleet, StartupDelay, Timers, VirtualCluster
    from pyllmd.simulate.control import Control
    from pyllmd.simulate.deployment import build_engine_spec, parse_stack
    from pyllmd.simulate.gateway import BuiltinGateway
    from pyllmd.simulate.routing import EppRouter
    from pyllmd.simulate.scrape import Scraper
    from pyllmd.stackfile import parse_local_spec

    doc = stack()
    (variant,) = parse_stack(doc)
    fleet = Fleet([variant], {"h100": build_engine_spec(variant)}, ["h100"], Timers(),
                  StartupDelay())  # fmt: skip
    spec = parse_local_spec(doc, require_va=False)
    cluster = VirtualCluster(fleet, spec.vas, spec.config_maps, spec.nodes, lambda: 0.0)
    router = BuiltinGateway()
    control = Control(cluster, fleet, Scraper(NS, MODEL, 4096).store, ControllerConfig(),
                      router, MODEL)  # fmt: skip
    try:
        assert type(control.saturation) is SaturationEngine
        assert type(control.from_zero) is ScaleFromZeroEngine
        assert type(control.saturation.source) is PrometheusMetricsSource
        assert all(type(e) is Engine for e in fleet.engines.values())
        # the live simulator's batch loop and the live controller's builder use the same ones
        assert batchloop.Engine is Engine
        assert "SaturationEngine(" in Path(build_controller.__code__.co_filename).read_text()
        epp = EppRouter(_default_epp(), NS, 0)
        assert type(epp.runner) is ProfileRunner
    finally:
        control.close()


def _default_epp() -> str:
    from pyllmd.epp.config.gateway import DEFAULT_EPP_CONFIG

    return DEFAULT_EPP_CONFIG


def test_the_limiter_keeps_the_variant_within_the_gpu_inventory(
    tmp_path: Path, direct: Path
) -> None:
    doc = stack()
    doc["configMaps"][0]["data"]["default"] = SATURATION + "enableLimiter: true\n"
    doc["nodes"] = [
        {"name": "gpu-node-1", "vendor": "nvidia.com", "product": "NVIDIA-H100-80GB-HBM3",
         "count": 3},
    ]  # fmt: skip
    out = run(tmp_path, doc, "limited", "--pod-startup-delay", "30s")
    unlimited = max(int(e["to_replicas"]) for e in events(direct))
    assert unlimited > 3
    assert max(int(e["to_replicas"]) for e in events(out)) == 3  # three H100s in the cluster


def test_cost_per_minute_follows_the_pods_and_sums_to_the_runs_cost(direct: Path) -> None:
    from pyllmd.simulate.goodput import cost_over_time

    # one pod, three from 90 s, one from 150 s; 2 a pod-second; run ends at 200 s
    counts = [(0.0, "a", 1), (90.0, "a", 3), (150.0, "a", 1)]
    assert cost_over_time(counts, {"a": 2.0}, 60.0, 200.0) == [
        (60.0, "a", 120.0), (120.0, "a", 240.0), (180.0, "a", 240.0), (200.0, "a", 40.0)
    ]  # fmt: skip
    with (direct / "timeline.csv").open(newline="", encoding="utf-8") as f:
        points = [p for p in csv.DictReader(f) if p["dashboard"] == "simulate"]
    cost = sum(float(p["value"]) for p in points if p["panel"].startswith("Cost per minute"))
    doc = json.loads((direct / "slo_and_cost.json").read_text(encoding="utf-8"))
    assert cost == pytest.approx(doc["cost"]["total"])
    shares = [float(p["value"]) for p in points if p["panel"].startswith("SLO attainment")]
    assert shares and all(0 <= s <= 1 for s in shares)
    assert (direct / "timeline-simulate-cost-per-minute-variantcost-x-pod-seconds.png").exists()


@pytest.mark.parametrize("gateway", ["builtin", "envoy-epp"])
def test_a_client_gives_up_on_a_request_the_gateway_holds_at_its_timeout(
    tmp_path: Path, gateway: str
) -> None:
    """A variant at zero wakes after a 60 s start-up; a client keeping one request in flight
    with a 20 s timeout gives up on each held one at 20 s and sends the next then (the
    gateway, or the endpoint picker's flow control, drops it, as when the connection
    closes), not when a pod comes."""
    workload = {
        **WORKLOAD,
        "load": {
            "type": "concurrent",
            "request_timeout": 20,
            "stages": [{"num_requests": 3, "concurrency_level": 1}],
        },
    }
    s, w, out = tmp_path / "stack.yaml", tmp_path / "workload.yaml", tmp_path / "out"
    s.write_text(yaml.safe_dump({**stack(0, zero=True), "gateway": gateway}), encoding="utf-8")
    w.write_text(yaml.safe_dump(workload), encoding="utf-8")
    argv = ["simulate", "--stack", str(s), "--workload", str(w), "--output", str(out),
            "--pod-startup-delay", "60s", "--pod-startup-jitter", "0"]  # fmt: skip
    assert cli_main(argv) == 0
    rows = requests(out)
    assert [float(r["send_s"]) for r in rows] == pytest.approx([0.0, 20.0, 40.0])
    assert [r["error"] for r in rows] == ["Timeout"] * 3
    assert [r["pod"] for r in rows] == [""] * 3  # none reached a pod
    assert summary(out)["failures"]["count"] == 3
