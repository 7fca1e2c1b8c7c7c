"""`by-label-selector` (llm-d): keep endpoints matching a Kubernetes LabelSelector.

The selector semantics (matchLabels AND matchExpressions with In, NotIn,
Exists, DoesNotExist; empty selector matches everything) are a few lines; the
EPP may not import the autoscaler's selector and no small library offers it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyllmd.epp.plugins.base import PluginBase, params
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.registry import Handle, ParamError
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest

TYPE = "by-label-selector"
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True)
class Requirement:
    """One matchExpressions entry."""

    key: str
    operator: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes requirement semantics."""
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


def _go_list(values: Sequence[str]) -> str:
    return "[]string{" + ", ".join(f'"{v}"' for v in values) + "}"


def parse_requirements(raw: Any) -> tuple[Requirement, ...]:
    """matchLabels then matchExpressions, validated like `LabelSelectorAsSelector`."""
    p = params(raw, "v1.LabelSelector")
    reqs = [Requirement(k, "In", frozenset([v])) for k, v in p.get_str_map("matchLabels").items()]
    for item in p.get_objects("matchExpressions"):
        e = params(item, "v1.LabelSelectorRequirement")
        key, op = e.get_str("key", ""), e.get_str("operator", "")
        values = e.get_str_list("values")
        if op not in OPERATORS:
            raise ParamError(f'"{op}" is not a valid label selector operator')
        if op in ("In", "NotIn") and not values:
            raise ParamError(
                f"values: Invalid value: {_go_list(values)}: for 'in', 'notin' operators, "
                "values set can't be empty"
            )
        if op in ("Exists", "DoesNotExist") and values:
            raise ParamError(
                f"values: Invalid value: {_go_list(values)}: values set must be empty for "
                "exists and does not exist"
            )
        reqs.append(Requirement(key, op, frozenset(values)))
    return tuple(reqs)


class ByLabelSelector(PluginBase):
    """All requirements must hold."""

    TYPE = TYPE

    def __init__(self, name: str, requirements: Sequence[Requirement]) -> None:
        super().__init__(name)
        self.requirements = tuple(requirements)

    def filter(
        self, state: CycleState, request: LLMRequest, endpoints: Sequence[Endpoint]
    ) -> list[Endpoint]:
        return [ep for ep in endpoints if all(r.matches(ep.labels) for r in self.requirements)]


def factory(name: str, raw: Any, handle: Handle) -> ByLabelSelector:
    """Parameters: a LabelSelector (`matchLabels`, `matchExpressions`)."""
    return ByLabelSelector(name, parse_requirements(raw))
