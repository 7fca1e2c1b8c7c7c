"""`fcfs-ordering-policy`: a flow's requests leave in arrival order (what every band uses)."""

from __future__ import annotations

from typing import Any

from pyllmd.epp.flowcontrol.policies import FCFS, FCFS_POLICY
from pyllmd.epp.plugins.base import PluginBase
from pyllmd.epp.scheduling.registry import Handle

TYPE = FCFS


class FcfsOrderingPolicy(PluginBase):
    """First come, first served within a flow."""

    TYPE = TYPE
    ROLE = "flow-control-ordering"
    policy = FCFS_POLICY


def factory(name: str, raw: Any, handle: Handle) -> FcfsOrderingPolicy:
    """No parameters."""
    return FcfsOrderingPolicy(name)
