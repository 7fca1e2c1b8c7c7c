"""An in-process HTTP server on 127.0.0.1 that answers like Prometheus' query API.

Replies use the real response shapes (`{"status": "success", "data": {...}}`,
`{"status": "error", "errorType": ..., "error": ...}`); every request is
recorded (method, path, form, headers) so tests can assert the PromQL sent.
"""

from __future__ import annotations

import inspect
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from pyllmd.core.clock import SteppingClock

EVAL_TIME = 1_700_000_000.0
Reply = tuple[int, Any]  # (HTTP status, JSON-able body or raw bytes)
Handler = Callable[[str], Reply | Awaitable[Reply]]


def vector(*series: tuple[Mapping[str, str], float | str], ts: float = EVAL_TIME) -> Reply:
    """A 200 answer with an instant vector of (labels, value) series."""
    result = [{"metric": dict(m), "value": [ts, str(v)]} for m, v in series]
    return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


def api_error(status: int, error_type: str, error: str) -> Reply:
    """An error answer as Prometheus writes it."""
    return status, {"status": "error", "errorType": error_type, "error": error}


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    form: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakePrometheus:
    """The running fake: its URL and what it was asked."""

    url: str
    requests: list[Recorded] = field(default_factory=list)

    @property
    def queries(self) -> list[str]:
        """The PromQL of every request, in arrival order."""
        return [r.form.get("query", "") for r in self.requests]


@asynccontextmanager
async def serve_prometheus(
    handler: Handler,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[FakePrometheus]:
    """Serve `handler` (PromQL → Reply) at `/api/v1/query`; 401 when `token` does not match."""
    scheme = "https" if ssl_context else "http"
    fake = FakePrometheus(url="")

    async def query(request: web.Request) -> web.StreamResponse:
        form = dict(await request.post()) if request.method == "POST" else {}
        form.update(request.query)
        fake.requests.append(
            Recorded(
                request.method,
                request.path,
                {k: str(v) for k, v in form.items()},
                dict(request.headers),
            )
        )
        if token is not None and request.headers.get("Authorization") != f"Bearer {token}":
            return web.Response(status=401, text="Unauthorized\n")
        reply = handler(str(form.get("query", "")))
        status, body = await reply if inspect.isawaitable(reply) else reply
        if isinstance(body, bytes):
            return web.Response(status=status, body=body, content_type="text/plain")
        return web.Response(status=status, text=json.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/api/v1/query", query)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"{scheme}://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


class RecordingClock(SteppingClock):
    """A stepping clock that remembers every sleep (retry backoff) without waiting."""

    def __init__(self) -> None:
        super().__init__(start=0.0, wall_start=EVAL_TIME)
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)
