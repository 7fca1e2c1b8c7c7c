"""`edf-ordering-policy`: earliest deadline (enqueue time + TTL) first.

Declarable for compatibility; as upstream's pinned config API, no band can
select it (bands always use `fcfs-ordering-policy`).
"""

from __future__ import annotations

from typing import Any

from pyllmd.epp.flowcontrol.policies import EDF, EDF_POLICY
from pyllmd.epp.plugins.base import PluginBase
from pyllmd.epp.scheduling.registry import Handle

TYPE = EDF


class EdfOrderingPolicy(PluginBase):
    """Earliest deadline first; requests without a TTL go last, in arrival order."""

    TYPE = TYPE
    ROLE = "flow-control-ordering"
    policy = EDF_POLICY


def factory(name: str, raw: Any, handle: Handle) -> EdfOrderingPolicy:
    """No parameters."""
    return EdfOrderingPolicy(name)
