"""`prefix-cache-scorer`: approximate prefix-cache affinity (spec §6.3).

The prompt bytes are cut into blocks of `blockSizeTokens × 4` characters and
chained with xxHash64 (the `xxhash` package), seeded by the target model and
`cache_salt`. An index remembers which hashes were routed to which endpoint:
a per-endpoint LRU set whose evictions keep a global hash → endpoints map in
step. `pre_request` records the hashes synchronously (upstream does it in a
goroutine; doing it in-line makes the next request see it deterministically).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import xxhash

from pyllmd.epp.plugins.base import PluginBase, params
from pyllmd.epp.scheduling.interfaces import CycleState, PrefixLookup
from pyllmd.epp.scheduling.registry import Handle, ParamError
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest, SchedulingResult

TYPE = "prefix-cache-scorer"
DEFAULT_BLOCK_SIZE_TOKENS = 16
DEFAULT_MAX_PREFIX_BLOCKS = 256
DEFAULT_LRU_CAPACITY_PER_SERVER = 31250
CHARS_PER_TOKEN = 4
PREFILL_PROFILE = "prefill"
PROMPT_HASH_CACHE = 4096  # prompts whose block hashes are kept
NOBODY: frozenset[str] = frozenset()


def hash_prompt(
    data: bytes, model: str, cache_salt: str, block_size_tokens: int, max_blocks: int
) -> list[int]:
    """Chained block hashes; empty when the input is shorter than one block."""
    block = block_size_tokens * CHARS_PER_TOKEN
    if block <= 0 or len(data) < block:
        return []
    data = data[: max_blocks * block]
    prev = xxhash.xxh64_intdigest(model.encode() + cache_salt.encode())
    hashes: list[int] = []
    for start in range(0, len(data) - block + 1, block):
        prev = xxhash.xxh64_intdigest(data[start : start + block] + prev.to_bytes(8, "little"))
        hashes.append(prev)
    return hashes


@functools.lru_cache(maxsize=PROMPT_HASH_CACHE)
def _cached_hashes(
    data: bytes, model: str, cache_salt: str, block_size_tokens: int, max_blocks: int
) -> tuple[int, ...]:
    """`hash_prompt`, kept for the prompts seen last: system prompts and a session's
    rounds come back, and hashing them is most of a cycle's work."""
    return tuple(hash_prompt(data, model, cache_salt, block_size_tokens, max_blocks))


class PrefixIndex:
    """Per-server LRU sets of block hashes plus the reverse map hash → servers."""

    def __init__(self) -> None:
        self._lrus: dict[str, OrderedDict[int, None]] = {}
        self._capacity: dict[str, int] = {}
        self._servers: dict[int, set[str]] = {}

    def servers(self, block_hash: int) -> set[str] | frozenset[str]:
        """Servers believed to hold `block_hash`."""
        return self._servers.get(block_hash, NOBODY)

    def add(self, hashes: Iterable[int], server: str, capacity: int) -> None:
        """Marks hashes most recently used on `server` (capacity fixed at first use)."""
        lru = self._lrus.get(server)
        if lru is None:
            lru = self._lrus[server] = OrderedDict()
            self._capacity[server] = max(1, capacity)
        cap = self._capacity[server]
        for h in hashes:
            if h in lru:
                lru.move_to_end(h)
            else:
                lru[h] = None
                self._servers.setdefault(h, set()).add(server)
            while len(lru) > cap:
                evicted, _ = lru.popitem(last=False)
                self._forget(evicted, server)

    def _forget(self, block_hash: int, server: str) -> None:
        holders = self._servers.get(block_hash)
        if holders is not None:
            holders.discard(server)
            if not holders:
                del self._servers[block_hash]

    def remove_server(self, server: str) -> None:
        """Drops everything known about `server`."""
        for h in self._lrus.pop(server, OrderedDict()):
            self._forget(h, server)
        self._capacity.pop(server, None)

    def server_names(self) -> list[str]:
        """Servers with an LRU."""
        return list(self._lrus)

    def size(self) -> int:
        """Total entries over all servers (`prefix_indexer_size`)."""
        return sum(len(lru) for lru in self._lrus.values())


