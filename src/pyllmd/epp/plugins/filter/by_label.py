"""`by-label` (llm-d): keep endpoints whose label has one of the valid values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyllmd.epp.plugins.base import PluginBase, params
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle, ParamError
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest

TYPE = "by-label"


class ByLabel(PluginBase):
    """Label value ∈ validValues, or label absent when allowsNoLabel."""

    TYPE = TYPE

    def __init__(
        self, name: str, label: str, valid_values: Sequence[str], allows_no_label: bool
    ) -> None:
        super().__init__(name)
        if not label:
            raise ParamError("'label' must be specified")
        if not valid_values and not allows_no_label:
            raise ParamError(
                "either 'validValues' must be non-empty or 'allowsNoLabel' must be true"
            )
        self.label = label
        self.valid_values = frozenset(valid_values)
        self.allows_no_label = allows_no_label

    def keeps(self, ep: Endpoint) -> bool:
        """Whether one endpoint passes."""
        value = ep.labels.get(self.label)
        if value is None:
            return self.allows_no_label
        return value in self.valid_values

    def filter(
        self, state: CycleState, request: LLMRequest, endpoints: Sequence[Endpoint]
    ) -> list[Endpoint]:
        return [ep for ep in endpoints if self.keeps(ep)]


def factory(name: str, raw: Any, handle: Handle) -> ByLabel:
    """Parameters `label`, `validValues`, `allowsNoLabel`."""
    p = params(raw, "filter.byLabelParameters")
    return ByLabel(
        name,
        p.get_str("label", ""),
        p.get_str_list("validValues"),
        p.get_bool("allowsNoLabel", False),
    )
