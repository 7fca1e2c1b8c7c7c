"""The replay's open-loop shortcuts change nothing: with them (pods run only as far as
something reads them; timers fire without moving the pods; pods settled until the picker's
read stay behind) and without them (every pod kept in lock step with every event), the same
stack and workload give the same per-request CSV and reports, byte for byte.

The stack has what the shortcuts touch: the endpoint picker's default profile with flow
control, an autoscaled variant (the autoscaler's cycles and the 100 ms scale-from-zero tick
are timers), scrapes, and a cache drop (a timer that touches an engine)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pyllmd.simulate import replay as replay_module
from pyllmd.simulate.run import load_options, simulate

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
ARGS = ["--model", MODEL, "--accelerator", "H100", "--max-num-seqs", "16",
        "--max-model-len", "4096", "--kv-cache-size", "1200"]  # fmt: skip
STACK = {
    "namespace": "lazy",
    "gateway": "envoy-epp",
    "variants": [
        {"deployment": {"name": "fixed", "replicas": 3, "args": ARGS}},
        {
            "variantAutoscaling": {
                "apiVersion": "llmd.ai/v1alpha1",
                "kind": "VariantAutoscaling",
                "metadata": {
                    "name": "auto",
                    "labels": {"inference.optimization/acceleratorName": "H100"},
                },
                "spec": {
                    "scaleTargetRef": {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": "auto",
                    },  # fmt: skip
                    "modelID": MODEL,
                    "variantCost": "10.0",
                },
            },
            "deployment": {"replicas": 1, "args": ARGS},
        },
    ],
}
WORKLOAD = {
    "api": {"type": "completion", "streaming": True},
    "data": {
        "type": "shared_prefix",
        "shared_prefix": {
            "num_unique_system_prompts": 6,
            "num_users_per_system_prompt": 5,
            "system_prompt_len": 600,
            "question_len": 40,
            "output_len": 60,
        },
    },
    "server": {"type": "vllm", "model_name": MODEL, "ignore_eos": True},
    "load": {"type": "poisson", "stages": [{"rate": 12.0, "duration": 40.0}]},
}


def _outputs(tmp: Path, name: str) -> dict[str, bytes]:
    (tmp / "stack.yaml").write_text(yaml.safe_dump(STACK), encoding="utf-8")
    (tmp / "wl.yaml").write_text(yaml.safe_dump(WORKLOAD), encoding="utf-8")
    out = tmp / name
    config = load_options(["--stack", str(tmp / "stack.yaml"), "--workload",
                           str(tmp / "wl.yaml"), "--output", str(out), "--interval", "10s",
                           "--seed", "5"])  # fmt: skip
    simulate(config, cache_drops=[(17.3, "fixed-1")], plots=False)
    names = ("per_request.csv", "summary_lifecycle_metrics.json", "scale_events.csv")
    return {n: (out / n).read_bytes() for n in names}


def test_the_open_loop_shortcuts_give_what_lock_step_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lazy = _outputs(tmp_path, "lazy")
    monkeypatch.setattr(replay_module, "_open_loop", lambda *_: False)
    strict = _outputs(tmp_path, "strict")
    assert lazy["per_request.csv"].count(b"\n") > 400  # the workload ran
    assert lazy == strict
