"""The `pyllmd` command and its sub-commands; thin: parse, build, run.

`llm-d-inference-sim` is installed as an alias of `pyllmd sim`, so the Go
binary's command lines work unchanged. Every command opens the same way
(`core/entry.py`: parse, `--help`/`--version`, one error line, logging, run);
`--version`, on its own or after any command, prints `pyllmd <version>`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from pyllmd.core.entry import error_line, run_command, version_text
from pyllmd.core.errors import ConfigError

if TYPE_CHECKING:
    from pyllmd.sim.config import LoadedConfig
    from pyllmd.stack.run import StackOptions

log = logging.getLogger("pyllmd")

USAGE = """usage: pyllmd <command> [flags]

commands:
  sim         run the inference simulator (drop-in for llm-d-inference-sim)
  autoscaler  run the workload variant autoscaler controller (drop-in for llm-d WVA)
  epp         run the endpoint picker, an Envoy ext_proc server (drop-in for the llm-d EPP)
  up          run the local stack: simulators, gateway, Prometheus and the autoscaler
  pd-sidecar  run the P/D routing sidecar in front of a decode server (llm-d pd-sidecar)
  simulate    replay an inference-perf workload against a stack file in virtual time
  calibrate   fit the batch latency model to measured vLLM runs (inference-perf summaries)
  dataset     build a simulator dataset (SQLite) from ShareGPT JSON or JSONL conversations

Run 'pyllmd <command> --help' for the flags of a command, 'pyllmd --version' for the version.
"""


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
        return entry(rest)
    print(f"pyllmd: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


def sim_main(argv: Sequence[str] | None = None, prog: str = "llm-d-inference-sim") -> int:
    """Entry point of `pyllmd sim` / `llm-d-inference-sim` (`prog` in usage and errors)."""
    from pyllmd.sim.config import load_config

    args = list(sys.argv[1:] if argv is None else argv)
    return run_command(
        prog,
        lambda: load_config(args, os.environ, time.time_ns(), prog),
        lambda loaded: _serve_sim(loaded, prog),
        verbosity=lambda loaded: loaded.config.v,
    )


def _serve_sim(loaded: LoadedConfig, prog: str) -> int:
    from pyllmd.sim.config import config_to_json
    from pyllmd.sim.dataset.download import ensure_dataset_file
    from pyllmd.sim.run import StartupError, run

    cfg = loaded.config
    for warning in loaded.warnings:
        log.warning("%s", warning)
    log.info("configuration %s", config_to_json(cfg))
    try:
        if cfg.mode != "echo":
            ensure_dataset_file(cfg.dataset_url, cfg.dataset_path)  # before listening
        run(cfg, cfg.host)
    except (StartupError, ConfigError) as e:  # ConfigError: dataset or tokenizer file
        error_line(prog, e)
        return 1
    return 0


def up_main(argv: Sequence[str]) -> int:
    """Entry point of `pyllmd up`."""
    from pyllmd.core.process import raise_open_files_limit
    from pyllmd.stack.run import run_local_stack
    from pyllmd.stack.up_config import PROG, up_options

    def serve(opts: StackOptions) -> int:
        raise_open_files_limit()  # the gateway holds two sockets per request in flight
        return _run_until_signal(lambda stop: run_local_stack(opts, stop), PROG)

    return run_command(
        PROG, lambda: up_options(argv), lambda up: serve(up[0]), verbosity=lambda up: up[1]
    )


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
    from pyllmd.sidecar.run import run_pd_sidecar

    return run_pd_sidecar(list(argv), _run_until_signal)


def simulate_main(argv: Sequence[str]) -> int:
    """Entry point of `pyllmd simulate` (virtual time, no servers)."""
    from pyllmd.simulate.run import main

    return main(list(argv))


def calibrate_main(argv: Sequence[str]) -> int:
    """Entry point of `pyllmd calibrate` (fits in virtual time, no servers)."""
    from pyllmd.simulate.calibrate_run import main

    return main(list(argv))


def dataset_main(argv: Sequence[str]) -> int:
    """Entry point of `pyllmd dataset` (upstream's dataset-tool, local input)."""
    from pyllmd.sim.dataset.tool import main as tool_main

    return tool_main(list(argv))


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "up": up_main,
    "autoscaler": autoscaler_main,
    "epp": epp_main,
    "pd-sidecar": pd_sidecar_main,
    "simulate": simulate_main,
    "calibrate": calibrate_main,
    "dataset": dataset_main,
}
