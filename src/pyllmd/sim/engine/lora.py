"""LoRA adapters of one rank: which names are registered, and which hold runtime slots.

Pure bookkeeping, no I/O (spec §7):

- `LoraRegistry` holds the adapter names that are valid `model` values
  (`--lora-modules` at start, then `/v1/load_lora_adapter` and
  `/v1/unload_lora_adapter`, whose bodies `pyllmd.sim.api.requests` parses),
  and resolves a request's `model`.
- `LoraRuntime` holds the `--max-loras` slots and the per-adapter counts of
  running and waiting requests; the admission queue asks it whether a request for an
  adapter may start, and `vllm:lora_requests_info` is rendered from it.

Slots: an adapter is loaded while it has running requests, and stays loaded
(idle) afterwards until a new adapter needs its slot; the least recently started
idle adapter is evicted first. Running and waiting adapters are listed in the
order they became running / waiting, so one set always gives the same label
value (a new order would create a new `vllm:lora_requests_info` series).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

from pyllmd.core.errors import LlmdError
from pyllmd.sim.engine.kvcache import LoraTag


def model_not_found(model: str) -> LlmdError:
    """The 404 for a `model` that is neither a served name nor a registered adapter."""
    return LlmdError(404, f"The model `{model}` does not exist.")


class LoraRegistry:
    """Registered adapter names, in registration order (the `/v1/models` order)."""

    def __init__(self, served: Sequence[str], adapters: Iterable[str] = ()) -> None:
        self.served = tuple(served)
        self._served = frozenset(served)
        self._adapters: dict[str, None] = {}
        self._ids: dict[str, int] = {}
        for name in adapters:
            self.load(name)

    @property
    def adapters(self) -> tuple[str, ...]:
        """The registered adapter names."""
        return tuple(self._adapters)

    def load(self, name: str) -> None:
        """Register `name`; loading a registered adapter again changes nothing."""
        self._adapters.setdefault(name, None)
        self._ids.setdefault(name, len(self._ids) + 1)

    def tag(self, name: str) -> LoraTag:
        """The adapter's `lora_id` (vLLM's `lora_int_id`, from 1) and name for KV events.

        An id is given on first registration and kept for the process's life, so a
        request admitted before its adapter was unloaded still reports one.
        """
        return LoraTag(self._ids.setdefault(name, len(self._ids) + 1), name)

    def unload(self, name: str) -> None:
        """Forget `name`; unknown names are ignored (upstream answers 200 either way)."""
        self._adapters.pop(name, None)

    def resolve(self, model: str | None) -> str | None:
        """The adapter a request's `model` names, None for a served name; else a 404.

        An adapter wins over a served name of the same spelling, as upstream.
        """
        name = model or ""
        if name in self._adapters:
            return name
        if name in self._served:
            return None
        raise model_not_found(name)

    def models(self, created: int) -> list[dict[str, object]]:
        """`/v1/models` entries: served names, then adapters (parent: first served name)."""
        parent = self.served[0] if self.served else None
        data: list[dict[str, object]] = [_model(name, created, None) for name in self.served]
        data += [_model(name, created, parent) for name in self._adapters]
        return data


def _model(name: str, created: int, parent: str | None) -> dict[str, object]:
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": name,
        "parent": parent,
    }


class LoraRuntime:
    """`max_loras` adapter slots and the running / waiting request counts per adapter.

    `version` grows with every change, so a metrics publisher can tell whether
    `vllm:lora_requests_info` needs a new sample without comparing sets.
    """

    def __init__(self, max_loras: int) -> None:
        if max_loras < 1:
            raise ValueError(f"max_loras must be >= 1, got {max_loras}")
        self.max_loras = max_loras
        self.version = 0
        self._loaded: OrderedDict[str, None] = OrderedDict()  # least recently started first
        self._running: dict[str, int] = {}
        self._waiting: dict[str, int] = {}

    @property
    def loaded(self) -> tuple[str, ...]:
        """Adapters holding a slot, least recently started first."""
        return tuple(self._loaded)

    @property
    def running(self) -> tuple[str, ...]:
        """Adapters with at least one running request."""
        return tuple(self._running)

    @property
    def waiting(self) -> tuple[str, ...]:
        """Adapters with at least one waiting request."""
        return tuple(self._waiting)

    def is_loaded(self, name: str) -> bool:
        """The adapter holds a slot: its requests can start without loading."""
        return name in self._loaded

    def can_load(self, name: str) -> bool:
        """A request for `name` may start now: loaded, a free slot, or an idle one to evict."""
        if name in self._loaded or len(self._loaded) < self.max_loras:
            return True
        return self._idle() is not None

    def enqueue(self, name: str) -> None:
        """A request for `name` entered the waiting queue."""
        self._waiting[name] = self._waiting.get(name, 0) + 1
        self.version += 1

    def dequeue(self, name: str) -> None:
        """A request for `name` left the waiting queue (started or withdrawn)."""
        _decrement(self._waiting, name)
        self.version += 1

    def start(self, name: str) -> str | None:
        """A request for `name` starts (`can_load` must hold); returns the evicted adapter."""
        evicted = None
        if name in self._loaded:
            self._loaded.move_to_end(name)
        else:
            if len(self._loaded) >= self.max_loras:
                evicted = self._idle()
                if evicted is None:
                    raise RuntimeError(f"no LoRA slot for {name!r}")
                del self._loaded[evicted]
            self._loaded[name] = None
        self._running[name] = self._running.get(name, 0) + 1
        self.version += 1
        return evicted

    def finish(self, name: str) -> None:
        """A running request for `name` ended; the adapter keeps its slot (idle after its last)."""
        _decrement(self._running, name)
        self.version += 1

    def _idle(self) -> str | None:
        for name in self._loaded:
            if name not in self._running:
                return name
        return None


def _decrement(counts: dict[str, int], name: str) -> None:
    n = counts.get(name, 0)
    if n > 1:
        counts[name] = n - 1
    else:
        counts.pop(name, None)
