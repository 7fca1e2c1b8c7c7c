"""The `pyllmd` command and its sub-commands; thin: parse, build, run.

`llm-d-inference-sim` is installed as an alias of `pyllmd sim`, so the Go
binary's command lines work unchanged. `--version`, on its own or after any
command, prints `pyllmd <version>` (the flag parser raises `VersionRequested`
for it; every command's entry point here turns that into the one line).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pyllmd import __version__
from pyllmd.core import logging as pylog
from pyllmd.core.errors import ConfigError, one_line
from pyllmd.core.flags import FlagKind, FlagSpec, HelpRequested, VersionRequested, parse_flags

if TYPE_CHECKING:
    from pyllmd.stack.local import StackOptions

log = logging.getLogger("pyllmd")

USAGE = """usage: pyllmd <command> [flags]

commands:
  sim         run the inference simulator (drop-in for llm-d-inference-sim)
  autoscaler  run the workload variant autoscaler controller (drop-in for llm-d WVA)
  epp         run the endpoint picker, an Envoy ext_proc server (drop-in for the llm-d EPP)
  up          run the local stack: simulators, gateway, Prometheus and the autoscaler
  pd-sidecar  run the P/D routing sidecar in front of a decode server (llm-d pd-sidecar)
  dataset     build a simulator dataset (SQLite) from ShareGPT JSON or JSONL conversations

