"""The `pyllmd` command and its sub-commands; thin: parse, build, run.

`llm-d-inference-sim` is installed as an alias of `pyllmd sim`, so the Go
binary's command lines work unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

from pyllmd.core import logging as pylog
from pyllmd.core.errors import ConfigError, one_line
from pyllmd.core.flags import FlagKind, FlagSpec, HelpRequested, parse_flags

log = logging.getLogger("pyllmd")

USAGE = """usage: pyllmd <command> [flags]

commands:
  sim         run the inference simulator (drop-in for llm-d-inference-sim)
  autoscaler  run the workload variant autoscaler controller (drop-in for llm-d WVA)
  epp         run the endpoint picker, an Envoy ext_proc server (drop-in for the llm-d EPP)
  up          run the local stack: simulators, gateway, Prometheus and the autoscaler
  pd-sidecar  run the P/D routing sidecar in front of a decode server (llm-d pd-sidecar)
  dataset     build a simulator dataset (SQLite) from ShareGPT JSON or JSONL conversations

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
        return sim_main(rest, prog="pyllmd sim")
    if command == "up":
        return up_main(rest)
    if command == "autoscaler":
        return autoscaler_main(rest)
    if command == "epp":
        return epp_main(rest)
    if command == "pd-sidecar":
        return pd_sidecar_main(rest)
    if command == "dataset":
        return dataset_main(rest)
    print(f"pyllmd: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


def sim_main(argv: Sequence[str] | None = None, prog: str = "llm-d-inference-sim") -> int:
    """Entry point of `pyllmd sim` / `llm-d-inference-sim` (`prog` in usage and errors)."""
    from pyllmd.sim.config import config_to_json, load_config

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        loaded = load_config(args, os.environ, time.time_ns(), prog)
    except HelpRequested as h:
        print(h.text, end="" if str(h.text).endswith("\n") else "\n")
        return 0
    except ConfigError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    cfg = loaded.config
    pylog.setup(cfg.v)
    for warning in loaded.warnings:
        log.warning("%s", warning)
    log.info("configuration %s", config_to_json(cfg))
    from pyllmd.sim.dataset_store import ensure_dataset_file
    from pyllmd.sim.server import StartupError, run

    try:
        if cfg.mode != "echo":
            ensure_dataset_file(cfg.dataset_url, cfg.dataset_path)  # before listening
        run(cfg, cfg.host)
    except (StartupError, ConfigError) as e:  # ConfigError: dataset or tokenizer file
        print(f"{prog}: error: {one_line(str(e))}", file=sys.stderr)
        return 1
    return 0


UP_FLAGS = (
    FlagSpec("stack", FlagKind.STRING, "config/local/stack.yaml", "local stack file"),
    FlagSpec("port", FlagKind.INT, 8000, "gateway port (the OpenAI API)"),
    FlagSpec("interval", FlagKind.DURATION, 15.0, "autoscaler cycle period"),
    FlagSpec("scrape-interval", FlagKind.STRING, "1s", "Prometheus scrape interval"),
    FlagSpec("workdir", FlagKind.STRING, "", "directory for Prometheus data (default: temporary)"),
    FlagSpec("v", FlagKind.INT, 2, "log verbosity"),
)


def up_main(argv: Sequence[str]) -> int:
    """Entry point of `pyllmd up`."""
    from pathlib import Path

    from pyllmd.stack.local import StackOptions, run_local_stack

    try:
        values = parse_flags(list(argv), UP_FLAGS, prog="pyllmd up").effective(UP_FLAGS)
    except HelpRequested as h:
        print(h.text, end="")
        return 0
    except ConfigError as e:
        print(f"pyllmd up: error: {e}", file=sys.stderr)
        return 1
    pylog.setup(int(str(values["v"])))
    workdir = str(values["workdir"])
    opts = StackOptions(
        stack_file=Path(str(values["stack"])),
        gateway_port=int(str(values["port"])),
        interval=float(str(values["interval"])),
        scrape_interval=str(values["scrape-interval"]),
        workdir=Path(workdir) if workdir else None,
    )
    return _run_until_signal(lambda stop: run_local_stack(opts, stop), "pyllmd up")


def _run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]], prog: str) -> int:
    """Run `main(stop)` on uvloop until SIGINT/SIGTERM; one-line errors, exit 1."""
    import signal

    import uvloop

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        uvloop.run(runner())
    except (ConfigError, FileNotFoundError, RuntimeError, OSError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    return 0


def autoscaler_main(argv: Sequence[str]) -> int:
    """Entry point of `pyllmd autoscaler` (Kubernetes mode)."""
    from pyllmd.autoscaler.run import run_controller

    return run_controller(list(argv), _run_until_signal)


def epp_main(argv: Sequence[str]) -> int:
    """Entry point of `pyllmd epp` (static endpoints; Kubernetes discovery is not built yet)."""
    from pyllmd.epp.run import run_epp

    return run_epp(list(argv), _run_until_signal)


def pd_sidecar_main(argv: Sequence[str]) -> int:
    """Entry point of `pyllmd pd-sidecar` (llm-d's P/D routing sidecar)."""
    from pyllmd.stack.pdsidecar import run_pd_sidecar

    return run_pd_sidecar(list(argv), _run_until_signal)


def dataset_main(argv: Sequence[str]) -> int:
    """Entry point of `pyllmd dataset` (upstream's dataset-tool, local input)."""
    from pyllmd.sim.dataset_tool import main as tool_main

    return tool_main(list(argv))
