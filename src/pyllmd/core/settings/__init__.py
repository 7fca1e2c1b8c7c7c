"""Settings declared once: one model per command, from which its flags, environment
and config-file keys, `--help` and flag page are derived.

* `fields.py`: `setting(...)` declares a model field and its `Setting` (flag, kind,
  env, key, help, rule, deprecation, docs group);
* `table.py`: a model read back as rows; the pflag table, usage, command-line parse;
* `sources.py`: environment and file values, and each command's precedence;
* `docs.py`: cells and tables of the generated flag pages.

The commands' models live with each part (`sim/config/model.py`, `epp/options/model.py`,
`autoscaler/config_table.py`, `sidecar/config.py`, `stack/up_config.py`,
`sim/dataset/tool.py`); the shared logging flags in `core/logging.py` (klog) and
`core/zap.py` (controller-runtime's zap flags).
"""

from pyllmd.core.settings.docs import flag_cell, markdown_table
from pyllmd.core.settings.fields import UNSET, Setting, setting
from pyllmd.core.settings.sources import Source, env_values, file_values, resolve, text_value
from pyllmd.core.settings.table import (
    CommandLine,
    accepted_flags,
    build,
    flag_specs,
    flags_only,
    parse_command_line,
    settings_of,
    usage_text,
)

__all__ = [
    "UNSET",
    "CommandLine",
    "Setting",
    "Source",
    "accepted_flags",
    "build",
    "env_values",
    "file_values",
    "flag_cell",
    "flag_specs",
    "flags_only",
    "markdown_table",
    "parse_command_line",
    "resolve",
    "setting",
    "settings_of",
    "text_value",
    "usage_text",
]
