"""The simulator's start-up configuration: flags, environment and the `--config` YAML file.

`model.py` declares every setting once (`SimConfig`); `load.py` reads the sources
in upstream's order; `rules.py` validates; `values.py` parses the structured flag
values; `yamlfile.py` reads the YAML file; `docs.py` renders the flags page.
"""

from pyllmd.sim.config.model import (
    DURATION_FLAGS,
    PROG,
    FakeLora,
    FakeMetrics,
    LoadedConfig,
    LoraModule,
    SimConfig,
    config_to_json,
    flags_markdown,
    load_config,
    sim_flag_specs,
    sim_usage,
)

__all__ = [
    "DURATION_FLAGS",
    "PROG",
    "FakeLora",
    "FakeMetrics",
    "LoadedConfig",
    "LoraModule",
    "SimConfig",
    "config_to_json",
    "flags_markdown",
    "load_config",
    "sim_flag_specs",
    "sim_usage",
]
