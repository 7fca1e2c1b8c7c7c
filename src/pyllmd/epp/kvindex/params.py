"""Parameters of `precise-prefix-cache-scorer` (kv-events contract §3.4), decoded as Go does.

Upstream unmarshals the JSON onto a struct pre-filled with the library defaults,
so an object given for a defaulted field is merged into the defaults (a key not
given keeps its default), unknown keys are ignored, a list replaces the default
list, and a type mismatch fails with Go's wording. `tokenProcessorConfig` is the
exception: it has no default object, so giving it without `blockSize` yields
block size 0 (rejected here: upstream would loop forever on it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pyllmd.epp.scheduling.registry import ParamError, Params

TYPE = "precise-prefix-cache-scorer"
STRUCT = "scorer.PrecisePrefixCachePluginConfig"
MODEL_REQUIRED = "modelName is required in indexerConfig.tokenizersPoolConfig"
DEFAULT_LOCAL_DIR = "/mnt/models"
DEFAULT_TIER_WEIGHTS = (("gpu", 1.0), ("cpu", 0.8))


@dataclass(frozen=True)
class TokenizerSettings:
    """`indexerConfig.tokenizersPoolConfig`: which tokenizer, found where (never downloaded)."""

    model_name: str
    workers_count: int = 5
    min_prefix_overlap_ratio: float = 0.8
    local_map: Mapping[str, str] = field(default_factory=dict)  # `local.modelTokenizerMap`
    local_dir: str = DEFAULT_LOCAL_DIR  # `local.autoDiscoveryDir`
    local_file: str = "tokenizer.json"  # `local.autoDiscoveryTokenizerFileName`
    uds_socket: str = ""  # `uds.socketFile`
    hf_enabled: bool = True
    hf_token: str = ""
    hf_cache_dir: str = ""


@dataclass(frozen=True)
class PreciseSettings:
    """Everything the scorer, its index and its subscribers are configured with."""

    tokenizer: TokenizerSettings
    block_size: int = 16
    hash_seed: str = ""
    prefix_store_cache_size: int = 500_000
    prefix_store_block_size: int = 256
    index_size: int = 100_000_000
    pod_cache_size: int = 10
    backend: str = "inMemoryConfig"  # the configured kvBlockIndexConfig backend key
    enable_metrics: bool = False
    metrics_logging_interval_ns: int = 0
    tier_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TIER_WEIGHTS))
    zmq_endpoint: str = ""
    topic_filter: str = "kv@"
    concurrency: int = 4
    discover_pods: bool = True
    pod_label_selector: str = "llm-d.ai/inferenceServing=true"
    pod_namespace: str = ""
    socket_port: int = 5557


class _Obj:
    """A JSON object decoded Go-style: `Params` for scalars, plus nested objects."""

    def __init__(self, raw: Any, struct: str) -> None:
        self.params = Params(raw, struct)
        self.raw: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
        self.struct = struct

    def has(self, key: str) -> bool:
        return any(k.lower() == key.lower() for k in self.raw)

    def lookup(self, key: str) -> Any:
        if key in self.raw:
            return self.raw[key]
        value: Any = None
        for k, v in self.raw.items():  # Go: the last case-insensitive match wins
            if k.lower() == key.lower():
                value = v
        return value

    def obj(self, key: str) -> _Obj:
        """A nested object (empty when absent or null; a non-object is a type error)."""
        value = self.lookup(key)
        return _Obj(value, f"{self.struct}.{key}")


def _env_dir(env: Mapping[str, str]) -> str:
    return env.get("LOCAL_TOKENIZER_DIR") or DEFAULT_LOCAL_DIR


def _env_file(env: Mapping[str, str]) -> str:
    return env.get("LOCAL_TOKENIZER_FILENAME") or "tokenizer.json"


def _tokenizer(pool: _Obj, env: Mapping[str, str]) -> TokenizerSettings:
    p = pool.params
    model = p.get_str("modelName", "")
    if not model:
        raise ParamError(MODEL_REQUIRED)
    local, uds, hf = pool.obj("local"), pool.obj("uds"), pool.obj("hf")
    token = hf.params.get_str("huggingFaceToken", "") or env.get("HF_TOKEN", "")
    return TokenizerSettings(
        model_name=model,
        workers_count=p.get_int("workersCount", 5),
        min_prefix_overlap_ratio=p.get_float("minPrefixOverlapRatio", 0.8),
        local_map=local.params.get_str_map("modelTokenizerMap"),
        local_dir=local.params.get_str("autoDiscoveryDir", _env_dir(env)),
        local_file=local.params.get_str(
            "autoDiscoveryTokenizerFileName",
            env.get("LOCAL_TOKENIZER_FILENAME") or "tokenizer.json",
        ),
        uds_socket=uds.params.get_str("socketFile", ""),
        hf_enabled=hf.params.get_bool("enabled", True),
        hf_token=token,
        hf_cache_dir=hf.params.get_str("tokenizersCacheDir", env.get("LOCAL_TOKENIZER_DIR", "")),
    )


def _backend(index: _Obj) -> str:
    # Upstream's precedence when several are configured.
    for key in ("costAwareMemoryConfig", "valkeyConfig", "redisConfig"):
        if index.lookup(key) is not None:
            return key
    return "inMemoryConfig"


def _weights(indexer: _Obj) -> dict[str, float]:
    if indexer.lookup("kvCacheBackendConfigs") is None:
        return dict(DEFAULT_TIER_WEIGHTS)
    out: dict[str, float] = {}
    for i, item in enumerate(indexer.params.get_objects("kvCacheBackendConfigs")):
        entry = _Obj(item, f"{indexer.struct}.kvCacheBackendConfigs[{i}]").params
        out[entry.get_str("name", "")] = entry.get_float("weight", 0.0)
    return out


def parse_settings(raw: Any, env: Mapping[str, str] | None = None) -> PreciseSettings:
    """The plugin's settings; ParamError (a ValueError) for anything it would not run with."""
    env = os.environ if env is None else env
    top = _Obj(raw, STRUCT)
    if top.has("indexerConfig") and top.lookup("indexerConfig") is None:
        raise ParamError(MODEL_REQUIRED)  # Go: a null pointer, so no tokenizer pool config
    indexer = top.obj("indexerConfig")
    if indexer.has("tokenizersPoolConfig") and indexer.lookup("tokenizersPoolConfig") is None:
        raise ParamError(MODEL_REQUIRED)
    tokenizer = _tokenizer(indexer.obj("tokenizersPoolConfig"), env)
    block_size, seed = 16, ""
    if top.lookup("tokenProcessorConfig") is not None:
        processor = top.obj("tokenProcessorConfig").params
        block_size, seed = processor.get_int("blockSize", 0), processor.get_str("hashSeed", "")
    if block_size <= 0:
        raise ParamError(f"tokenProcessorConfig.blockSize must be > 0, got {block_size}")
    store = indexer.obj("prefixStoreConfig").params
    index = indexer.obj("kvBlockIndexConfig")
    memory = index.obj("inMemoryConfig").params
    events = top.obj("kvEventsConfig")
    discovery = events.obj("podDiscoveryConfig").params
    settings = PreciseSettings(
        tokenizer=tokenizer,
        block_size=block_size,
        hash_seed=seed,
        prefix_store_cache_size=store.get_int("cacheSize", 500_000),
        prefix_store_block_size=store.get_int("blockSize", 256),
        index_size=memory.get_int("size", 100_000_000),
        pod_cache_size=memory.get_int("podCacheSize", 10),
        backend=_backend(index),
        enable_metrics=index.params.get_bool("enableMetrics", False),
        metrics_logging_interval_ns=index.params.get_int("metricsLoggingInterval", 0),
        tier_weights=_weights(indexer),
        zmq_endpoint=events.params.get_str("zmqEndpoint", ""),
        topic_filter=events.params.get_str("topicFilter", "kv@"),
        concurrency=events.params.get_int("concurrency", 4),
        discover_pods=events.params.get_bool("discoverPods", True),
        pod_label_selector=discovery.get_str("podLabelSelector", "llm-d.ai/inferenceServing=true"),
        pod_namespace=discovery.get_str("podNamespace", ""),
        socket_port=discovery.get_int("socketPort", 5557),
    )
    _validate(settings)
    return settings


def _validate(s: PreciseSettings) -> None:
    """Values upstream accepts and then crashes or hangs on."""
    if s.index_size <= 0 or s.pod_cache_size <= 0:
        raise ParamError(
            "kvBlockIndexConfig.inMemoryConfig size and podCacheSize must be > 0, "
            f"got {s.index_size} and {s.pod_cache_size}"
        )
    if s.concurrency <= 0:
        raise ParamError(f"kvEventsConfig.concurrency must be > 0, got {s.concurrency}")
    if s.discover_pods and not 0 < s.socket_port < 65536:
        raise ParamError(
            f"kvEventsConfig.podDiscoveryConfig.socketPort must be 1..65535, got {s.socket_port}"
        )
