"""Pieces of local-stack files and `pyllmd up` command lines shared by the e2e tests."""

import sys
from pathlib import Path

from tests.e2e.harness import free_port

SATURATION_CONFIG_MAP = """\
  - metadata:
      name: wva-saturation-scaling-config
      namespace: workload-variant-autoscaler-system
    data:
      default: |
        kvCacheThreshold: 0.80
        queueLengthThreshold: 5
        kvSpareTrigger: 0.1
        queueSpareTrigger: 3
"""
"""The shipped default saturation thresholds, as a `configMaps` list entry."""


def up_argv(stack_file: Path | None, workdir: Path, *flags: str) -> list[str]:
    """`python -m pyllmd up` on free ports (gateway, admin, Prometheus), the given stack
    (None: the packaged one) and work directory, plus `flags`."""
    argv = [sys.executable, "-m", "pyllmd", "up", "--workdir", str(workdir)]
    if stack_file is not None:
        argv += ["--stack", str(stack_file)]
    for flag in ("--port", "--admin-port", "--prometheus-port"):
        if flag not in flags:
            argv += [flag, str(free_port())]
    return argv + list(flags)
