"""Accelerators: peak compute, HBM bandwidth, memory and interconnect.

The built-in table holds the GPUs of the calibration set; `load_accelerators` reads a CSV file
with the same columns (`--accelerator-config`). Figures are dense peaks (no sparsity).
The optional `host_link` column is the GPU's link to host memory, which the CPU KV tier
(`--kv-offloading-size`) loads over: H100 SXM has PCIe Gen5 x16, A100 SXM and L40S Gen4 x16
(their datasheets); a file without the column gets PCIe Gen4.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from pyllmd.core.errors import ConfigError

COLUMNS = (
    "gpu",
    "bf16_tflops_dense",
    "fp8_tflops_dense",
    "hbm_bw_TBps",
    "memory_GiB",
    "interconnect",
)

OPTIONAL_COLUMNS = ("network_GBps",)

# The network of a GPU (GB/s, one direction: what a P/D KV transfer between pods gets) is not
# a column of the calibration set's gpus.csv; the built-in figures are those of NVIDIA's
# reference systems, one NIC per GPU: DGX H100, 8x ConnectX-7 400 Gb/s (50 GB/s); DGX A100,
# 8x ConnectX-6 200 Gb/s (25 GB/s). L40S has no such reference system: 200 Gb/s (25 GB/s) per
# GPU is assumed, as for a file row that leaves the optional `network_GBps` column out or empty.
DEFAULT_NETWORK_GBPS = 25.0
BUILTIN_NETWORK_GBPS = {"H100": 50.0, "A100-80GB": 25.0, "L40S": DEFAULT_NETWORK_GBPS}

# P/D: the fixed part of a KV transfer between pods (the decode side asking the prefill side
# for the blocks and being told they arrived), an assumed figure, not a measured one.
PD_TRANSFER_LATENCY_S = 0.001

# PCIe Gen4 x16 carries 32 GB/s each way; Gen5 64 GB/s.
_PCIE_GBPS = {"3": 16.0, "4": 32.0, "5": 64.0, "6": 128.0}

DEFAULT_HOST_LINK = "PCIe Gen4"

BUILTIN_CSV = """\
gpu,bf16_tflops_dense,fp8_tflops_dense,hbm_bw_TBps,memory_GiB,interconnect,host_link
H100,989.5,1979,3.35,80,NVLink 900 GB/s,PCIe Gen5
A100-80GB,312,,2.039,80,NVLink 600 GB/s,PCIe Gen4
L40S,362.05,733,0.864,48,PCIe Gen4 (no NVLink),PCIe Gen4
"""


@dataclass(frozen=True)
class Accelerator:
    """One GPU model. `fp8_tflops` is None when it has no native FP8 compute."""

    name: str
    bf16_tflops: float
    fp8_tflops: float | None
    hbm_tbps: float
    memory_gib: float
    interconnect: str
    link_gbps: float  # GB/s between GPUs of one node, one direction
    nvlink: bool
    host_gbps: float = _PCIE_GBPS["4"]  # GB/s between the GPU and host memory, one direction
    network_gbps: float = DEFAULT_NETWORK_GBPS  # GB/s of one GPU to other nodes, one direction

    @property
    def flops(self) -> float:
        """Dense BF16 FLOP/s."""
        return self.bf16_tflops * 1e12

    def flops_for(self, fp8: bool) -> float:
        """Dense FLOP/s of the matrix units for BF16 or FP8 operands (BF16 without FP8 units)."""
        if fp8 and self.fp8_tflops:
            return self.fp8_tflops * 1e12
        return self.flops

    @property
    def hbm_bytes_per_s(self) -> float:
        return self.hbm_tbps * 1e12

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * 2**30


def parse_interconnect(text: str) -> tuple[float, bool]:
    """GB/s per direction and whether it is NVLink, from e.g. `NVLink 900 GB/s` or `PCIe Gen4`.

    NVLink figures are the bidirectional aggregate that datasheets quote, halved.
    """
    lower = text.lower()
    if "nvlink" in lower and "no nvlink" not in lower:
        m = re.search(r"([\d.]+)\s*gb/s", lower)
        if not m:
            raise ConfigError(
                f"interconnect {text!r}: NVLink needs a bandwidth, e.g. 'NVLink 900 GB/s'"
            )
        return float(m.group(1)) / 2.0, True
    m = re.search(r"([\d.]+)\s*gb/s", lower)
    if m:
        return float(m.group(1)), False
    m = re.search(r"gen\s*(\d)", lower)
    if "pcie" in lower and m and m.group(1) in _PCIE_GBPS:
        return _PCIE_GBPS[m.group(1)], False
    raise ConfigError(
        f"interconnect {text!r}: must be 'NVLink <n> GB/s', 'PCIe Gen<3-6>' or '<n> GB/s'"
    )


def _number(row: dict[str, str], column: str, where: str, optional: bool = False) -> float | None:
    raw = (row.get(column) or "").strip()
    if not raw:
        if optional:
            return None
        raise ConfigError(f"{where}: column {column} is empty")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{where}: column {column} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{where}: column {column} must be > 0, got {raw!r}")
    return value


def parse_accelerators(text: str, source: str) -> dict[str, Accelerator]:
    """Accelerators from CSV text with gpus.csv's columns, plus the optional `network_GBps`
    (other columns are ignored)."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ConfigError(f"{source}: missing column(s) {', '.join(missing)}")
    out: dict[str, Accelerator] = {}
    for line, row in enumerate(reader, start=2):
        where = f"{source}:{line}"
        name = (row.get("gpu") or "").strip()
        if not name:
            raise ConfigError(f"{where}: column gpu is empty")
        try:
            link, nvlink = parse_interconnect(row.get("interconnect") or "")
            host, _ = parse_interconnect((row.get("host_link") or "").strip() or DEFAULT_HOST_LINK)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        network = _number(row, "network_GBps", where, optional=True)
        out[name] = Accelerator(
            network_gbps=network or BUILTIN_NETWORK_GBPS.get(name, DEFAULT_NETWORK_GBPS),
            name=name,
            bf16_tflops=_number(row, "bf16_tflops_dense", where) or 0.0,
            fp8_tflops=_number(row, "fp8_tflops_dense", where, optional=True),
            hbm_tbps=_number(row, "hbm_bw_TBps", where) or 0.0,
            memory_gib=_number(row, "memory_GiB", where) or 0.0,
            interconnect=(row.get("interconnect") or "").strip(),
            link_gbps=link,
            nvlink=nvlink,
            host_gbps=host,
        )
    if not out:
        raise ConfigError(f"{source}: no accelerator rows")
    return out


BUILTIN: dict[str, Accelerator] = parse_accelerators(BUILTIN_CSV, "built-in accelerators")


def load_accelerators(path: str | Path) -> dict[str, Accelerator]:
    """The accelerators of a `--accelerator-config` CSV file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"--accelerator-config {path}: {e.strerror or e}") from None
    return parse_accelerators(text, f"--accelerator-config {path}")


def get_accelerator(name: str, extra: dict[str, Accelerator] | None = None) -> Accelerator:
    """The named accelerator, from `extra` (a config file) first, then the built-in table."""
    table = {**BUILTIN, **(extra or {})}
    if name in table:
        return table[name]
    folded = {k.lower(): v for k, v in table.items()}
    if name.lower() in folded:
        return folded[name.lower()]
    known = ", ".join(sorted(table))
    raise ConfigError(
        f"--accelerator {name!r}: unknown accelerator (known: {known}; "
        "add others with --accelerator-config)"
    )
