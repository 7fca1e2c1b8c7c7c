"""Golden replay through the endpoint picker: `pyllmd simulate` of `golden/epp_workload.yaml`
(shared-prefix prompts at poisson arrivals, a light stage and an overloaded one) against
`golden/epp_stack.yaml` (six pods behind `gateway: envoy-epp` with the default
EndpointPickerConfig: the prefix-cache, queue and KV-cache-utilization scorers and flow
control). Every figure stays what it was when the files were written, so that a change made
for speed in the replay loop, the router or the picker's plugins cannot move a result: the
summary and per-stage reports number for number, and the per-request CSV, the dashboards'
timeline and the SLO/cost report byte for byte (by SHA-256).

Regenerate only for a deliberate change of results, as test_replay_golden.py says:
`PYLLMD_UPDATE_GOLDEN=1 pytest tests/unit/simulate/test_replay_golden_epp.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from pyllmd.cli import main as cli_main
from pyllmd.simulate import replay as replay_module

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("PYLLMD_UPDATE_GOLDEN") == "1"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pyllmd_simulate_through_the_endpoint_picker_reports_every_figure_as_before(
    tmp_path: Path,
) -> None:
    stack = tmp_path / "stack.yaml"
    text = (GOLDEN / "epp_stack.yaml").read_text(encoding="utf-8")
    stack.write_text(text.replace("golden-profile", str(GOLDEN / "profile.yaml")), "utf-8")
    out = tmp_path / "out"
    argv = ["simulate", "--stack", str(stack), "--workload", str(GOLDEN / "epp_workload.yaml")]
    assert cli_main([*argv, "--output", str(out), "--seed", "5"]) == 0
    reports = {
        p.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(out.glob("*_lifecycle_metrics.json"))
    }
    rows = (out / "per_request.csv").read_text(encoding="utf-8").splitlines()[1:]
    held = [float(r.split(",")[6]) - float(r.split(",")[5]) for r in rows]
    assert max(held) > 1.0  # flow control held requests in the overloaded stage
    assert len({r.split(",")[2] for r in rows}) == 6  # the picker spread them over every pod
    got = {
        "reports": reports,
        "per_request_csv_sha256": _sha(out / "per_request.csv"),
        "per_request_rows": len(rows),
        "timeline_csv_sha256": _sha(out / "timeline.csv"),
        "slo_and_cost": json.loads((out / "slo_and_cost.json").read_text(encoding="utf-8")),
    }
    path = GOLDEN / "simulate_epp.json"
    if UPDATE:
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    want = json.loads(path.read_text(encoding="utf-8"))
    assert got == want, "simulate_epp.json changed (see the module docstring)"


AUTOSCALED = """\
namespace: t
gateway: envoy-epp
variants:
  - variantAutoscaling:
      apiVersion: llmd.ai/v1alpha1
      kind: VariantAutoscaling
      metadata:
        name: auto
        labels: {inference.optimization/acceleratorName: H100}
      spec:
        scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: auto}
        modelID: meta-llama/Llama-2-7b-hf
    deployment:
      replicas: 2
      args: [--model, meta-llama/Llama-2-7b-hf, --accelerator, H100, --latency-calculator,
             batch, --max-num-seqs, "16", --max-num-batched-tokens, "1024", --max-model-len,
             "4096", --kv-cache-size, "400", --latency-profile, PROFILE]
configMaps:
  - metadata: {name: wva-saturation-scaling-config, namespace: workload-variant-autoscaler-system}
    data:
      default: |
        kvCacheThreshold: 0.80
        queueLengthThreshold: 5
        kvSpareTrigger: 0.1
        queueSpareTrigger: 3
"""
BURST = """\
api: {type: completion, streaming: true}
data:
  type: shared_prefix
  shared_prefix: {num_unique_system_prompts: 8, num_users_per_system_prompt: 6,
                  system_prompt_len: 300, question_len: 80, output_len: 100}
server: {type: vllm, ignore_eos: true}
load:
  type: poisson
  num_workers: 4
  worker_max_concurrency: 500
  stages: [{rate: 60, duration: 60}, {rate: 2, duration: 120}]
"""


def test_pods_left_behind_by_open_loop_client_actions_give_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the client is open-loop, a client action brings only the pods it reads to its
    time and the others catch up later (replay._open_loop): with the autoscaler scaling a
    variant up under a burst and down after it, every output is what the replay gives when
    every pod is brought to every client action's time."""
    stack = tmp_path / "stack.yaml"
    stack.write_text(AUTOSCALED.replace("PROFILE", str(GOLDEN / "profile.yaml")), "utf-8")
    workload = tmp_path / "burst.yaml"
    workload.write_text(BURST, encoding="utf-8")
    flags = ["--interval", "15s", "--pod-startup-delay", "10s", "--seed", "2"]

    def outputs(name: str) -> dict[str, str]:
        out = tmp_path / name
        argv = ["simulate", "--stack", str(stack), "--workload", str(workload)]
        assert cli_main([*argv, "--output", str(out), *flags]) == 0
        files = ("per_request.csv", "scale_events.csv", "slo_and_cost.json", "timeline.csv")
        return {f: _sha(out / f) for f in files}

    lazy = outputs("lazy")
    events = (tmp_path / "lazy" / "scale_events.csv").read_text(encoding="utf-8")
    ups = [
        line
        for line in events.splitlines()[1:]
        if int(line.split(",")[3]) > int(line.split(",")[2])
    ]
    downs = [
        line
        for line in events.splitlines()[1:]
        if int(line.split(",")[3]) < int(line.split(",")[2])
    ]
    assert ups and downs  # the autoscaler scaled both ways during the run
    opened: list[bool] = []
    real = replay_module._open_loop

    def counted(*args: object) -> bool:
        opened.append(real(*args))  # type: ignore[arg-type]
        return opened[-1]

    monkeypatch.setattr(replay_module, "_open_loop", counted)
    assert outputs("counted") == lazy and any(opened)  # pods were left behind
    monkeypatch.setattr(replay_module, "_open_loop", lambda *args: False)
    assert outputs("eager") == lazy
