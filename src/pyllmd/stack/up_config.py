"""`pyllmd up`'s settings: one model, `UpConfig`, where each flag is declared once.

`UP_FLAGS` (the pflag table) and `--help` come from the model (core/settings);
`up_options` parses a command line, checks each value (one line naming the flag
and the rule) and turns it into the stack's `StackOptions` and the log verbosity.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as settings_dataclass

from pyllmd.core.errors import ConfigError
from pyllmd.core.flags import FlagKind
from pyllmd.core.logging import verbosity
from pyllmd.core.settings import build, flag_specs, parse_command_line, setting

if TYPE_CHECKING:
    from pyllmd.stack.run import StackOptions

__all__ = ["PROG", "UP_FLAGS", "UpConfig", "up_options"]

PROG = "pyllmd up"
_PROM_DURATION = re.compile(r"(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?")


@settings_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class UpConfig:
    """Every `pyllmd up` flag (port 0: any free port)."""

    stack: str = setting(
        "", "local stack file (default: the one shipped with pyllmd)", flag="stack"
    )
    port: int = setting(8000, "gateway port (the OpenAI API); 0: any free port", flag="port")
    admin_port: int = setting(
        8001,
        "autoscaler admin port (metrics, health, VariantAutoscalings); 0: any free port",
        flag="admin-port",
    )
    prometheus_port: int = setting(
        8002, "Prometheus port (HTTPS); 0: any free port", flag="prometheus-port"
    )
    interval: float = setting(
        15.0, "autoscaler cycle period", flag="interval", kind=FlagKind.DURATION
    )
    scrape_interval: str = setting("1s", "Prometheus scrape interval", flag="scrape-interval")
    workdir: str = setting("", "directory for Prometheus data (default: temporary)", flag="workdir")
    no_ui: bool = setting(
        False,
        "no live terminal dashboard (it is on only when stdout is a terminal; "
        "logs go to a file while it runs)",
        flag="no-ui",
    )
    v: int = verbosity("log verbosity (4: debug)")


UP_FLAGS = flag_specs(UpConfig)


def _check(config: UpConfig) -> None:
    """Each value's rule, in flag order; one line naming the flag."""
    for flag in ("port", "admin-port", "prometheus-port"):
        port = int(getattr(config, flag.replace("-", "_")))
        if not 0 <= port <= 65535:
            raise ConfigError(f"--{flag}: must be between 0 and 65535, got {port}")
    if not config.interval > 0:
        raise ConfigError(f"--interval: must be a positive duration, got {config.interval}")
    scrape = config.scrape_interval
    match = _PROM_DURATION.fullmatch(scrape)
    if not scrape or match is None or not any(int(d) for d in re.findall(r"\d+", scrape)):
        raise ConfigError(
            f"--scrape-interval: must be a positive Prometheus duration like 1s or 500ms, "
            f"got {scrape!r}"
        )
    if config.v < 0:
        raise ConfigError(f"--v: must be 0 or more, got {config.v}")
    workdir = config.workdir
    if workdir and Path(workdir).exists() and not Path(workdir).is_dir():
        raise ConfigError(f"--workdir {workdir}: not a directory")


def up_options(argv: Sequence[str]) -> tuple[StackOptions, int]:
    """`pyllmd up`'s flags as StackOptions and the log verbosity; ConfigError (one line
    naming the flag and the rule) or HelpRequested/VersionRequested otherwise."""
    from pyllmd.stack.run import StackOptions, packaged_stack
    from pyllmd.stack.ui import ui_enabled

    line = parse_command_line(UpConfig, list(argv), PROG)
    if line.args:
        raise ConfigError(f"unexpected argument {line.args[0]!r} (flags only)")
    config = build(UpConfig, line.effective())
    _check(config)
    opts = StackOptions(
        stack_file=Path(config.stack) if config.stack else packaged_stack(),
        gateway_port=config.port,
        admin_port=config.admin_port,
        prometheus_port=config.prometheus_port,
        interval=config.interval,
        scrape_interval=config.scrape_interval,
        workdir=Path(config.workdir) if config.workdir else None,
        ui=ui_enabled(config.no_ui, sys.stdout.isatty()),
    )
    return opts, config.v
