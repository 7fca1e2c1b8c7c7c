"""The V2 analyzer's memory across cycles: k2 history and capacity store (spec §5.2).

Both are plain dictionaries inside one `V2State` that the controller keeps per
process and passes to every V2 analysis, so the analysis itself stays a function
of its inputs. Unlike upstream, records and histories can expire: `evict(now)`
applies the 7-day record / 24-hour history limits upstream defines but never calls.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from pyllmd.autoscaler.decide.model import VllmParams

ROLLING_WINDOW = 10
LIVE = "live"
DEPLOYMENT = "deployment"
RECORD_TTL_SECONDS = 7 * 24 * 3600.0
HISTORY_TTL_SECONDS = 24 * 3600.0


@dataclass(slots=True)
class CapacityRecord:
    """What is known about one variant's per-replica capacity."""

    accelerator: str
    gpu_count: int
    effective_capacity: int
    learned_from: str
    params: VllmParams | None = None
    num_gpu_blocks: int = 0
    block_size: int = 0
    total_kv_capacity_tokens: int = 0
    learned_at: float = 0.0


@dataclass(slots=True)
class RollingAverage:
    """Mean of the last `window` observations."""

    window: int = ROLLING_WINDOW
    values: deque[float] = field(default_factory=deque)
    last_updated: float = 0.0

    def add(self, value: float, now: float) -> None:
        """Record one observation, dropping the oldest beyond the window."""
        self.values.append(value)
        while len(self.values) > self.window:
            self.values.popleft()
        self.last_updated = now

    def average(self) -> float:
        """The mean, 0 when empty."""
        return sum(self.values) / len(self.values) if self.values else 0.0


def capacity_compatible(a: VllmParams | None, b: VllmParams | None) -> bool:
    """Whether two engine configurations give the same per-replica capacity."""
    if a is None or b is None:
        return False
    return (
        a.gpu_memory_utilization == b.gpu_memory_utilization
        and a.block_size == b.block_size
        and a.kv_cache_dtype == b.kv_cache_dtype
        and a.tensor_parallel_size == b.tensor_parallel_size
        and a.num_gpu_blocks_override == b.num_gpu_blocks_override
        and a.effective_max_batched_tokens == b.effective_max_batched_tokens
    )


@dataclass(slots=True)
class V2State:
    """k2 history (`model|accelerator|bucket`) and capacity store (`namespace|model|variant`)."""

    history: dict[str, RollingAverage] = field(default_factory=dict)
    records: dict[str, CapacityRecord] = field(default_factory=dict)

    def record(self, namespace: str, model_id: str, variant: str) -> CapacityRecord | None:
        """The stored record of one variant."""
        return self.records.get(f"{namespace}|{model_id}|{variant}")

    def store(self, namespace: str, model_id: str, variant: str, rec: CapacityRecord) -> None:
        """Overwrite one variant's record."""
        self.records[f"{namespace}|{model_id}|{variant}"] = rec

    def load_from_deployment(
        self,
        namespace: str,
        model_id: str,
        variant: str,
        accelerator: str,
        gpu_count: int,
        params: VllmParams,
        now: float,
    ) -> None:
        """Store a parameter-derived record unless a live one exists."""
        existing = self.record(namespace, model_id, variant)
        if existing is not None and existing.learned_from == LIVE:
            return
        rec = CapacityRecord(
            accelerator=accelerator,
            gpu_count=gpu_count,
            effective_capacity=max(params.effective_max_batched_tokens, 0),
            learned_from=DEPLOYMENT,
            params=params,
            learned_at=now,
        )
        if params.num_gpu_blocks_override > 0:
            rec.num_gpu_blocks = params.num_gpu_blocks_override
            rec.block_size = params.block_size
            rec.total_kv_capacity_tokens = params.num_gpu_blocks_override * params.block_size
        self.store(namespace, model_id, variant, rec)

    def find_compatible(
        self, model_id: str, accelerator: str, gpu_count: int, params: VllmParams | None
    ) -> CapacityRecord | None:
        """A record (any namespace, any variant) with the same hardware and engine config."""
        best: CapacityRecord | None = None
        for key, rec in self.records.items():
            parts = key.split("|", 2)
            if len(parts) < 3 or parts[1] != model_id:
                continue
            if rec.accelerator != accelerator or rec.gpu_count != gpu_count:
                continue
            if not capacity_compatible(rec.params, params):
                continue
            if rec.effective_capacity <= 0 and rec.total_kv_capacity_tokens <= 0:
                continue
            if best is None or (best.learned_from != LIVE and rec.learned_from == LIVE):
                best = rec
        return best

    def evict(
        self,
        now: float,
        record_ttl: float = RECORD_TTL_SECONDS,
        history_ttl: float = HISTORY_TTL_SECONDS,
    ) -> int:
        """Drop records and k2 histories not refreshed within their TTL; returns how many."""
        old_records = [k for k, r in self.records.items() if now - r.learned_at > record_ttl]
        old_history = [k for k, h in self.history.items() if now - h.last_updated > history_ttl]
        for k in old_records:
            del self.records[k]
        for k in old_history:
            del self.history[k]
        return len(old_records) + len(old_history)
