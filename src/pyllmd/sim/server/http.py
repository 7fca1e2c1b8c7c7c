"""The HTTP surface of one rank: routes, router behaviour, and the small endpoints
(models, LoRA (un)loading, sleep mode, tokenize, health, metrics).

aiohttp (with uvloop) was the fastest full framework measured here for SSE.
A catch-all route, registered last, reproduces upstream's router for every
request no route takes: plain-text `Not Found` and `Method Not Allowed` (with
`Allow`), automatic OPTIONS, and slash-fixing redirects. Every handler turns an
unexpected exception into an OpenAI-style 500 (the completion handlers in
`serving`, the others through `_guard`), so no traceback ever reaches a client.
No middleware: aiohttp would run it, and one more coroutine, on every request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from functools import partial

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from pyllmd.core.clock import Clock
from pyllmd.core.errors import LlmdError
from pyllmd.core.metricset import CONTENT_TYPE
from pyllmd.core.tokenize import Tokenizer
from pyllmd.sim.api.requests import Message, describe_validation_error, parse_lora_name
from pyllmd.sim.config import SimConfig
from pyllmd.sim.engine.sleep import parse_level
from pyllmd.sim.server.metrics import SimMetrics
from pyllmd.sim.server.serving import CompletionService, error_response

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TokenizeRequest(BaseModel):
    """`POST /tokenize` body."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    model: str | None = None
    prompt: str | None = None
    messages: list[Message] | None = None


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


CATCH_ALL = "/{unmatched_path:.*}"


def _guard(handler: Handler) -> Handler:
    """`handler` with its errors as replies: LlmdError → its OpenAI body, anything
    unexpected → 500 (logged); aiohttp's own HTTP exceptions pass through."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except LlmdError as e:
            return error_response(e)
        except Exception:
            log.exception("unexpected error path=%s", request.path)
            return error_response(LlmdError(500, "internal server error"))

    return guarded


def _known_routes(request: web.Request) -> list[tuple[str, str]]:
    """(path, method) of every registered route except the catch-all."""
    return [
        (route.resource.canonical, route.method)
        for route in request.app.router.routes()
        if route.resource is not None and route.handler is not unmatched
    ]


async def unmatched(request: web.Request) -> web.Response:
    """Upstream's router replies for a request no route takes."""
    routes = _known_routes(request)
    allowed = {method for path, method in routes if path == request.path}
    if allowed:
        allow = ", ".join(sorted(allowed)) + ", OPTIONS"
        if request.method == "OPTIONS":
            return web.Response(status=200, headers={"Allow": allow})
        return web.Response(status=405, text="Method Not Allowed", headers={"Allow": allow})
    target = _fixed_path(request.path, (path for path, _ in routes))
    if target is not None:
        status = 301 if request.method == "GET" else 307
        return web.Response(status=status, headers={"Location": target})
    return web.Response(status=404, text="Not Found")


def _fixed_path(path: str, known_paths: Iterable[str]) -> str | None:
    """The registered path that differs only by a trailing slash or letter case."""
    key = path.lower().rstrip("/")
    for known in known_paths:
        if known != path and known.lower().rstrip("/") == key:
            return known
    return None


