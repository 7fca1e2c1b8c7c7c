"""The P/D routing sidecar's proxy, in front of a decode model server.

A drop-in for the parts of llm-d's routing sidecar (`cmd/pd-sidecar`) that make
disaggregated prefill/decode work end to end. It listens on `--port` in front of
the decoder on `127.0.0.1:--vllm-port`:

* `POST /v1/completions` and `/v1/chat/completions` with `x-prefiller-host-port`
  (one value, or a comma list: the first, or a random one with
  `--enable-prefiller-sampling`) run the connector protocol:
  - `nixlv2` (default): the request goes to the prefiller with
    `kv_transfer_params.do_remote_decode=true`, `stream=false`, `max_tokens` and
    `max_completion_tokens` 1; then the original request goes to the decoder
    carrying the `kv_transfer_params` the prefiller returned;
  - `shared-storage`: prefill with `max_tokens=1` and `cache_hit_threshold=0`,
    then decode the request with `cache_hit_threshold=0`; a request that has a
    `cache_hit_threshold` is first tried on the decoder alone and prefilled only
    when it answers with finish reason `cache_threshold`;
  - `sglang`: one body, the request plus `bootstrap_host` (the prefill host),
    `bootstrap_port` (8998, or `$SGLANG_BOOTSTRAP_PORT`) and `bootstrap_room`
    (time in ns plus a random number below 1000), goes to the prefiller in the
    background (its answer is dropped) and to the decoder, whose answer is the
    client's: SGLang's engines pair up through the bootstrap server themselves;
* without the header (or with an empty one) the request is forwarded as is;
  with `--data-parallel-size N` the ranks listen on `--port+i` and forward to
  `--vllm-port+i`, and the main port routes by `x-data-parallel-host-port`;
* every other path (`/metrics`, `/v1/models`, ...) is proxied to the decoder.

Deviations: a failing prefill is answered with the prefiller's status and body
(upstream sends the status with an empty body); the sglang `bootstrap_host` is
the host of a `http://host:port` or `[IPv6]:port` value (upstream cuts at the
first colon, giving `http` or `[`). The proxying is a few lines of
aiohttp (server and client, both already dependencies) rather than a proxy
library, because each request's body is rewritten between two upstream calls;
bodies are re-serialised with sorted keys, as Go's encoder does.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from pyllmd.sidecar.config import (
    CONNECTOR_SGLANG,
    CONNECTOR_SHARED_STORAGE,
    SidecarOptions,
)
from pyllmd.sidecar.protocol import (
    DATA_PARALLEL_HEADER,
    DECODER_DOWN,
    HOP_HEADERS,
    PD_PATHS,
    PREFILL_HEADER,
    REQUEST_ID_HEADER,
    cache_threshold_hit,
    dumps,
    error_body,
    nixl_decode_body,
    nixl_prefill_body,
    pick_prefiller,
    sglang_body,
    sglang_room,
    shared_storage_prefill_body,
)

log = logging.getLogger(__name__)

Headers = list[tuple[str, str]]  # request headers to send; repeated keys allowed


# ------------------------------------------------------------------ the proxy


@dataclass
class Sidecar:
    """One listener: P/D protocol on the completion paths, pass-through elsewhere."""

    options: SidecarOptions
    decoder: str  # base URL of the local decoder
    ranks: Mapping[str, str] = field(default_factory=dict)  # `<pod ip>:<port>` → decoder URL
    rng: random.Random = field(default_factory=random.Random)
    session: aiohttp.ClientSession | None = None
    background: set[asyncio.Task[None]] = field(default_factory=set)  # sglang prefills

    def app(self) -> web.Application:
        """All routes go through `handle` (method + path dispatch, as upstream's mux)."""
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET" and request.path == "/health":
            return web.Response(status=200)
        if request.method == "POST" and request.path in PD_PATHS:
            return await self.pd(request)
        return await self.forward(request, self.decoder, await request.read())

    async def pd(self, request: web.Request) -> web.StreamResponse:
        sample = self.rng.randrange if self.options.enable_prefiller_sampling else None
        prefiller = pick_prefiller(request.headers.getall(PREFILL_HEADER, []), sample)
        raw = await request.read()
        if not prefiller:
            return await self.decode(request, raw)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            return _error(400, "BadRequestError", str(err))
        if not isinstance(body, dict):
            return _error(400, "BadRequestError", "request body is not a JSON object")
        if self.options.connector == CONNECTOR_SHARED_STORAGE:
            return await self.shared_storage(request, prefiller, body, raw)
        if self.options.connector == CONNECTOR_SGLANG:
            return await self.sglang(request, prefiller, body)
        return await self.nixl_v2(request, prefiller, body)

    async def decode(
        self, request: web.Request, body: bytes, headers: Headers | None = None
    ) -> web.StreamResponse:
        """To the local decoder, or to the data-parallel rank the EPP chose."""
        rank = request.headers.get(DATA_PARALLEL_HEADER, "")
        if rank and self.ranks:
            target = self.ranks.get(rank)
            if target is None:
                log.debug("no data-parallel rank %s", rank)
                return web.Response(status=400)
            return await self.forward(request, target, body, headers)
        return await self.forward(request, self.decoder, body, headers)

    async def nixl_v2(
        self, request: web.Request, prefiller: str, body: dict[str, Any]
    ) -> web.StreamResponse:
        headers = _request_headers(request)
        headers.append((REQUEST_ID_HEADER, str(uuid.uuid4())))  # added, as upstream does
        status, reply = await self.prefill(request, prefiller, nixl_prefill_body(body), headers)
        if status is not None:
            return reply_error(status, reply)
        try:
            answer = orjson.loads(reply)
        except orjson.JSONDecodeError as err:
            return _error(400, "BadRequestError", str(err))
        params = answer.get("kv_transfer_params") if isinstance(answer, dict) else None
        if params is None:
            log.info("warning: missing 'kv_transfer_params' field in prefiller response")
        return await self.decode(request, dumps(nixl_decode_body(body, params)), headers)

    async def shared_storage(
        self, request: web.Request, prefiller: str, body: dict[str, Any], raw: bytes
    ) -> web.StreamResponse:
        if "cache_hit_threshold" in body:
            tried = await self.try_decode(request, raw)
            if tried is not None:
                return tried
        status, reply = await self.prefill(
            request, prefiller, shared_storage_prefill_body(body), _request_headers(request)
        )
        if status is not None:
            return reply_error(status, reply)
        return await self.decode(request, dumps({**body, "cache_hit_threshold": 0}))

    async def sglang(
        self, request: web.Request, prefiller: str, body: dict[str, Any]
    ) -> web.StreamResponse:
        """The same bootstrap-tagged body to the prefiller (background) and the decoder."""
        room = sglang_room(time.time_ns(), self.rng.randrange)
        tagged = sglang_body(body, prefiller, self.options.sglang_bootstrap_port, room)
        headers = _request_headers(request)
        prefill = asyncio.get_running_loop().create_task(
            self._sglang_prefill(request, prefiller, tagged, headers), name="sglang prefill"
        )
        self.background.add(prefill)
        prefill.add_done_callback(self.background.discard)
        return await self.forward(request, self.decoder, dumps(tagged), headers)

    async def _sglang_prefill(
        self, request: web.Request, prefiller: str, body: dict[str, Any], headers: Headers
    ) -> None:
        status, _ = await self.prefill(request, prefiller, body, headers)
        log.debug("sglang prefill request completed host=%s failed_status=%s", prefiller, status)

    async def try_decode(self, request: web.Request, raw: bytes) -> web.StreamResponse | None:
        """Decode without prefill; None when the decoder asks for a prefill (`cache_threshold`)."""
        url = self.decoder + request.path_qs
        verify = not self.options.decoder_insecure_skip_verify
        try:
            async with self._session().post(
                url, data=raw, headers=_request_headers(request), ssl=verify
            ) as up:
                head = await _first_event(up)
                if up.status < 300 and cache_threshold_hit(head):
                    return None
                return await _relay(request, up, head)
        except aiohttp.ClientError as err:
            return _upstream_error(self.decoder, err)

    async def prefill(
        self, request: web.Request, prefiller: str, body: dict[str, Any], headers: Headers
    ) -> tuple[int | None, bytes]:
        """POST to the prefiller; (None, body) on success, else (status, body to return)."""
        scheme = "https://" if self.options.prefiller_use_tls else "http://"
        host = prefiller.removeprefix("http://")
        verify = not self.options.prefiller_insecure_skip_verify
        try:
            async with self._session().post(
                scheme + host + request.path_qs,
                data=dumps(body),
                headers=headers,
                ssl=verify,
            ) as up:
                data = await up.read()
                if not 200 <= up.status < 300:
                    log.error("prefill request to %s failed: %d", host, up.status)
                    return up.status, data
                return None, data
        except aiohttp.ClientError as err:
            log.error("prefill request to %s failed: %s", host, err)
            return 502, error_body(502, "BadGateway", str(err))

    async def forward(
        self,
        request: web.Request,
        base: str,
        body: bytes,
        headers: Headers | None = None,
    ) -> web.StreamResponse:
        """Reverse-proxy one request to `base`, streaming the answer back."""
        verify = not self.options.decoder_insecure_skip_verify
        try:
            async with self._session().request(
                request.method,
                base + request.path_qs,
                data=body,
                headers=headers if headers is not None else _request_headers(request),
                ssl=verify,
            ) as up:
                return await _relay(request, up, b"")
        except aiohttp.ClientError as err:
            return _upstream_error(base, err)

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False
            )
        return self.session


