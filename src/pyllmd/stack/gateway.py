"""A minimal inference gateway for the local stack: routes by model, queues when no pod is ready.

It stands in for Envoy + the EPP's flow-control layer on a laptop:

* a request names a `model`; one the stack does not serve is answered 404 at once
  (OpenAI error shape), and `GET /v1/models` lists the served ones;
* a served model with no ready pod (scaled to zero, or starting) holds its
  requests in a per-model queue, bounded in time (then 503). The queue is exported
  under the EPP's metric name
  `inference_extension_flow_control_queue_size{target_model_name=...}`, which is
  what the autoscaler's scale-from-zero engine reads from an EPP;
* each request is bound to a pod only when it is sent: the ready pod with the fewest
  requests in flight from this gateway (ties round-robin). There is no global cap:
  every request is sent at once over its own connection, so the pods' own queues
  (and the autoscaler, which reads them) see the whole load;
* a pod that refuses or drops the connection before answering (it went away) gets
  the request retried on another pod; once the response head has been sent to the
  client, an upstream failure aborts the client's connection, as Envoy resets it;
* on shutdown, held and in-flight requests end at once with an error.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from pyllmd.core.balance import pick
from pyllmd.core.errors import error_json
from pyllmd.core.metricset import CONTENT_TYPE, Family, Registry

log = logging.getLogger(__name__)

Resolver = Callable[[str], Sequence[str]]
"""Model name → base URLs of its ready pods."""
Models = Callable[[], Collection[str]]
"""The model names the stack serves (whether or not a pod is ready)."""

HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})
MAX_BODY = 64 * 1024 * 1024  # bytes, as the simulator accepts
ATTEMPTS = 4  # sends of one request: the first and up to three retries on other pods
SHUTTING_DOWN = "the gateway is shutting down"
# Failures before the response head that mean the pod went away: retry elsewhere.
RETRYABLE = (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError, ConnectionResetError)
GONE = aiohttp.ClientConnectorError  # connection refused: the pod is not listening any more


# ------------------------------------------------------------------ pure decisions


def request_model(body: bytes) -> str | tuple[int, str]:
    """The `model` of a request body, or (status, message) of the error to answer."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 400, "Failed to read and parse request body"
    if not isinstance(doc, dict):
        return 400, "Failed to read and parse request body"
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        return 400, "model not found in request body"
    return model


def model_list(models: Collection[str], created: int) -> dict[str, Any]:
    """`GET /v1/models` as vLLM answers it, one entry per served model."""
    return {
        "object": "list",
        "data": [
            {
                "id": m,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": m,
                "parent": None,
            }
            for m in sorted(models)
        ],
    }


@dataclass(frozen=True)
class _Failed:
    """A send that failed before anything reached the client."""

    error: BaseException
    retry: bool  # the pod went away (connection refused, dropped before the head)
    gone: bool  # the pod refused the connection: do not send this request there again


# ------------------------------------------------------------------ the server