class SimHTTP:
    """Builds the aiohttp application of one rank."""

    def __init__(
        self,
        cfg: SimConfig,
        clock: Clock,
        metrics: SimMetrics,
        tokenizer: Tokenizer,
        completions: CompletionService,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.metrics = metrics
        self.tokenizer = tokenizer
        self.completions = completions

    def app(self) -> web.Application:
        """The application with every upstream route."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        # the completion handlers guard themselves (serving.CompletionService.serve)
        app.router.add_post("/v1/chat/completions", partial(self.completions.serve, chat=True))
        app.router.add_post("/v1/completions", self.completions.serve)
        app.router.add_get("/v1/models", _guard(self.models), allow_head=False)
        app.router.add_get("/metrics", _guard(self.metrics_handler), allow_head=False)
        app.router.add_get("/health", _guard(self.health), allow_head=False)
        app.router.add_get("/ready", _guard(self.health), allow_head=False)
        app.router.add_post("/tokenize", _guard(self.tokenize))
        app.router.add_post("/v1/load_lora_adapter", _guard(self.load_lora))
        app.router.add_post("/v1/unload_lora_adapter", _guard(self.unload_lora))
        app.router.add_post("/sleep", _guard(self.sleep))
        app.router.add_post("/wake_up", _guard(self.wake_up))
        app.router.add_get("/is_sleeping", _guard(self.is_sleeping), allow_head=False)
        app.router.add_route("*", CATCH_ALL, unmatched)  # last: only what no route takes
        return app

    async def health(self, _: web.Request) -> web.Response:
        """GET /health and /ready: always 200 `{}`."""
        return _json({})

    async def metrics_handler(self, _: web.Request) -> web.Response:
        """GET /metrics in the classic text format (keeps the `vllm:` names)."""
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def models(self, _: web.Request) -> web.Response:
        """GET /v1/models: the served model names, then the registered LoRA adapters."""
        data = self.completions.engine.lora_registry.models(int(self.clock.wall()))
        return _json({"object": "list", "data": data})

    async def load_lora(self, request: web.Request) -> web.Response:
        """POST /v1/load_lora_adapter: register an adapter (idempotent); 200, empty body."""
        name = parse_lora_name(await request.read(), load=True)
        self.completions.engine.lora_registry.load(name)
        log.info("LoRA adapter loaded name=%s", name)
        return web.Response(status=200)

    async def unload_lora(self, request: web.Request) -> web.Response:
        """POST /v1/unload_lora_adapter: forget an adapter (unknown too); 200, empty body."""
        name = parse_lora_name(await request.read(), load=False)
        self.completions.engine.lora_registry.unload(name)
        log.info("LoRA adapter unloaded name=%s", name)
        return web.Response(status=200)

    async def sleep(self, request: web.Request) -> web.Response:
        """POST /sleep[?level=]: acts only with --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1."""
        level = parse_level(request.query.get("level"))
        if not (self.cfg.enable_sleep_mode and self.cfg.dev_mode):
            log.warning(
                "/sleep ignored: it needs --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1 "
                "(enable-sleep-mode=%s, dev mode=%s)",
                self.cfg.enable_sleep_mode,
                self.cfg.dev_mode,
            )
            return web.Response(status=200)
        engine = self.completions.engine
        engine.sleep(level)
        batch = self.completions.batch
        if batch is not None and engine.sleep_state.kv_cache_asleep:
            batch.drop_prefix_cache()
        self.metrics.set_sleep_state(engine.sleep_state)
        log.info("sleeping level=%d; completion requests wait until /wake_up", level)
        return web.Response(status=200)

    async def wake_up(self, request: web.Request) -> web.Response:
        """POST /wake_up[?tags=weights&tags=kv_cache]: wake the named parts (none given: all)."""
        tags = request.query.getall("tags", None)
        engine = self.completions.engine
        started = engine.wake_up(tags)
        self.metrics.set_sleep_state(engine.sleep_state)
        self.completions.resume(started)
        log.info("wake_up tags=%s sleeping=%s", tags, engine.sleep_state.is_sleeping)
        return web.Response(status=200)

    async def is_sleeping(self, _: web.Request) -> web.Response:
        """GET /is_sleeping."""
        return _json({"is_sleeping": self.completions.engine.sleep_state.is_sleeping})

    async def tokenize(self, request: web.Request) -> web.Response:
        """POST /tokenize with the simple tokenizer."""
        try:
            req = TokenizeRequest.model_validate_json(await request.read())
        except ValidationError as e:
            raise LlmdError(
                400,
                "Failed to read and parse tokenize request body, " + describe_validation_error(e),
            ) from None
        if req.prompt and req.messages is not None:
            raise LlmdError(400, "both prompt and messages fields in tokenize request")
        text = req.prompt or " ".join(m.text() for m in req.messages or ())
        ids, _ = self.tokenizer.encode(text)
        return _json(
            {
                "max_model_len": self.cfg.max_model_len,
                "count": len(ids),
                "tokens": ids,
                "token_strs": None,
            }
        )