Run 'pyllmd <command> --help' for the flags of a command, 'pyllmd --version' for the version.
"""


def version_text() -> str:
    """What `--version` prints, for every command."""
    return f"pyllmd {__version__}"


def _answers_version(entry: Callable[[Sequence[str]], int]) -> Callable[[Sequence[str]], int]:
    """Let a command's flag parser hand `--version` back to here: print it, exit 0."""

    @functools.wraps(entry)
    def run(argv: Sequence[str]) -> int:
        try:
            return entry(argv)
        except VersionRequested:
            print(version_text())
            return 0

    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `pyllmd`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] == "--version":
        print(version_text())
        return 0
    command, rest = args[0], args[1:]
    if command == "sim":
        return sim_main(rest, prog="pyllmd sim")
    entry = COMMANDS.get(command)
    if entry is not None:
        return _answers_version(entry)(rest)
    print(f"pyllmd: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


def sim_main(argv: Sequence[str] | None = None, prog: str = "llm-d-inference-sim") -> int:
    """Entry point of `pyllmd sim` / `llm-d-inference-sim` (`prog` in usage and errors)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return _answers_version(lambda a: _sim(a, prog))(args)


def _sim(args: Sequence[str], prog: str) -> int:
    from pyllmd.sim.config import config_to_json, load_config

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
    from pyllmd.sim.dataset.download import ensure_dataset_file
    from pyllmd.sim.run import StartupError, run

    try:
        if cfg.mode != "echo":
            ensure_dataset_file(cfg.dataset_url, cfg.dataset_path)  # before listening
        run(cfg, cfg.host)
    except (StartupError, ConfigError) as e:  # ConfigError: dataset or tokenizer file
        print(f"{prog}: error: {one_line(str(e))}", file=sys.stderr)
        return 1
    return 0


UP_FLAGS = (
    FlagSpec(
        "stack", FlagKind.STRING, "", "local stack file (default: the one shipped with pyllmd)"
    ),
    FlagSpec("port", FlagKind.INT, 8000, "gateway port (the OpenAI API); 0: any free port"),
    FlagSpec(
        "admin-port",
        FlagKind.INT,
        8001,
        "autoscaler admin port (metrics, health, VariantAutoscalings); 0: any free port",
    ),
    FlagSpec("prometheus-port", FlagKind.INT, 8002, "Prometheus port (HTTPS); 0: any free port"),
    FlagSpec("interval", FlagKind.DURATION, 15.0, "autoscaler cycle period"),
    FlagSpec("scrape-interval", FlagKind.STRING, "1s", "Prometheus scrape interval"),
    FlagSpec("workdir", FlagKind.STRING, "", "directory for Prometheus data (default: temporary)"),
    FlagSpec("v", FlagKind.INT, 2, "log verbosity (4: debug)", shorthand="v"),
)
_PROM_DURATION = re.compile(r"(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?")


def up_options(argv: Sequence[str]) -> tuple[StackOptions, int]:
    """`pyllmd up`'s flags as StackOptions and the log verbosity; ConfigError (one line
    naming the flag and the rule) or HelpRequested/VersionRequested otherwise."""
    from pyllmd.stack.local import StackOptions, packaged_stack

    parsed = parse_flags(list(argv), UP_FLAGS, prog="pyllmd up")
    if parsed.args:
        raise ConfigError(f"unexpected argument {parsed.args[0]!r} (flags only)")
    values = parsed.effective(UP_FLAGS)
    ports = {}
    for flag in ("port", "admin-port", "prometheus-port"):
        port = int(str(values[flag]))
        if not 0 <= port <= 65535:
            raise ConfigError(f"--{flag}: must be between 0 and 65535, got {port}")
        ports[flag] = port
    interval = float(str(values["interval"]))
    if not interval > 0:
        raise ConfigError(f"--interval: must be a positive duration, got {values['interval']}")
    scrape = str(values["scrape-interval"])
    match = _PROM_DURATION.fullmatch(scrape)
    if not scrape or match is None or not any(int(d) for d in re.findall(r"\d+", scrape)):
        raise ConfigError(
            f"--scrape-interval: must be a positive Prometheus duration like 1s or 500ms, "
            f"got {scrape!r}"
        )
    verbosity = int(str(values["v"]))
    if verbosity < 0:
        raise ConfigError(f"--v: must be 0 or more, got {verbosity}")
    workdir = str(values["workdir"])
    if workdir and Path(workdir).exists() and not Path(workdir).is_dir():
        raise ConfigError(f"--workdir {workdir}: not a directory")
    stack = str(values["stack"])
    opts = StackOptions(
        stack_file=Path(stack) if stack else packaged_stack(),
        gateway_port=ports["port"],
        admin_port=ports["admin-port"],
        prometheus_port=ports["prometheus-port"],
        interval=interval,
        scrape_interval=scrape,
        workdir=Path(workdir) if workdir else None,
    )
    return opts, verbosity


def up_main(argv: Sequence[str]) -> int:
    """Entry point of `pyllmd up`."""
    from pyllmd.core.process import raise_open_files_limit
    from pyllmd.stack.local import run_local_stack

    try:
        opts, verbosity = up_options(argv)
    except HelpRequested as h:
        print(h.text, end="")
        return 0
    except ConfigError as e:
        print(f"pyllmd up: error: {e}", file=sys.stderr)
        return 1
    pylog.setup(verbosity)
    raise_open_files_limit()  # the gateway holds two sockets per request in flight
    return _run_until_signal(lambda stop: run_local_stack(opts, stop), "pyllmd up")


def _run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]], prog: str) -> int:
    """Run `main(stop)` on uvloop until SIGINT/SIGTERM; one-line errors, exit 1.

    The first signal sets `stop` (an orderly shutdown); a second one kills every child
    process at once and exits with 128 + the signal number.
    """
    import signal

    import uvloop

    from pyllmd.core.process import kill_all

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(sig: signal.Signals) -> None:
            if stop.is_set():
                kill_all()
                print(f"{prog}: {sig.name} again: killed the child processes", file=sys.stderr)
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(128 + sig.value)
            log.info("signal=%s; stopping (send it again to stop at once)", sig.name)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
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
    from pyllmd.sim.dataset.tool import main as tool_main

    return tool_main(list(argv))


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "up": up_main,
    "autoscaler": autoscaler_main,
    "epp": epp_main,
    "pd-sidecar": pd_sidecar_main,
    "dataset": dataset_main,
}
