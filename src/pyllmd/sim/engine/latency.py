"""Latency models of the simulator (spec §3.2-3.5): time to first token and inter-token gaps.

Pure functions of the request, the running count and an injected `random.Random`;
the caller sleeps. One class per upstream `--latency-calculator` name, registered
in `CALCULATORS`; other packages add calculators through the `pyllmd.sim.latency`
entry-point group (name = the `--latency-calculator` value, value = a class or factory
taking `LatencyParams`, like the `CALCULATORS` values); in-tree names win.

Deliberate improvement over upstream: `jitter` keeps sub-millisecond precision
(upstream truncates to whole milliseconds, so latencies below 1 ms become 0).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from pyllmd.core.errors import ConfigError


class LatencyConfig(Protocol):
    """The latency options of the simulator's config, in seconds (`SimConfig` has them)."""

    @property
    def time_to_first_token(self) -> float: ...
    @property
    def time_to_first_token_std_dev(self) -> float: ...
    @property
    def inter_token_latency(self) -> float: ...
    @property
    def inter_token_latency_std_dev(self) -> float: ...
    @property
    def kv_cache_transfer_latency(self) -> float: ...
    @property
    def kv_cache_transfer_latency_std_dev(self) -> float: ...
    @property
    def prefill_overhead(self) -> float: ...
    @property
    def prefill_time_per_token(self) -> float: ...
    @property
    def prefill_time_std_dev(self) -> float: ...
    @property
    def kv_cache_transfer_time_per_token(self) -> float: ...
    @property
    def kv_cache_transfer_time_std_dev(self) -> float: ...
    @property
    def time_factor_under_load(self) -> float: ...
    @property
    def max_num_seqs(self) -> int: ...


@dataclass(frozen=True)
class LatencyParams:
    """The latency options, in float seconds (max_num_seqs is a count)."""

    ttft: float = 0.0
    ttft_std_dev: float = 0.0
    itl: float = 0.0
    itl_std_dev: float = 0.0
    kv_transfer_latency: float = 0.0
    kv_transfer_latency_std_dev: float = 0.0
    prefill_overhead: float = 0.0
    prefill_time_per_token: float = 0.0
    prefill_time_std_dev: float = 0.0
    kv_transfer_time_per_token: float = 0.0
    kv_transfer_time_std_dev: float = 0.0
    time_factor_under_load: float = 1.0
    max_num_seqs: int = 5

    @classmethod
    def from_config(cls, cfg: LatencyConfig) -> LatencyParams:
        """Pick the latency fields out of the simulator config."""
        return cls(
            ttft=cfg.time_to_first_token,
            ttft_std_dev=cfg.time_to_first_token_std_dev,
            itl=cfg.inter_token_latency,
            itl_std_dev=cfg.inter_token_latency_std_dev,
            kv_transfer_latency=cfg.kv_cache_transfer_latency,
            kv_transfer_latency_std_dev=cfg.kv_cache_transfer_latency_std_dev,
            prefill_overhead=cfg.prefill_overhead,
            prefill_time_per_token=cfg.prefill_time_per_token,
            prefill_time_std_dev=cfg.prefill_time_std_dev,
            kv_transfer_time_per_token=cfg.kv_cache_transfer_time_per_token,
            kv_transfer_time_std_dev=cfg.kv_cache_transfer_time_std_dev,
            time_factor_under_load=cfg.time_factor_under_load,
            max_num_seqs=cfg.max_num_seqs,
        )


def load_factor(running: int, max_num_seqs: int, time_factor_under_load: float) -> float:
    """Slow-down under load: 1 with one running request, the full factor at max_num_seqs."""
    if max_num_seqs <= 1:
        return 1.0
    return 1.0 + (time_factor_under_load - 1.0) * (running - 1) / (max_num_seqs - 1)


def jitter(rng: random.Random, mean: float, sd: float) -> float:
    """A normal sample around `mean`, clamped to [0.3, 1.7]·mean; exactly `mean` if sd is 0."""
    if sd == 0:
        return mean
    value = rng.gauss(0.0, 1.0) * sd + mean
    return min(max(value, 0.3 * mean), 1.7 * mean)


class LatencyCalculator(Protocol):
    """Computes the delays of one request; `running` includes the request itself."""

    def ttft(
        self,
        prompt_tokens: int,
        cached_tokens: int,
        remote_prefill: bool,
        running: int,
        rng: random.Random,
    ) -> float:
        """Seconds before the first token."""
        ...

    def itl(self, running: int, rng: random.Random) -> float:
        """Seconds between two output tokens."""
        ...


