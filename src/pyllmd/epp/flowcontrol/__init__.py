"""Flow control (feature gate `flowControl`, spec §8): queue requests until the pool has room.

The decision core: `queues` (bands, flows, capacity, TTL), `policies` (ordering
and fairness), `gate` (the saturation check) and `dispatch` (the synchronous
dispatch step). The asyncio controller the servicer awaits is
`extproc/flowcontroller.py`.
"""

from pyllmd.epp.flowcontrol.bands import BandConfig, FlowControlConfig
from pyllmd.epp.flowcontrol.dispatch import Dispatcher, fairness_id
from pyllmd.epp.flowcontrol.queues import FlowKey, FlowQueues, Outcome, QueueItem, Rejection

__all__ = [
    "BandConfig",
    "Dispatcher",
    "FlowControlConfig",
    "FlowKey",
    "FlowQueues",
    "Outcome",
    "QueueItem",
    "Rejection",
    "fairness_id",
]
