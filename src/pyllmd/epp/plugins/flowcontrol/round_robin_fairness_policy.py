"""`round-robin-fairness-policy`: a band serves its flows in turn, one request each.

Declarable for compatibility; as upstream's pinned config API, no band can
select it (bands always use `global-strict-fairness-policy`).
"""

from __future__ import annotations

from typing import Any

from pyllmd.epp.flowcontrol.policies import ROUND_ROBIN, FairnessPolicy, RoundRobin
from pyllmd.epp.plugins.base import PluginBase
from pyllmd.epp.scheduling.registry import Handle

TYPE = ROUND_ROBIN


class RoundRobinFairnessPolicy(PluginBase):
    """Flows take turns in the order they were created."""

    TYPE = TYPE
    ROLE = "flow-control-fairness"
    policy: FairnessPolicy = RoundRobin()


def factory(name: str, raw: Any, handle: Handle) -> RoundRobinFairnessPolicy:
    """No parameters."""
    return RoundRobinFairnessPolicy(name)
