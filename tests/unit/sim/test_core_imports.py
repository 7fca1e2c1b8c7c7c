"""The simulator's decision core imports alone: no server, network, metrics or settings code.

Each check runs in a fresh interpreter, so what other tests imported does not count;
the import-linter contracts in pyproject.toml state the same rule for `make lint`.
"""

from __future__ import annotations

import json
import subprocess
import sys

# Libraries the engine must not load (network, servers, metrics, settings parsing, I/O).
FORBIDDEN_LIBRARIES = (
    "aiohttp",
    "anyio",
    "asyncio",
    "cryptography",
    "grpc",
    "grpc_health",
    "grpc_reflection",
    "h2",
    "httpx",
    "jsonschema",
    "lightkube",
    "msgpack",
    "prometheus_client",
    "pydantic",
    "socket",
    "sqlite3",
    "uvloop",
    "yaml",
    "zmq",
)
# The simulator's shells and settings.
FORBIDDEN_MODULES = (
    "pyllmd.sim.api",
    "pyllmd.sim.config",
    "pyllmd.sim.config.docs",
    "pyllmd.sim.config.load",
    "pyllmd.sim.config.model",
    "pyllmd.sim.config.rules",
    "pyllmd.sim.config.values",
    "pyllmd.sim.config.yamlfile",
    "pyllmd.sim.dataset.download",
    "pyllmd.sim.dataset.store",
    "pyllmd.sim.dataset.tool",
    "pyllmd.sim.grpcgen",
    "pyllmd.sim.run",
    "pyllmd.sim.server",
)

# Imports every module of the package, then prints what the interpreter has loaded.
PROBE = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""


def loaded_modules(package: str) -> set[str]:
    """Every module loaded by importing `package` and all its submodules in a new interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, package],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(done.stdout))


def offenders(modules: set[str], forbidden: tuple[str, ...]) -> list[str]:
    """The forbidden names that were loaded, themselves or any of their submodules."""
    return sorted(f for f in forbidden if any(m == f or m.startswith(f + ".") for m in modules))


def test_engine_loads_no_server_network_metrics_or_settings_library() -> None:
    modules = loaded_modules("pyllmd.sim.engine")
    assert "pyllmd.sim.engine.engine" in modules  # the probe did import the core
    assert offenders(modules, FORBIDDEN_LIBRARIES) == []


def test_engine_loads_none_of_the_simulators_shells() -> None:
    modules = loaded_modules("pyllmd.sim.engine")
    assert offenders(modules, FORBIDDEN_MODULES) == []


def test_engine_runs_a_request_without_the_shell() -> None:
    """What a virtual-time run does: build an engine from plain values, admit, start, release."""
    script = """
import random
from dataclasses import dataclass, field
from pyllmd.core.tokenize import SimpleTokenizer
from pyllmd.sim.engine import Admission, Engine, Work
from pyllmd.sim.engine.textgen import RandomText

@dataclass
class Config:
    model: str = "m"
    served_model_name: tuple[str, ...] = ()
    lora_modules: tuple[object, ...] = ()
    max_loras: int = 1
    max_model_len: int = 1024
    max_num_seqs: int = 1
    max_waiting_queue_length: int = 1
    mode: str = "random"
    latency_calculator: str = ""
    block_size: int = 16
    global_cache_hit_threshold: float = 0.0
    time_to_first_token: float = 0.5
    time_to_first_token_std_dev: float = 0.0
    inter_token_latency: float = 0.01
    inter_token_latency_std_dev: float = 0.0
    kv_cache_transfer_latency: float = 0.0
    kv_cache_transfer_latency_std_dev: float = 0.0
    prefill_overhead: float = 0.0
    prefill_time_per_token: float = 0.0
    prefill_time_std_dev: float = 0.0
    kv_cache_transfer_time_per_token: float = 0.0
    kv_cache_transfer_time_std_dev: float = 0.0
    time_factor_under_load: float = 1.0

engine = Engine(Config(), random.Random(1), RandomText(SimpleTokenizer()))
first, second, third = (Work(f"r{i}", [1, 2, 3], ["a", "b", "c"], max_tokens=4) for i in range(3))
admitted = [engine.admit(w, 0.0) for w in (first, second, third)]
plan = engine.start(first, 0.0)
started = engine.release(first, 1.0)
print([a.value for a in admitted], plan.ttft, len(plan.tokens) <= 4, started == [second])
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["['started',", "'queued',", "'rejected']", "0.5", "True", "True"]
