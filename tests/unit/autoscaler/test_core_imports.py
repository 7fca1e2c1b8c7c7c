"""The autoscaler's decision core imports in a fresh interpreter without any server,
network or metrics library (the import-linter contract checks the static imports;
this checks what importing really loads)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = (
    "aiohttp",
    "grpc",
    "zmq",
    "prometheus_client",
    "lightkube",
    "uvloop",
    "yaml",
    "jsonschema",
    "httpx",
    "h2",
    "anyio",
    "openai",
)

CORE = (
    "pyllmd.autoscaler.decide",
    "pyllmd.autoscaler.decide.analyze",
    "pyllmd.autoscaler.decide.analyze.queueing",
    "pyllmd.autoscaler.decide.configmaps",
    "pyllmd.autoscaler.decide.enforce",
    "pyllmd.autoscaler.decide.limiter",
    "pyllmd.autoscaler.decide.optimize",
    "pyllmd.autoscaler.decide.status",
    "pyllmd.autoscaler.collect.collector",
    "pyllmd.autoscaler.collect.queries",
    "pyllmd.autoscaler.kube.objects",
    "pyllmd.autoscaler.kube.selector",
)


def loaded_after_import(module: str) -> list[str]:
    """Top-level package names in sys.modules after importing `module` alone."""
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return list(json.loads(out.stdout))


@pytest.mark.parametrize("module", CORE)
def test_core_module_loads_no_server_network_or_metrics_library(module: str) -> None:
    loaded = set(loaded_after_import(module))
    assert sorted(loaded & set(FORBIDDEN)) == []


def test_the_shell_does_load_them() -> None:
    """The check can fail: the Prometheus backend pulls in aiohttp, the config YAML."""
    loaded = set(loaded_after_import("pyllmd.autoscaler.collect.prometheus"))
    assert "aiohttp" in loaded
    assert "yaml" in set(loaded_after_import("pyllmd.autoscaler.yaml12"))
