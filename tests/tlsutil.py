"""Self-signed certificates for tests that speak TLS (one-day validity)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pyllmd.core.tls import write_self_signed as _write


def write_self_signed(
    directory: Path,
    stem: str = "server",
    ips: Sequence[str] = ("127.0.0.1",),
    dns_names: Sequence[str] = ("localhost",),
) -> tuple[Path, Path]:
    """Write `<stem>.crt` and `<stem>.key` valid for one day; returns (cert, key)."""
    return _write(directory, stem, ips, dns_names, days=1)
