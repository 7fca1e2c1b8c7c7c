"""`prefill-filter` (llm-d): only endpoints labelled `llm-d.ai/role=prefill`."""

from __future__ import annotations

from typing import Any

from pyllmd.epp.plugins.filter.by_label import ByLabel
from pyllmd.epp.scheduling.registry import Handle

TYPE = "prefill-filter"
ROLE_LABEL = "llm-d.ai/role"


class PrefillFilter(ByLabel):
    """`by-label` fixed to role prefill; unlabelled endpoints are excluded."""

    TYPE = TYPE

    def __init__(self, name: str = "") -> None:
        super().__init__(name, ROLE_LABEL, ("prefill",), False)


def factory(name: str, raw: Any, handle: Handle) -> PrefillFilter:
    """No parameters."""
    return PrefillFilter(name)
