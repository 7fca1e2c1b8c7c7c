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

from pyllmd.cli import main as cli_main

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
