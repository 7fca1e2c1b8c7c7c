"""Flow control (feature gate `flowControl`, spec §8): queue requests until the pool has room.

`queues` (bands, flows, capacity, TTL) and `gate` (the saturation check) are
pure; `controller` is the asyncio shell the ext_proc servicer awaits.
"""

from pyllmd.epp.extproc.flowcontroller import FlowController
from pyllmd.epp.flowcontrol.bands import FlowControlConfig, flow_control_config
from pyllmd.epp.flowcontrol.metrics import FlowMetrics
from pyllmd.epp.flowcontrol.queues import FlowKey, FlowQueues, Outcome

__all__ = [
    "FlowControlConfig",
    "FlowController",
    "FlowKey",
    "FlowMetrics",
    "FlowQueues",
    "Outcome",
    "flow_control_config",
]