def _request_headers(request: web.Request) -> Headers:
    return [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_HEADERS]


def _upstream_error(base: str, err: aiohttp.ClientError) -> web.Response:
    """The decoder refused the connection: 503 (not ready); any other failure: 502."""
    refused = isinstance(err, aiohttp.ClientConnectorError) and (
        getattr(err.os_error, "errno", None) == errno.ECONNREFUSED
    )
    if refused:
        log.error("failed to connect to the decoder %s: %s", base, err)
        return _error(503, "ServiceUnavailable", DECODER_DOWN)
    log.error("proxy error to %s: %s", base, err)
    return _error(502, "BadGateway", str(err))


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.Response(
        status=status, body=error_body(status, kind, message), content_type="application/json"
    )


def reply_error(status: int, body: bytes) -> web.Response:
    """A failed prefill's answer, passed to the client."""
    return web.Response(status=status, body=body, content_type="application/json")


async def _first_event(up: aiohttp.ClientResponse) -> bytes:
    """A whole JSON body, or an SSE stream up to its first complete event."""
    if "text/event-stream" not in up.headers.get("Content-Type", ""):
        return await up.read()
    head = b""
    while b"\n\n" not in head:
        chunk = await up.content.readany()
        if not chunk:
            break
        head += chunk
    return head


async def _relay(
    request: web.Request, up: aiohttp.ClientResponse, head: bytes
) -> web.StreamResponse:
    """Stream an upstream response to the client (`head`: bytes already read from it)."""
    resp = web.StreamResponse(status=up.status, reason=up.reason)
    for key, value in up.headers.items():
        if key.lower() not in HOP_HEADERS:
            resp.headers.add(key, value)
    length = up.headers.get("Content-Length")
    if length is not None and length.isascii() and length.isdigit():
        resp.content_length = int(length)
    await resp.prepare(request)
    if head:
        await resp.write(head)
    async for chunk in up.content.iter_any():
        await resp.write(chunk)
    await resp.write_eof()
    return resp
