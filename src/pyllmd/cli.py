"""The `pyllmd` command and its sub-commands; thin: parse, build, run.

`llm-d-inference-sim` is installed as an alias of `pyllmd sim`, so the Go
binary's command lines work unchanged.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence

from pyllmd.core import logging as pylog
from pyllmd.core.errors import ConfigError
from pyllmd.core.flags import HelpRequested

log = logging.getLogger("pyllmd")

USAGE = """usage: pyllmd <command> [flags]

commands:
  sim     run the inference simulator (drop-in for llm-d-inference-sim)

Run 'pyllmd <command> --help' for the flags of a command.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `pyllmd`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "sim":
        return sim_main(rest)
    print(f"pyllmd: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


def sim_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `pyllmd sim` / `llm-d-inference-sim`."""
    from pyllmd.sim.config import config_to_json, load_config

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        loaded = load_config(args, os.environ, time.time_ns())
    except HelpRequested as h:
        print(h.text, end="" if str(h.text).endswith("\n") else "\n")
        return 0
    except ConfigError as e:
        print(f"llm-d-inference-sim: error: {e}", file=sys.stderr)
        return 1
    cfg = loaded.config
    pylog.setup(cfg.v)
    for warning in loaded.warnings:
        log.warning("%s", warning)
    log.info("configuration %s", config_to_json(cfg))
    from pyllmd.sim.server import StartupError, run

    try:
        run(cfg, cfg.host)
    except StartupError as e:
        print(f"llm-d-inference-sim: error: {e}", file=sys.stderr)
        return 1
    return 0
