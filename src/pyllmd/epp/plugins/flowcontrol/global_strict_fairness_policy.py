"""`global-strict-fairness-policy`: a band serves the flow whose head ranks best.

"Best" is by the ordering policy across every flow of the band, so with FCFS
the band as a whole is first come, first served (what every band uses).
"""

from __future__ import annotations

from typing import Any

from pyllmd.epp.flowcontrol.policies import GLOBAL_STRICT, FairnessPolicy, GlobalStrict
from pyllmd.epp.plugins.base import PluginBase
from pyllmd.epp.scheduling.registry import Handle

TYPE = GLOBAL_STRICT


class GlobalStrictFairnessPolicy(PluginBase):
    """The globally best head item goes next."""

    TYPE = TYPE
    ROLE = "flow-control-fairness"
    policy: FairnessPolicy = GlobalStrict()


def factory(name: str, raw: Any, handle: Handle) -> GlobalStrictFairnessPolicy:
    """No parameters."""
    return GlobalStrictFairnessPolicy(name)
