"""`--help` of every command, byte for byte: the output users and scripts read.

The golden files were taken from the commands as they are; a change of a flag's
name, type, default or help text shows here first. Regenerate a golden only for
a deliberate change (`PYLLMD_REGEN_GOLDENS=1 make test`) and say why in the
commit. The simulator's two goldens (`pyllmd sim`, `llm-d-inference-sim`) live
with its tests: tests/unit/sim/test_flag_values.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyllmd.cli import main as cli_main

GOLDENS = Path(__file__).parent / "goldens"

COMMANDS = {
    "pyllmd": [],
    "pyllmd_epp": ["epp"],
    "pyllmd_autoscaler": ["autoscaler"],
    "pyllmd_up": ["up"],
    "pyllmd_pd-sidecar": ["pd-sidecar"],
    "pyllmd_dataset": ["dataset"],
    "pyllmd_simulate": ["simulate"],
    "pyllmd_calibrate": ["calibrate"],
}


@pytest.mark.parametrize("name", COMMANDS)
def test_help_of_every_command_is_unchanged(capsys: pytest.CaptureFixture[str], name: str) -> None:
    assert cli_main([*COMMANDS[name], "--help"]) == 0
    out = capsys.readouterr().out
    golden = GOLDENS / f"help_{name}.txt"
    if os.environ.get("PYLLMD_REGEN_GOLDENS") == "1":
        golden.write_text(out, encoding="utf-8")
    assert out, f"{name} --help printed nothing"
    assert out == golden.read_text(encoding="utf-8")