class Gateway:
    """Reverse proxy by `model`, with a flow-control queue while no pod is ready."""

    def __init__(
        self,
        resolve: Resolver,
        models: Models,
        queue_timeout: float = 120.0,
        poll: float = 0.05,
        created: int | None = None,
    ) -> None:
        self.resolve = resolve
        self.models = models
        self.queue_timeout = queue_timeout
        self.poll = poll
        self.created = int(time.time()) if created is None else created
        self.in_flight: Counter[str] = Counter()
        self.registry = Registry()
        self._queue = self.registry.add(
            Family(
                "inference_extension_flow_control_queue_size",
                "gauge",
                "Requests waiting in the flow-control queue.",
                ("target_model_name",),
            )
        )
        self._rr = itertools.count()
        self._session: aiohttp.ClientSession | None = None
        self._closing = False

    def app(self) -> web.Application:
        """The gateway's routes: the completion APIs (proxied), /v1/models and /metrics."""
        # bodies up to the simulator's own limit pass; larger ones get 413 in the OpenAI shape
        app = web.Application(middlewares=[_openai_errors], client_max_size=MAX_BODY)
        app.router.add_post("/v1/completions", self.proxy)
        app.router.add_post("/v1/chat/completions", self.proxy)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/health", self.health)
        app.on_shutdown.append(self._shutdown)
        app.on_cleanup.append(self._close)
        return app

    async def health(self, _: web.Request) -> web.Response:
        """Liveness."""
        return web.json_response({})

    async def metrics(self, _: web.Request) -> web.Response:
        """The flow-control queue gauge, in the classic text format."""
        return web.Response(body=self.registry.render(), headers={"Content-Type": CONTENT_TYPE})

    async def list_models(self, _: web.Request) -> web.Response:
        """The models the stack serves, whether or not a pod is ready."""
        body = orjson.dumps(model_list(self.models(), self.created))
        return web.Response(body=body, content_type="application/json")

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        """Forward one request to a ready pod of its model, waiting for one if needed."""
        body = await request.read()
        model = request_model(body)
        if isinstance(model, tuple):
            return _error(*model)
        if model not in self.models():
            return _error(404, f"The model `{model}` does not exist.")
        gone: set[str] = set()
        failure: _Failed | None = None
        for _ in range(ATTEMPTS):
            target = await self._pick(model, gone)
            if target is None:
                break
            self.in_flight[target] += 1
            try:
                outcome = await self._forward(request, target, body)
            finally:
                self.in_flight[target] -= 1
                if not self.in_flight[target]:
                    del self.in_flight[target]
            if not isinstance(outcome, _Failed):
                return outcome
            failure = outcome
            if outcome.gone:
                gone.add(target)
            if not outcome.retry or self._closing:
                break
            log.info("retrying on another pod target=%s error=%s", target, outcome.error)
        if self._closing:
            return _error(503, SHUTTING_DOWN)
        if failure is not None:
            return _error(502, f"upstream failed: {failure.error}")
        return _error(503, f"no ready endpoint for model {model} after queueing")

    async def _pick(self, model: str, gone: Collection[str]) -> str | None:
        target = pick(self.resolve(model), self.in_flight, gone, next(self._rr))
        if target is None and not self._closing:
            await self._wait_for(lambda: pick(self.resolve(model), {}, gone, 0), model)
            target = pick(self.resolve(model), self.in_flight, gone, next(self._rr))
        return target

    async def _wait_for(self, ready: Callable[[], str | None], model: str) -> None:
        gauge = self._queue.gauge(model)
        gauge.value += 1
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.queue_timeout
            while loop.time() < deadline and not self._closing:
                await asyncio.sleep(self.poll)
                if ready() is not None:
                    return
        finally:
            gauge.value -= 1

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # no cap on connections: each request is sent the moment it is picked
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=False,
            )
        return self._session

    async def _forward(
        self, request: web.Request, target: str, body: bytes
    ) -> web.StreamResponse | _Failed:
        if self._closing:
            return _Failed(ConnectionAbortedError(SHUTTING_DOWN), retry=False, gone=False)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        resp: web.StreamResponse | None = None
        to_client = False  # whether the failure is the client's (it went away)
        try:
            async with self._client().post(
                target + request.path_qs, data=body, headers=headers
            ) as up:
                resp = web.StreamResponse(
                    status=up.status,
                    headers={k: v for k, v in up.headers.items() if k.lower() not in HOP_HEADERS},
                )
                to_client = True
                await resp.prepare(request)
                to_client = False
                async for chunk in up.content.iter_any():
                    to_client = True
                    await resp.write(chunk)
                    to_client = False
                to_client = True
                await resp.write_eof()
                return resp
        except (aiohttp.ClientError, ConnectionError) as e:
            if resp is None or (not resp.prepared and not to_client):
                if not self._closing:
                    log.warning("upstream failed target=%s error=%s", target, e)
                return _Failed(e, isinstance(e, RETRYABLE), isinstance(e, GONE))
            # The head is out (or the client is gone): the only honest signal left is to
            # drop the connection, so the client sees an incomplete body instead of a
            # second response.
            if not to_client and not self._closing:
                log.warning("stream aborted target=%s error=%s", target, e)
            if request.transport is not None:
                request.transport.close()
            return resp

    async def _shutdown(self, _: web.Application) -> None:
        """End held and in-flight requests now (held: 503; streaming: aborted)."""
        self._closing = True
        if self._session is not None:
            await self._session.close()

    async def _close(self, _: web.Application) -> None:
        if self._session is not None:
            await self._session.close()


def _error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status, body=error_json(status, message), content_type="application/json"
    )


@web.middleware
async def _openai_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unknown paths and methods answer in the OpenAI error shape too."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return _error(e.status, e.reason)
