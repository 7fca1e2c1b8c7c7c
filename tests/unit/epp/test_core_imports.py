"""The EPP's decision core imports alone: no server, network, metrics or config-file library.

Each core package (with every module under it) is imported in a fresh interpreter,
which then reports the forbidden libraries found in `sys.modules`. The same rule is
the import-linter contract "epp decision core ..." in pyproject.toml; this checks what
a program embedding the core really loads.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CORE = (
    "pyllmd.epp.scheduling",
    "pyllmd.epp.plugins",
    "pyllmd.epp.kvindex",
    "pyllmd.epp.flowcontrol",
    "pyllmd.epp.requests",
    "pyllmd.epp.saturation",
    "pyllmd.epp.datastore",
    "pyllmd.epp.objectives",
)
FORBIDDEN = (
    "aiohttp",
    "grpc",
    "envoy",
    "xds",
    "zmq",
    "prometheus_client",
    "lightkube",
    "httpx2",
    "uvloop",
    "yaml",
    "jsonschema",
    "cryptography",
    "pyllmd.epp.extproc",
    "pyllmd.epp.datalayer",
    "pyllmd.epp.config",
    "pyllmd.epp.metrics",
    "pyllmd.epp.run",
    "pyllmd.epp.options",
)

PROBE = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
imported = [package.__name__]
for info in pkgutil.walk_packages(getattr(package, "__path__", []), package.__name__ + "."):
    importlib.import_module(info.name)
    imported.append(info.name)
forbidden = sys.argv[2:]
loaded = sorted(
    name for name in sys.modules if any(name == f or name.startswith(f + ".") for f in forbidden)
)
print(json.dumps({"imported": imported, "loaded": loaded}))
"""


@pytest.mark.parametrize("package", CORE)
def test_core_package_loads_no_forbidden_library(package: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, package, *FORBIDDEN],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert package in found["imported"]
    assert found["loaded"] == []
