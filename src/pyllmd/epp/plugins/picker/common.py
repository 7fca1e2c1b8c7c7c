"""Parameters shared by the pickers: `maxNumOfEndpoints` (default 1; ≤0 → 1)."""

from __future__ import annotations

from typing import Any

from pyllmd.epp.plugins.base import params


def max_endpoints(raw: Any) -> int:
    """`maxNumOfEndpoints`, non-positive values replaced by 1."""
    value = params(raw, "picker.parameters").get_int("maxNumOfEndpoints", 1)
    return value if value > 0 else 1
