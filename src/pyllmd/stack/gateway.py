"""A minimal inference gateway for the local stack: routes by model, queues when no pod is ready.

It stands in for Envoy + the EPP's flow-control layer on a laptop: requests for
a model with no ready replica wait in a per-model queue (bounded in time), and
the queue is exported under the EPP's metric name
`inference_extension_flow_control_queue_size{target_model_name=...}`, which is
what the autoscaler's scale-from-zero engine reads from an EPP. Routing picks
the ready pod with the fewest requests in flight (ties round-robin).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Sequence

import aiohttp
import orjson
from aiohttp import web

from pyllmd.core.errors import error_json
from pyllmd.core.metricset import CONTENT_TYPE, Family, Registry

log = logging.getLogger(__name__)

Resolver = Callable[[str], Sequence[str]]
"""Model name → base URLs of its ready pods."""

HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})


class Gateway:
    """Reverse proxy by `model`, with a flow-control queue while no pod is ready."""

    def __init__(self, resolve: Resolver, queue_timeout: float = 120.0, poll: float = 0.05) -> None:
        self.resolve = resolve
        self.queue_timeout = queue_timeout
        self.poll = poll
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

    def app(self) -> web.Application:
        """The gateway's routes: the completion APIs (proxied) and /metrics."""
        app = web.Application()
        app.router.add_post("/v1/completions", self.proxy)
        app.router.add_post("/v1/chat/completions", self.proxy)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/health", self.health)
        app.on_cleanup.append(self._close)
        return app

    async def health(self, _: web.Request) -> web.Response:
        """Liveness."""
        return web.json_response({})

    async def metrics(self, _: web.Request) -> web.Response:
        """The flow-control queue gauge, in the classic text format."""
        return web.Response(body=self.registry.render(), headers={"Content-Type": CONTENT_TYPE})

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        """Forward one request to a ready pod of its model, waiting for one if needed."""
        body = await request.read()
        try:
            model = str(orjson.loads(body).get("model", ""))
        except (orjson.JSONDecodeError, AttributeError):
            return _error(400, "Failed to read and parse request body")
        target = await self._pick(model)
        if target is None:
            return _error(503, f"no ready endpoint for model {model} after queueing")
        self.in_flight[target] += 1
        try:
            return await self._forward(request, target, body)
        finally:
            self.in_flight[target] -= 1

    async def _pick(self, model: str) -> str | None:
        pods = self.resolve(model)
        if not pods:
            pods = await self._wait_for_pods(model)
        if not pods:
            return None
        least = min(self.in_flight[p] for p in pods)
        best = [p for p in pods if self.in_flight[p] == least]
        return best[next(self._rr) % len(best)]

    async def _wait_for_pods(self, model: str) -> Sequence[str]:
        gauge = self._queue.gauge(model)
        gauge.value += 1
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.queue_timeout
            while loop.time() < deadline:
                await asyncio.sleep(self.poll)
                pods = self.resolve(model)
                if pods:
                    return pods
            return ()
        finally:
            gauge.value -= 1

    async def _forward(self, request: web.Request, target: str, body: bytes) -> web.StreamResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            async with self._session.post(target + request.path, data=body, headers=headers) as up:
                resp = web.StreamResponse(
                    status=up.status,
                    headers={k: v for k, v in up.headers.items() if k.lower() not in HOP_HEADERS},
                )
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
        except aiohttp.ClientError as e:
            log.warning("upstream failed target=%s error=%s", target, e)
            return _error(502, f"upstream {target} failed: {e}")

    async def _close(self, _: web.Application) -> None:
        if self._session is not None:
            await self._session.close()


def _error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status, body=error_json(status, message), content_type="application/json"
    )
