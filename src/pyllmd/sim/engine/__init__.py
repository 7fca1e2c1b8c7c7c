"""The simulator's decision core: what one rank decides, with no I/O.

Plain synchronous code over plain data: time comes in as `now`, randomness from
one seeded `random.Random`, and KV events go to an `EventSink` (the ZMQ
publisher is the shell's). It imports no server, network, metrics or settings
library (an import-linter contract in pyproject.toml), so a discrete-event
simulation can drive it in virtual time.

- `engine`: `Engine`, the admit / start / inter-token gap / release of one request
- `admission`: `AdmissionQueue`, workers, the bounded waiting queue, LoRA slots
- `kvcache`, `latency`, `textgen`: the KV-block cache, the latency models, the text
- `lora`, `sleep`: the adapter registry and runtime slots; the sleep state
- `failures`, `logprobs`, `toolcalls`: injected failures, synthetic logprobs,
  tool-call arguments
- `vocab`: finish reasons and failure types, shared with the settings and the bodies
"""

from pyllmd.sim.engine.admission import Admission, AdmissionQueue
from pyllmd.sim.engine.engine import Engine, EngineConfig, Plan, Work

__all__ = ["Admission", "AdmissionQueue", "Engine", "EngineConfig", "Plan", "Work"]
