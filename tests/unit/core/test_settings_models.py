"""Every command's settings model agrees with what users see: each field is declared
once, maps to its own flag / environment variable / config-file key, and `--help`
shows the model's defaults (core/settings)."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from pyllmd.autoscaler.config_table import ControllerConfig
from pyllmd.core.flags import FlagKind, FlagSpec, default_text
from pyllmd.core.settings import flag_specs, parse_command_line, settings_of, usage_text
from pyllmd.core.settings.fields import UNSET
from pyllmd.core.zap import ZAP_FLAGS
from pyllmd.epp.options import EppOptions
from pyllmd.sidecar.config import SidecarOptions
from pyllmd.sim.config import SimConfig
from pyllmd.sim.dataset.tool import DatasetFlags
from pyllmd.stack.up_config import UpConfig

MODELS: dict[str, type] = {
    "llm-d-inference-sim": SimConfig,
    "pyllmd epp": EppOptions,
    "pyllmd autoscaler": ControllerConfig,
    "pyllmd pd-sidecar": SidecarOptions,
    "pyllmd up": UpConfig,
    "pyllmd dataset": DatasetFlags,
}
CASES = pytest.mark.parametrize("prog", list(MODELS))


def _duplicates(names: list[str]) -> list[str]:
    return sorted(name for name, count in Counter(names).items() if count > 1)


@CASES
def test_each_field_has_its_own_flag_env_and_file_key(prog: str) -> None:
    rows = settings_of(MODELS[prog])
    assert [r.field for r in rows] == list(MODELS[prog].__pydantic_fields__)
    assert _duplicates([r.flag for r in rows if r.flag]) == []
    assert _duplicates([name for r in rows for name in r.env]) == []
    assert _duplicates([r.key for r in rows if r.key]) == []
    sourceless = [r.field for r in rows if not (r.flag or r.env or r.key or r.derived)]
    assert sourceless == [], f"{prog}: fields with no flag, env or file key"


@CASES
def test_the_flag_table_is_the_models_flags(prog: str) -> None:
    model = MODELS[prog]
    rows = [r for r in settings_of(model) if r.flag]
    specs = flag_specs(model)
    names = [s.name for s in specs]
    assert _duplicates(names) == []
    assert names[: len(rows)] == [r.flag for r in rows]
    for row, spec in zip(rows, specs, strict=False):
        assert (spec.kind, spec.default, spec.help) == (row.value_kind, row.flag_default, row.help)


@CASES
def test_help_and_an_empty_command_line_show_the_model_defaults(prog: str) -> None:
    model = MODELS[prog]
    instance = model()
    text = usage_text(model, prog)
    given = parse_command_line(model, [], prog)
    assert given.given == {}
    effective = given.effective()
    for row in settings_of(model):
        assert getattr(instance, row.field) == row.default, row.field
        if not row.flag:
            continue
        shown = row.flag_default if row.flag_default_override is not UNSET else row.default
        assert effective[row.field] == shown, row.field
        expected = default_text(FlagSpec(row.flag, row.value_kind, shown, row.help))
        pattern = rf"^\s+(-\w, )?--{re.escape(row.flag)}( |$)"
        (line,) = [ln for ln in text.splitlines() if re.match(pattern, ln)]
        if expected:
            assert line.endswith(f" (default {expected})"), line
        elif "`" not in row.help:  # pflag turns a `name` in the help into the value's name
            assert line.endswith(row.help), line


@CASES
def test_shared_logging_flags_are_declared_once(prog: str) -> None:
    rows = {r.flag: r for r in settings_of(MODELS[prog]) if r.flag}
    for name, (kind, default) in ZAP_FLAGS.items():
        if name in rows:
            assert (rows[name].value_kind, rows[name].default, rows[name].group) == (
                kind,
                default,
                "zap",
            )
    if "v" in rows:
        assert rows["v"].value_kind is FlagKind.INT
