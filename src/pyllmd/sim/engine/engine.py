"""The model server's core: admission, KV-cache lookup, response planning, latency.

Pure and synchronous: time comes in as `now` (seconds from the shell's Clock),
randomness from one seeded `random.Random`. The HTTP shell calls `admit`, then
`start` once the request holds a worker, asks `itl` before each further token,
and always calls `release` at the end, which hands the worker to the queue.
Errors raised by `start` leave the worker held, so the shell's `finally:
release` is what prevents upstream's worker leak.

The engine also owns the LoRA registry (which `model` values are adapters) and
the sleep state: `sleep` pauses the admission queue and discards the KV cache,
`wake_up` returns the queued requests that start once fully awake.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pyllmd.core.errors import LlmdError
from pyllmd.sim.engine.admission import Admission, AdmissionQueue
from pyllmd.sim.engine.kvcache import CacheLookup, KVCache, KVCacheError
from pyllmd.sim.engine.latency import LatencyConfig, LatencyParams, make_calculator
from pyllmd.sim.engine.lora import LoraRegistry, LoraRuntime
from pyllmd.sim.engine.sleep import SleepState
from pyllmd.sim.engine.textgen import RandomText, echo_tokens


class NamedAdapter(Protocol):
    """A LoRA adapter registered at start (`--lora-modules`): only its name matters here."""

    @property
    def name(self) -> str: ...


class EngineConfig(LatencyConfig, Protocol):
    """What the engine reads of the simulator's config (`SimConfig` has all of it).

    A protocol, not the settings model itself, so that the engine imports no
    settings code (YAML, flag parsing) and can be driven by any object with
    these attributes.
    """

    @property
    def model(self) -> str: ...
    @property
    def served_model_name(self) -> Sequence[str]: ...
    @property
    def lora_modules(self) -> Sequence[NamedAdapter]: ...
    @property
    def max_loras(self) -> int: ...
    @property
    def max_model_len(self) -> int: ...
    @property
    def max_waiting_queue_length(self) -> int: ...
    @property
    def mode(self) -> str: ...
    @property
    def latency_calculator(self) -> str: ...
    @property
    def block_size(self) -> int: ...
    @property
    def global_cache_hit_threshold(self) -> float: ...


@dataclass(eq=False, slots=True)
class Work:
    """One admitted completion request, as the engine sees it."""

    request_id: str
    prompt_ids: list[int]
    prompt_tokens: list[str]
    lora: str | None = None
    max_tokens: int | None = None
    ignore_eos: bool = False
    remote_prefill: bool = False
    remote_decode: bool = False
    cache_hit_threshold: float | None = None
    force_cache_threshold: bool = False
    dataset_keys: tuple[bytes, ...] = ()  # chat: tried before the prompt-id key (dataset.lookup)
    admitted_at: float = 0.0
    started_at: float = 0.0
    in_kv_cache: bool = False


@dataclass(slots=True)
class Plan:
    """What the response will be: its tokens, finish reason and time to first token.

    Not frozen, though never changed: one is built per request, and a frozen
    dataclass costs three times as much to build.
    """

    tokens: list[str]
    finish_reason: str
    cached_tokens: int
    ttft: float

    @property
    def delays(self) -> bool:
        """A cache-threshold reply is immediate: no TTFT, no inter-token delays."""
        return self.finish_reason != "cache_threshold"


def context_length_message(max_model_len: int, prompt: int, max_tokens: int) -> str:
    """Upstream's (vLLM's) text for a request that does not fit the context window."""
    return (
        f"This model's maximum context length is {max_model_len} tokens. However, you "
        f"requested {prompt + max_tokens} tokens ({prompt} in the messages, {max_tokens} in "
        "the completion). Please reduce the length of the messages or completion"
    )


class Engine:
    """Admission queue + KV cache + text and latency models of one simulator rank."""

    def __init__(
        self,
        cfg: EngineConfig,
        rng: random.Random,
        text: RandomText,
        kv: KVCache | None = None,
    ) -> None:
        self.cfg = cfg
        self.rng = rng
        self.text = text
        self.kv = kv
        params = LatencyParams.from_config(cfg)
        self.calculator = make_calculator(cfg.latency_calculator, params)
        # Without a std-dev the inter-token delay depends only on the running count,
        # which cannot change while no time passes: a zero delay stays zero.
        self.itl_fixed = params.itl_std_dev == 0
        # ... and with no inter-token latency configured, every delay is exactly 0.
        self.itl_zero = self.itl_fixed and params.itl == 0
        # Every calculator's TTFT of a request without remote prefill is exactly 0, and
        # draws nothing from `rng`, when none of these is set.
        self.ttft_zero = not (
            params.ttft
            or params.ttft_std_dev
            or params.prefill_overhead
            or params.prefill_time_per_token
            or params.prefill_time_std_dev
        )
        self.queue: AdmissionQueue[Work] = AdmissionQueue(
            cfg.max_num_seqs, cfg.max_waiting_queue_length, cfg.max_loras
        )
        self.lora_registry = LoraRegistry(
            cfg.served_model_name or (cfg.model,), (m.name for m in cfg.lora_modules)
        )
        self.sleep_state = SleepState()
        # read per request: plain attributes (pydantic attribute access costs more)
        self._max_model_len = cfg.max_model_len
        self._echo = cfg.mode == "echo"

    @property
    def num_running(self) -> int:
        """Requests holding a worker (the real count, even with fake metrics)."""
        return self.queue.num_running

    @property
    def num_waiting(self) -> int:
        """Requests in the waiting queue."""
        return self.queue.num_waiting

    @property
    def loras(self) -> LoraRuntime:
        """LoRA slots and the adapters with running / waiting requests."""
        return self.queue.loras

    @property
    def kv_usage(self) -> float:
        """Fraction of KV blocks in use (0 without a KV cache)."""
        return self.kv.usage if self.kv is not None else 0.0

    def resolve_model(self, model: str | None) -> str | None:
        """The LoRA adapter a request's `model` names (None: base model); 404 if unknown."""
        return self.lora_registry.resolve(model)

    def sleep(self, level: int) -> None:
        """Accepted `/sleep`: nothing new starts; level >= 1 discards and disables the KV cache."""
        self.sleep_state = self.sleep_state.sleep(level)
        self.queue.pause()
        if self.kv is not None and self.sleep_state.kv_cache_asleep:
            self.kv.disable()  # AllBlocksCleared on every accepted sleep, as upstream

    def wake_up(self, tags: Sequence[str] | None) -> list[Work]:
        """`/wake_up[?tags=]`: wake the named parts; return the queued requests that start."""
        self.sleep_state = self.sleep_state.wake_up(tags)
        if self.kv is not None and not self.sleep_state.kv_cache_asleep:
            self.kv.enable()
        if self.sleep_state.is_sleeping:
            return []
        return self.queue.resume()

    def check_context(self, work: Work) -> None:
        """Refuse a request that cannot fit the context window, before it is queued."""
        prompt = len(work.prompt_ids)
        max_tokens = work.max_tokens or 0
        if prompt + max_tokens > self._max_model_len:
            raise LlmdError(400, context_length_message(self._max_model_len, prompt, max_tokens))

    def admit(self, work: Work, now: float) -> Admission:
        """Start or queue `work`; REJECTED means the waiting queue is full."""
        work.admitted_at = now
        return self.queue.submit(work)

    def withdraw(self, work: Work) -> bool:
        """Drop a waiting request whose client left; True if it was still waiting."""
        return self.queue.withdraw(work)

    def start(self, work: Work, now: float) -> Plan:
        """Plan the response of a request that just got a worker."""
        work.started_at = now
        if self.kv is None and not work.force_cache_threshold:  # the common case, shortest
            lookup, cached_tokens = None, 0
        else:
            lookup = self._kv_start(work, now)
            cached_tokens = lookup.prefix_blocks * self.cfg.block_size if lookup is not None else 0
            if self._below_threshold(work, lookup):
                return Plan([], "cache_threshold", cached_tokens, 0.0)
        if self._echo:  # _generate, written out for the common case (random text)
            tokens, finish = echo_tokens(work.prompt_tokens, work.max_tokens)
        else:
            tokens, finish = self.text.generate(
                self.rng,
                work.prompt_ids,
                work.dataset_keys,
                work.max_tokens,
                work.ignore_eos,
                self._max_model_len,
            )
        if work.remote_decode:
            finish = "remote_decode"
        if self.ttft_zero and not work.remote_prefill:
            return Plan(tokens, finish, cached_tokens, 0.0)
        ttft = self.calculator.ttft(
            len(work.prompt_ids), cached_tokens, work.remote_prefill, self.num_running, self.rng
        )
        return Plan(tokens, finish, cached_tokens, ttft)

    def itl(self) -> float:
        """Delay before the next token, under the current load."""
        return self.calculator.itl(self.num_running, self.rng)

    def release(self, work: Work, now: float) -> list[Work]:
        """Free the request's worker and KV blocks; return the queued requests that start."""
        if work.in_kv_cache and self.kv is not None:
            self.kv.finish(work.request_id, now)
            work.in_kv_cache = False
        return self.queue.release(work)

    def _kv_start(self, work: Work, now: float) -> CacheLookup | None:
        if self.kv is None or not self.kv.enabled:
            return None
        try:
            lora = self.lora_registry.tag(work.lora) if work.lora is not None else None
            lookup = self.kv.start(work.request_id, work.prompt_ids, now, lora)
        except KVCacheError as e:
            raise LlmdError(500, e.message) from None
        work.in_kv_cache = True
        return lookup

    def _below_threshold(self, work: Work, lookup: CacheLookup | None) -> bool:
        if work.force_cache_threshold:
            return True
        if lookup is None:
            return False
        threshold = work.cache_hit_threshold
        if threshold is None or not 0.0 <= threshold <= 1.0:
            threshold = self.cfg.global_cache_hit_threshold or None
        return threshold is not None and lookup.hit_rate < threshold
