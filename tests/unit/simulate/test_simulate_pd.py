"""P/D in virtual time: the endpoint picker's `pd-profile-handler` splits each request, the
decode pod's sidecar has it prefilled on the prefill pod (one token), and the decode pod
decodes once the prompt's KV has crossed the network."""

from __future__ import annotations

import csv
from pathlib import Path

from pyllmd.cli import main as cli_main

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
ARGS = f"[--model, {MODEL}, --accelerator, H100, --max-model-len, '8192']"
EPP = """\
  plugins:
  - type: prefill-header-handler
  - type: queue-scorer
  - type: prefill-filter
  - type: decode-filter
  - type: max-score-picker
  - type: always-disagg-pd-decider
  - type: pd-profile-handler
    parameters: {deciderPluginName: always-disagg-pd-decider}
  schedulingProfiles:
  - name: prefill
    plugins: [{pluginRef: prefill-filter}, {pluginRef: queue-scorer}, {pluginRef: max-score-picker}]
  - name: decode
    plugins: [{pluginRef: decode-filter}, {pluginRef: queue-scorer}, {pluginRef: max-score-picker}]
"""
STACK = f"""\
namespace: llm-d
gateway: envoy-epp
eppConfig: |
{EPP}variants:
  - deployment: {{name: prefill, replicas: 1, labels: {{llm-d.ai/role: prefill}}, args: {ARGS}}}
  - deployment: {{name: decode, replicas: 2, labels: {{llm-d.ai/role: decode}}, args: {ARGS}}}
"""
WORKLOAD = f"""\
api: {{type: completion, streaming: true}}
data:
  type: random
  input_distribution: {{min: 3000, max: 3000, mean: 3000, std_dev: 0}}
  output_distribution: {{min: 100, max: 100, mean: 100, std_dev: 0}}
server: {{type: vllm, model_name: {MODEL}, ignore_eos: true}}
load: {{type: poisson, stages: [{{rate: 4, duration: 35}}]}}
"""
# Llama-3.1-8B: 32 layers x 8 KV heads x 128 x (K and V) x 2 bytes = 128 KiB a token; H100's
# network 50 GB/s; plus 1 ms
TRANSFER_S = 0.001 + 3000 * 131072 / 50e9


def run(tmp_path: Path, stack: str) -> list[dict[str, str]]:
    (tmp_path / "s.yaml").write_text(stack, encoding="utf-8")
    (tmp_path / "w.yaml").write_text(WORKLOAD, encoding="utf-8")
    out = tmp_path / "out"
    argv = ["simulate", "--stack", str(tmp_path / "s.yaml"), "--workload",
            str(tmp_path / "w.yaml"), "--output", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    with (out / "per_request.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_disaggregated_request_is_prefilled_elsewhere_and_decoded_after_the_transfer(
    tmp_path: Path,
) -> None:
    rows = run(tmp_path, STACK)
    assert rows and all(r["error"] == "" for r in rows)
    assert {r["pod"] for r in rows} == {"decode-0", "decode-1"}  # the decode pods answer
    for r in rows:
        # the decode pod sees the request after the prefill pod's prefill and the transfer
        assert float(r["arrival_s"]) - float(r["send_s"]) > TRANSFER_S
        # ... and computes one prompt token itself: its own prefill is a single step
        assert float(r["prefill_s"]) < 0.05
    # the prefill pod did the prompts' work: its metrics show the requests it completed
    with (tmp_path / "out" / "timeline.csv").open(newline="", encoding="utf-8") as f:
        done = [
            float(p["value"])
            for p in csv.DictReader(f)
            if p["series"] == "prefill-0" and p["panel"] == "Requests completed per pod"
        ]
    assert done and max(done) > 0


def test_without_the_split_the_same_pods_serve_whole_requests(tmp_path: Path) -> None:
    variants = STACK[STACK.index("variants:") :]
    rows = run(tmp_path, "namespace: llm-d\n" + variants)  # the built-in gateway: no P/D
    assert {r["pod"] for r in rows} == {"prefill-0", "decode-0", "decode-1"}
    assert all(float(r["arrival_s"]) - float(r["send_s"]) < TRANSFER_S for r in rows)