class PrefixCacheScorer(PluginBase):
    """Scores matched/total leading blocks per endpoint."""

    TYPE = TYPE

    def __init__(
        self,
        name: str = "",
        *,
        auto_tune: bool = True,
        block_size_tokens: int = DEFAULT_BLOCK_SIZE_TOKENS,
        max_prefix_blocks: int = DEFAULT_MAX_PREFIX_BLOCKS,
        lru_capacity_per_server: int = DEFAULT_LRU_CAPACITY_PER_SERVER,
    ) -> None:
        super().__init__(name)
        self.auto_tune = auto_tune
        self.block_size_tokens = block_size_tokens
        self.max_prefix_blocks = max_prefix_blocks
        self.lru_capacity_per_server = lru_capacity_per_server
        self.index = PrefixIndex()

    def block_size(self, endpoints: Sequence[Endpoint]) -> int:
        """Tokens per block: the first endpoint's engine block size under autoTune."""
        if self.auto_tune and endpoints and endpoints[0].metrics.cache_block_size > 0:
            return endpoints[0].metrics.cache_block_size
        return self.block_size_tokens

    def match(self, hashes: Sequence[int]) -> dict[str, int]:
        """Walk hashes from the first; stop at the first hash no server holds."""
        found: dict[str, int] = {}
        get = found.get
        servers = self.index.servers
        for h in hashes:
            holders = servers(h)
            if not holders:
                break
            for server in holders:
                found[server] = get(server, 0) + 1
        return found

    def score(
        self, state: CycleState, request: LLMRequest, endpoints: Sequence[Endpoint]
    ) -> dict[str, float]:
        block = self.block_size(endpoints)
        salt = request.body.get("cache_salt")
        hashes = _cached_hashes(
            request.prompt_bytes(),
            request.target_model,
            salt if isinstance(salt, str) else "",
            block,
            self.max_prefix_blocks,
        )
        matches = self.match(hashes)
        state.prefix[self.name] = PrefixLookup(hashes, matches, block)
        if not hashes:
            return {ep.namespaced_name: 0.0 for ep in endpoints}
        n = len(hashes)  # PrefixLookup.hit_ratio, for every endpoint at once
        get = matches.get
        return {name: get(name, 0) / n for name in [ep.namespaced_name for ep in endpoints]}

    def pre_request(self, state: CycleState, request: LLMRequest, result: SchedulingResult) -> None:
        """Records the request's hashes on the primary (and prefill) target."""
        prefix = state.prefix.get(self.name)
        if prefix is None or not result.targets:
            return
        targets = [result.targets[0]]
        prefill = result.profile_results.get(PREFILL_PROFILE)
        if prefill is not None and prefill.targets and PREFILL_PROFILE != result.primary_profile:
            targets.append(prefill.targets[0])
        for ep in targets:
            capacity = self.lru_capacity_per_server
            if self.auto_tune and ep.metrics.cache_num_gpu_blocks > 0:
                capacity = ep.metrics.cache_num_gpu_blocks
            self.index.add(prefix.hashes, ep.namespaced_name, capacity)

    def prune(self, known_names: Iterable[str]) -> None:
        """Forgets endpoints no longer in the datastore (the shell calls this every 2 min)."""
        known = set(known_names)
        for server in self.index.server_names():
            if server not in known:
                self.index.remove_server(server)


def factory(name: str, raw: Any, handle: Handle) -> PrefixCacheScorer:
    """Parameters `autoTune`, `blockSizeTokens`, `blockSize` (deprecated), limits."""
    p = params(raw, "prefix.Config")
    block_size_tokens = p.get_int("blockSizeTokens", 0)
    if p.get_int("blockSize", 0) > 0 and block_size_tokens <= 0:
        raise ParamError(
            "BlockSize is depricated, use BlockSizeTokens instead, "
            "the value should be defined in tokens"
        )
    lru = p.get_int("lruCapacityPerServer", DEFAULT_LRU_CAPACITY_PER_SERVER)
    max_blocks = p.get_int("maxPrefixBlocksToMatch", DEFAULT_MAX_PREFIX_BLOCKS)
    return PrefixCacheScorer(
        name,
        auto_tune=p.get_bool("autoTune", True),
        block_size_tokens=block_size_tokens if block_size_tokens > 0 else DEFAULT_BLOCK_SIZE_TOKENS,
        max_prefix_blocks=max_blocks if max_blocks > 0 else DEFAULT_MAX_PREFIX_BLOCKS,
        lru_capacity_per_server=lru if lru > 0 else DEFAULT_LRU_CAPACITY_PER_SERVER,
    )
