"""Sleep mode of one rank (spec §10.3, §4.6), as vLLM's `/sleep` and `/wake_up` behave.

Pure state transitions; the HTTP shell applies them to the admission queue and the
KV cache. What a sleeping vLLM does (since its scheduler pauses on sleep): new
completion requests are accepted and held in the waiting queue, and run once the
engine is fully awake. Upstream's simulator serves them normally while
"asleep"; this one holds them like vLLM, and says so in
`vllm:engine_sleep_state` and `vllm:num_requests_waiting`.

Levels, as vLLM's `/sleep?level=`: 0 pauses scheduling only; 1 (the default)
also offloads the weights and discards the KV cache; 2 discards both. A level 1
or 2 sleep puts the `weights` and `kv_cache` parts to sleep; `/wake_up?tags=...`
wakes the named parts (no `tags`: all), and the engine is sleeping until every
part is awake again, as in vLLM (upstream's simulator wakes fully on any call).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from pyllmd.core.errors import LlmdError

WEIGHTS = "weights"
KV_CACHE = "kv_cache"
PARTS = frozenset({WEIGHTS, KV_CACHE})
LEVELS = (0, 1, 2)
SLEEP_STATES = ("awake", "weights_offloaded", "discard_all")


def parse_level(text: str | None) -> int:
    """The `level` query value of `/sleep` (absent: 1); 400 for anything but 0, 1 or 2."""
    if text is None:
        return 1
    try:
        level = int(text)
    except ValueError:
        level = -1
    if level not in LEVELS:
        raise LlmdError(400, f"invalid sleep level '{text}': must be 0, 1 or 2")
    return level


@dataclass(frozen=True, slots=True)
class SleepState:
    """Whether scheduling is paused, which parts sleep, and the level of the last sleep."""

    paused: bool = False
    asleep: frozenset[str] = frozenset()
    level: int = 0

    @property
    def is_sleeping(self) -> bool:
        """What `/is_sleeping` answers; requests wait while it is true."""
        return self.paused or bool(self.asleep)

    @property
    def kv_cache_asleep(self) -> bool:
        """The KV cache is discarded and records nothing."""
        return KV_CACHE in self.asleep

    def sleep(self, level: int) -> SleepState:
        """The state after an accepted `/sleep?level=`."""
        parts = PARTS if level >= 1 else self.asleep
        return SleepState(paused=True, asleep=parts, level=max(level, self.level))

    def wake_up(self, tags: Sequence[str] | None) -> SleepState:
        """The state after `/wake_up` (tags None: everything); unknown tags wake nothing."""
        asleep = frozenset() if tags is None else self.asleep - frozenset(tags)
        level = self.level if asleep else 0
        return replace(self, paused=False, asleep=asleep, level=level)

    def gauge(self) -> dict[str, int]:
        """`vllm:engine_sleep_state` values per `sleep_state` label, as vLLM sets them."""
        sleeping = self.is_sleeping
        return {
            "awake": 0 if sleeping else 1,
            "weights_offloaded": int(sleeping and self.level == 1),
            "discard_all": int(sleeping and self.level == 2),
        }