class _Base(ABC):
    """Shared formulas; subclasses choose which apply to TTFT."""

    def __init__(self, params: LatencyParams) -> None:
        self.p = params

    def _factor(self, running: int) -> float:
        return load_factor(running, self.p.max_num_seqs, self.p.time_factor_under_load)

    def _prefill(
        self, prompt_tokens: int, cached_tokens: int, running: int, rng: random.Random
    ) -> float:
        f = self._factor(running)
        mean = (
            self.p.prefill_overhead * f
            + (prompt_tokens - cached_tokens) * self.p.prefill_time_per_token * f
        )
        return jitter(rng, mean, self.p.prefill_time_std_dev)

    def _constant_ttft(self, running: int, rng: random.Random) -> float:
        return jitter(rng, self.p.ttft * self._factor(running), self.p.ttft_std_dev)

    def _transfer_per_token(self, prompt_tokens: int, rng: random.Random) -> float:
        mean = self.p.kv_transfer_time_per_token * prompt_tokens
        return jitter(rng, mean, self.p.kv_transfer_time_std_dev)

    def _transfer_constant(self, rng: random.Random) -> float:
        return jitter(rng, self.p.kv_transfer_latency, self.p.kv_transfer_latency_std_dev)

    @abstractmethod
    def ttft(
        self,
        prompt_tokens: int,
        cached_tokens: int,
        remote_prefill: bool,
        running: int,
        rng: random.Random,
    ) -> float:
        """Seconds before the first token."""

    def itl(self, running: int, rng: random.Random) -> float:
        """Inter-token latency scaled by the current load factor."""
        return jitter(rng, self.p.itl * self._factor(running), self.p.itl_std_dev)


class DefaultCalculator(_Base):
    """Upstream default (""): the per-token formulas only when the constant ones are unset."""

    def ttft(
        self,
        prompt_tokens: int,
        cached_tokens: int,
        remote_prefill: bool,
        running: int,
        rng: random.Random,
    ) -> float:
        """KV transfer time for P/D decode, else prefill or constant TTFT."""
        p = self.p
        if remote_prefill:
            if p.kv_transfer_latency == 0 and p.kv_transfer_latency_std_dev == 0:
                return self._transfer_per_token(prompt_tokens, rng)
            return self._transfer_constant(rng)
        if p.ttft == 0 and p.ttft_std_dev == 0:
            return self._prefill(prompt_tokens, cached_tokens, running, rng)
        return self._constant_ttft(running, rng)


class ConstantCalculator(_Base):
    """Upstream "constant": fixed TTFT and fixed KV transfer latency."""

    def ttft(
        self,
        prompt_tokens: int,
        cached_tokens: int,
        remote_prefill: bool,
        running: int,
        rng: random.Random,
    ) -> float:
        """Constant KV transfer latency for P/D decode, else constant TTFT."""
        if remote_prefill:
            return self._transfer_constant(rng)
        return self._constant_ttft(running, rng)


class PerTokenCalculator(_Base):
    """Upstream "per-token": TTFT from uncached prompt tokens; ignores --time-to-first-token."""

    def ttft(
        self,
        prompt_tokens: int,
        cached_tokens: int,
        remote_prefill: bool,
        running: int,
        rng: random.Random,
    ) -> float:
        """Per-token KV transfer for P/D decode, else the prefill formula."""
        if remote_prefill:
            return self._transfer_per_token(prompt_tokens, rng)
        return self._prefill(prompt_tokens, cached_tokens, running, rng)


CALCULATORS: dict[str, type[_Base]] = {
    "": DefaultCalculator,
    "constant": ConstantCalculator,
    "per-token": PerTokenCalculator,
    # batch: the rank's step loop (sim/server/batchloop.py) times the tokens; the per-request
    # plan's TTFT is used only on the decode side of P/D, as the KV transfer time
    "batch": DefaultCalculator,
}


UPSTREAM_SUPPORTED = ("constant", "per-token")
"""The names upstream's error text lists."""


def plugin_names() -> list[str]:
    """The `--latency-calculator` names installed packages add (entry points), sorted."""
    from pyllmd.core import plugins  # only when a name is not in-tree: keeps start-up lean

    return plugins.names(plugins.LATENCY, CALCULATORS)


def unknown_calculator(name: str) -> str:
    """Upstream's error text for an unknown calculator; installed plugins' names are added."""
    supported = [*UPSTREAM_SUPPORTED, *plugin_names()]
    listed = ", ".join(supported[:-1]) + " and " + supported[-1]
    return f"unknown latency-calculator {name}, supported calculators are: {listed}"


def plugin_calculator(name: str) -> Callable[[LatencyParams], LatencyCalculator] | None:
    """The installed entry point's calculator class or factory for a name that is not
    in-tree; None when no package provides it. Raises ConfigError (one line naming the
    entry point) when its package cannot be imported."""
    from pyllmd.core import plugins

    found = plugins.load_callable(plugins.LATENCY, name, CALCULATORS)
    return cast(Callable[[LatencyParams], LatencyCalculator] | None, found)


def make_calculator(name: str, params: LatencyParams) -> LatencyCalculator:
    """The calculator registered under `name` (upstream's `--latency-calculator` values, then
    installed entry points). Raises ConfigError: an unknown name (upstream's text), or a
    plugin that cannot be imported (one line naming its entry point)."""
    cls = CALCULATORS.get(name)
    if cls is not None:
        return cls(params)
    found = plugin_calculator(name)
    if found is None:
        raise ConfigError(unknown_calculator(name))
    try:
        return found(params)
    except Exception as err:  # a third-party constructor: one line, not a traceback
        raise ConfigError(
            f"latency-calculator {name}: {type(err).__name__}: {' '.join(str(err).split())}"
        ) from None
