"""What `pyllmd pd-sidecar` sends and reads: pure request shaping, no I/O.

The P/D connector bodies (llm-d's `nixlv2`, `shared-storage` and `sglang`
protocols), the choice of prefill host from `x-prefiller-host-port`, and vLLM's
error object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

PREFILL_HEADER = "x-prefiller-host-port"
DATA_PARALLEL_HEADER = "x-data-parallel-host-port"
REQUEST_ID_HEADER = "x-request-id"
PD_PATHS = frozenset({"/v1/completions", "/v1/chat/completions"})
HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "trailers", "transfer-encoding", "upgrade", "host", "content-length"}
)  # fmt: skip
DECODER_DOWN = (
    "The decode node is not ready. Please check that the vLLM service is running and the "
    "port configuration is correct."
)


def error_body(status: int, kind: str, message: str) -> bytes:
    """vLLM's error object, as the sidecar writes it."""
    return orjson.dumps(
        {"object": "error", "message": message, "type": kind, "param": "", "code": status}
    )


def dumps(body: Mapping[str, Any]) -> bytes:
    """JSON with sorted keys (what Go's `json.Marshal` of a map produces)."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def nixl_prefill_body(request: Mapping[str, Any]) -> dict[str, Any]:
    """The prefill request: remote decode requested, one token, not streamed."""
    body = dict(request)
    body["kv_transfer_params"] = {
        "do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
        "remote_block_ids": None, "remote_host": None, "remote_port": None,
    }  # fmt: skip
    body["stream"] = False
    body.pop("stream_options", None)
    body["max_tokens"] = 1
    body["max_completion_tokens"] = 1
    return body


def nixl_decode_body(request: Mapping[str, Any], kv_transfer_params: Any) -> dict[str, Any]:
    """The decode request: the client's request plus the prefiller's `kv_transfer_params`."""
    body = dict(request)
    body["kv_transfer_params"] = kv_transfer_params
    return body


def shared_storage_prefill_body(request: Mapping[str, Any]) -> dict[str, Any]:
    """Prefill through shared storage: one token, no cache-hit threshold."""
    body = dict(request)
    body.update(max_tokens=1, max_completion_tokens=1, cache_hit_threshold=0)
    return body


SGLANG_BOOTSTRAP_PORT = 8998  # upstream's default; env SGLANG_BOOTSTRAP_PORT overrides it
SGLANG_ROOM_SPREAD = 1000  # the room id is the time in ns plus a random number below this


def sglang_bootstrap_host(prefiller: str) -> str:
    """The host of the prefill `host:port` (an optional `http://` prefix, IPv6 brackets and
    the port removed): where the decoder fetches the KV cache from SGLang's bootstrap server."""
    where = prefiller.removeprefix("http://")
    if where.startswith("["):
        return where[1:].partition("]")[0]
    host, colon, port = where.rpartition(":")
    return host if colon and ":" not in host else where


def sglang_body(
    request: Mapping[str, Any], prefiller: str, bootstrap_port: int, room: int
) -> dict[str, Any]:
    """The one body sent to both the prefiller and the decoder: the client's request plus
    `bootstrap_host`, `bootstrap_port` and `bootstrap_room`, which pair the two engines."""
    body = dict(request)
    body["bootstrap_host"] = sglang_bootstrap_host(prefiller)
    body["bootstrap_port"] = bootstrap_port
    body["bootstrap_room"] = room
    return body


def sglang_room(now_ns: int, below: Callable[[int], int]) -> int:
    """A bootstrap room id as upstream makes one: the time in ns plus a random `below(1000)`."""
    return now_ns + below(SGLANG_ROOM_SPREAD)


def pick_prefiller(values: Sequence[str], sample: Callable[[int], int] | None) -> str:
    """The prefill `host:port` from the header values: one per header line, or one line
    with a comma list; the first, or `sample(n)`'s pick. Empty: no prefill."""
    hosts = list(values)
    if len(hosts) == 1:
        hosts = hosts[0].split(",")
    if not hosts:
        return ""
    index = sample(len(hosts)) if sample is not None else 0
    return hosts[index].strip()


def hostport(host: str, port: int) -> str:
    """Go's `net.JoinHostPort`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def cache_threshold_hit(body: bytes) -> bool:
    """Whether a response (JSON, or SSE events) reports finish reason `cache_threshold`."""
    texts = [body]
    if body.lstrip().startswith(b"data:"):
        texts = [ln[5:].strip() for ln in body.splitlines() if ln.startswith(b"data:")]
    for text in texts:
        try:
            event = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue
        choices = event.get("choices") if isinstance(event, dict) else None
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            if choices[0].get("finish_reason") == "cache_threshold":
                return True
    return False
