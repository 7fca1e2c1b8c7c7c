"""`decode-filter` (llm-d): endpoints with role decode/both, or no role label."""

from __future__ import annotations

from typing import Any

from pyllmd.epp.plugins.filter.by_label import ByLabel
from pyllmd.epp.plugins.filter.prefill_filter import ROLE_LABEL
from pyllmd.epp.scheduling.registry import Handle

TYPE = "decode-filter"


class DecodeFilter(ByLabel):
    """`by-label` fixed to roles decode and both; unlabelled endpoints pass."""

    TYPE = TYPE

    def __init__(self, name: str = "") -> None:
        super().__init__(name, ROLE_LABEL, ("decode", "both"), True)


def factory(name: str, raw: Any, handle: Handle) -> DecodeFilter:
    """No parameters."""
    return DecodeFilter(name)
