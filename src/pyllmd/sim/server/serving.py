"""The completion flow of one rank: parse, check, queue, run, reply (the imperative shell).

Decisions come from the Engine; this module owns the waiting futures, the
sleeps, the socket writes and the metrics calls. Every admitted request is
released in a `finally`, so a failure after scheduling never leaks a worker,
and every request gets either a response or an OpenAI-style error.

Shutdown (driven by `server.serve`): `start_drain` refuses new completions with
503; `wait_idle` waits for the ones in flight; `abort_in_flight` ends the rest:
a request with nothing sent yet gets a 503 error body, a stream gets an SSE
`data:` event holding the same error object followed by `data: [DONE]`, as
vLLM ends a stream that fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web

from pyllmd.core.clock import Clock
from pyllmd.core.errors import LlmdError, error_json
from pyllmd.core.tokenize import Tokenizer, token_ids
from pyllmd.sim.api.requests import (
    ChatCompletionRequest,
    TextCompletionRequest,
    parse_body,
    validate_request,
)
from pyllmd.sim.api.responses import DONE, ChunkWriter, Usage, completion_body
from pyllmd.sim.config import SimConfig
from pyllmd.sim.engine import Engine, Plan, Work
from pyllmd.sim.engine.admission import QUEUE_FULL_MESSAGE, Admission
from pyllmd.sim.engine.failures import pick_failure
from pyllmd.sim.engine.logprobs import chat_logprobs, text_logprobs
from pyllmd.sim.engine.toolcalls import (
    ToolCall,
    ToolError,
    ToolLimits,
    completion_tokens,
    make_tool_calls,
)
from pyllmd.sim.server import batchserving
from pyllmd.sim.server.batchloop import BatchLoop, Ticket
from pyllmd.sim.server.metrics import SimMetrics

log = logging.getLogger(__name__)

# Go strconv.ParseBool spellings of true (the header forces the reason only when true).
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
DRAINING_MESSAGE = "the server is shutting down and takes no new requests"
# Time an aborted stream gets to write its error event to a slow reader.
ABORT_WRITE_TIMEOUT = 1.0


def error_response(e: LlmdError) -> web.Response:
    """An OpenAI-style JSON error reply."""
    return web.Response(
        status=e.status,
        body=error_json(e.status, e.message, e.param),
        content_type="application/json",
    )


@dataclass(slots=True)
class _Call:
    """Per-request facts the reply needs, beyond the engine's Work."""

    chat: bool
    stream: bool
    include_usage: bool
    model: str
    headers: dict[str, str]
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: int | None = None


@dataclass(slots=True)
class Reply:
    """What is sent: text tokens or tool calls, the finish reason and the completion tokens
    (not frozen, though never changed: a frozen dataclass costs three times as much to
    build, and one is built per request)."""

    tokens: list[str]
    calls: tuple[ToolCall, ...]
    finish_reason: str
    completion_tokens: int

    @classmethod
    def of(cls, plan: Plan, calls: tuple[ToolCall, ...]) -> Reply:
        """Tool calls replace the text unless the reply is a cache-threshold one."""
        if not calls or plan.finish_reason == "cache_threshold":
            return cls(plan.tokens, (), plan.finish_reason, len(plan.tokens))
        finish = "remote_decode" if plan.finish_reason == "remote_decode" else "tool_calls"
        return cls([], calls, finish, completion_tokens(calls))


class CompletionService:
    """Serves `/v1/chat/completions` and `/v1/completions` for one rank."""

    def __init__(
        self,
        cfg: SimConfig,
        port: int,
        clock: Clock,
        rng: random.Random,
        engine: Engine,
        metrics: SimMetrics,
        tokenizer: Tokenizer,
        batch: BatchLoop | None = None,
    ) -> None:
        self.cfg = cfg
        self.batch = batch  # --latency-calculator batch: the rank's step loop
        self.port = port
        self.clock = clock
        self.rng = rng
        self.engine = engine
        self.metrics = metrics
        self.tokenizer = tokenizer
        self._served = frozenset(cfg.served_model_name or (cfg.model,))
        self._waiters: dict[Work, asyncio.Future[None]] = {}
        self._counter = 0
        # Request ids are UUID strings: a per-rank UUIDv5 prefix (from seed and port, so
        # runs are reproducible) and a 48-bit counter; cheaper than one UUIDv5 per request.
        self._id_prefix = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{cfg.seed}-{port}"))[:24]
        self._base_headers = _pod_headers(cfg, port)
        # reply headers of a JSON body: one shared dict unless a request adds X-Request-Id
        self._json_headers = {**self._base_headers, "Content-Type": "application/json"}
        # Config values read per request, as plain attributes (a pydantic model's attribute
        # access goes through its __getattr__ hook).
        self._failure_rate = cfg.failure_injection_rate
        self._request_id_headers = cfg.enable_request_id_headers
        self._display_model = cfg.display_model
        self._tool_limits = ToolLimits.from_config(cfg)
        self._last_token_s = batch.last_token_s if batch is not None else 0.0
        self.draining = False
        self._inflight: set[asyncio.Task[object]] = set()
        self._idle: asyncio.Future[None] | None = None  # created by wait_idle only
        self._abort: LlmdError | None = None  # set when the drain ran out of time
        self._woken: asyncio.Future[None] | None = None  # batch: resolved by a wake-up
        self._held = 0  # batch: requests held while the engine sleeps
        # the queue gauges are read at scrape time, not pushed on every admit/start/release
        if batch is not None:
            metrics.read_queue_gauges(
                lambda: batch.num_running, lambda: batch.num_waiting + self._held
            )
        else:
            metrics.read_queue_gauges(lambda: engine.num_running, lambda: engine.num_waiting)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/chat/completions (the route calls `serve(request, chat=True)` directly)."""
        return await self.serve(request, chat=True)

    async def serve(self, request: web.Request, chat: bool = False) -> web.StreamResponse:
        """POST /v1/completions, or with `chat` POST /v1/chat/completions."""
        if self.draining:
            return error_response(LlmdError(503, DRAINING_MESSAGE))
        task = request.task  # the task running this handler (asyncio.current_task costs more)
        self._inflight.add(task)
        try:
            received = self.clock.now()
            try:
                work, call = self._prepare(await request.read(), request.headers, chat=chat)
            except LlmdError as e:
                return error_response(e)
            work.admitted_at = received  # the batch loop counts its request costs from here
            return await self._run(request, work, call)
        except asyncio.CancelledError:
            if self._abort is None:
                raise  # the client left
            task.uncancel()  # aborted by the shutdown before anything was sent
            return error_response(self._abort)
        except web.HTTPException:
            raise  # aiohttp's own replies (e.g. a body over the size limit)
        except Exception:  # a bug: an OpenAI-style 500, never a traceback to the client
            log.exception("unexpected error path=%s", request.path)
            return error_response(LlmdError(500, "internal server error"))
        finally:
            self._inflight.discard(task)
            if not self._inflight and self._idle is not None and not self._idle.done():
                self._idle.set_result(None)

    def _prepare(self, raw: bytes, headers: Mapping[str, str], *, chat: bool) -> tuple[Work, _Call]:
        """Everything before queueing: parse, failure injection, model check, validation."""
        req = parse_body(ChatCompletionRequest if chat else TextCompletionRequest, raw)
        request_id = self._request_id(headers)
        if self._failure_rate:  # at rate 0 nothing is drawn (pick_failure returns None)
            failure = pick_failure(
                self.rng, self._failure_rate, self.cfg.failure_types, self.cfg.model
            )
            if failure is not None:
                raise failure
        facts = req.facts()
        lora = self.engine.resolve_model(facts.model)  # 404 unless served name or adapter
        validate_request(req, facts)
        ids, strs = self.tokenizer.encode(facts.prompt)
        force = headers.get("X-Cache-Threshold-Finish-Reason", "")
        work = Work(  # positional, in field order (the hot path)
            request_id,
            ids,
            strs,
            lora,
            facts.max_tokens,
            facts.ignore_eos,
            facts.remote_prefill,
            facts.remote_decode,
            facts.cache_hit_threshold,
            force in _TRUE,
        )
        if isinstance(req, ChatCompletionRequest):
            work.dataset_keys = self.engine.text.chat_keys(req.messages)
        self.engine.check_context(work)
        calls = () if not chat or work.force_cache_threshold else self._tool_calls(req, request_id)
        reply_headers = self._json_headers
        if self._request_id_headers:
            reply_headers = {**reply_headers, "X-Request-Id": request_id}
        model = lora or self._display_model  # an adapter request reports the adapter
        call = _Call(
            chat, facts.stream, facts.include_usage, model, reply_headers, calls, facts.logprobs
        )
        return work, call

    def _tool_calls(self, req: object, request_id: str) -> tuple[ToolCall, ...]:
        """The reply's tool calls, decided before queueing so errors cost no worker."""
        if not isinstance(req, ChatCompletionRequest) or req.choice.mode == "none":
            return ()
        tools = req.function_defs
        if tools is None:
            return ()
        try:
            calls = make_tool_calls(tools, req.choice, self._tool_limits, self.rng, self._tokenize)
        except ToolError as e:
            raise LlmdError(
                500,
                f"failed to create response for chat completion request (req id {request_id}) {e}",
            ) from None
        return tuple(calls)

    def _tokenize(self, text: str) -> list[str]:
        return self.tokenizer.encode(text)[1]

    def _request_id(self, headers: Mapping[str, str]) -> str:
        if self._request_id_headers:
            given = headers.get("X-Request-Id", "")
            if given:
                return given
        self._counter += 1
        return f"{self._id_prefix}{self._counter & 0xFFFFFFFFFFFF:012x}"

    async def _run(self, request: web.Request, work: Work, call: _Call) -> web.StreamResponse:
        """`admitted` written out (the hot path; an async context manager costs more)."""
        if self.batch is not None:
            return await self._run_batch(request, work, call, self.batch)
        engine = self.engine
        admission = engine.admit(work, self.clock.now())
        if admission is Admission.REJECTED:
            return error_response(LlmdError(429, QUEUE_FULL_MESSAGE))
        holds_worker = admission is Admission.STARTED
        # a base-model request changes no pushed gauge when it is admitted or started
        # (LoRA series: only adapter requests; KV usage: only with a cache)
        pushed = work.lora is not None or engine.kv is not None
        if pushed:
            self._publish_gauges()
        try:
            if not holds_worker:
                holds_worker = await self._wait_for_worker(work)
            plan = engine.start(work, self.clock.now())
            if pushed:
                self._publish_gauges()
            if call.tool_calls:
                reply = Reply.of(plan, call.tool_calls)
            else:
                reply = Reply(plan.tokens, (), plan.finish_reason, len(plan.tokens))
            if call.stream:
                return await self._stream(request, work, call, plan, reply)
            if plan.delays:
                if plan.ttft > 0 or not engine.itl_zero:
                    await self.wait_whole(plan, reply.completion_tokens)
                else:  # nothing to wait for: the samples the waits would record, no clock
                    self.metrics.observe_instant(plan.ttft, reply.completion_tokens)
            return self._respond(work, call, plan, reply)
        except LlmdError as e:
            return error_response(e)
        finally:
            if holds_worker:
                self._release(work)

    # -- --latency-calculator batch ------------------------------------------------

    async def _run_batch(
        self, request: web.Request, work: Work, call: _Call, batch: BatchLoop
    ) -> web.StreamResponse:
        """The reply's text is planned per request; its timing comes from the rank's step
        loop: each token is sent at the end of the engine step that computed it."""
        engine = self.engine
        plan = engine.start(work, self.clock.now())  # the text (and the KV-event cache)
        try:
            reply = Reply.of(plan, call.tool_calls) if call.tool_calls else None
            if reply is None:
                reply = Reply(plan.tokens, (), plan.finish_reason, len(plan.tokens))
            if not plan.delays or reply.completion_tokens < 1:  # cache-threshold: at once
                if call.stream:
                    return await self._stream(request, work, call, plan, reply)
                return self._respond(work, call, plan, reply)
            if work.remote_decode and not reply.calls:  # P/D prefill side: one token
                reply.tokens = reply.tokens[:1]
                reply.completion_tokens = len(reply.tokens)
            # P/D decode side: the prompt's KV arrives after the transfer time (the flags',
            # else the KV bytes over the accelerator's network)
            transfer = None
            if work.remote_prefill:
                by_size = batch.transfer_s
                transfer = by_size(len(work.prompt_ids)) if by_size is not None else plan.ttft
            await self.wait_awake()
            try:
                out = _reply_ids(reply) if batch.events is not None else ()
                ticket = batchserving.submit(batch, work, reply.completion_tokens, transfer, out)
            except LlmdError as e:
                return error_response(e)
            try:
                if call.stream:
                    return await self._stream_batch(request, work, call, reply, ticket)
                await ticket.wait(reply.completion_tokens - 1)
                if ticket.failed:
                    return error_response(LlmdError(500, "internal server error"))
                batchserving.observe(self.metrics, batch, work, ticket)
                plan.cached_tokens = ticket.req.cached_tokens
                await self.clock.sleep(self._last_token_s)
                return self._respond(work, call, plan, reply)
            finally:
                batch.cancel(ticket)  # no-op once finished; frees the blocks of a client gone
        finally:
            if work.in_kv_cache and engine.kv is not None:
                engine.kv.finish(work.request_id, self.clock.now())
                work.in_kv_cache = False

    async def _stream_batch(
        self, request: web.Request, work: Work, call: _Call, reply: Reply, ticket: Ticket
    ) -> web.StreamResponse:
        batch = self.batch
        assert batch is not None
        resp, writer = await self._open_stream(request, work, call)
        try:
            if not await batchserving.stream_tokens(resp, writer, call, reply, ticket):
                await self._end_stream(resp, LlmdError(500, "internal server error"))
                return resp
            await self.clock.sleep(self._last_token_s)
            usage = Usage(len(work.prompt_ids), reply.completion_tokens, self._batch_cached(ticket))
            await batchserving.finish_stream(resp, writer, call, reply, usage)
        except asyncio.CancelledError:
            if not await self._ended_by_shutdown(resp, work):
                raise
            return resp
        batchserving.observe(self.metrics, batch, work, ticket)
        self.record_success(work, reply)
        return resp

    async def wait_awake(self) -> None:
        """Until the engine is awake (a sleeping server holds new requests, as vLLM's
        paused scheduler; requests already in the batch engine run on)."""
        if not self.engine.sleep_state.is_sleeping:
            return
        self._held += 1  # counted as waiting, as the per-request queue counts them
        try:
            while self.engine.sleep_state.is_sleeping:
                if self._woken is None or self._woken.done():
                    self._woken = asyncio.get_running_loop().create_future()
                await asyncio.shield(self._woken)
        finally:
            self._held -= 1

    async def batch_deliveries(
        self, work: Work, n: int, output_ids: Sequence[int] = ()
    ) -> AsyncIterator[tuple[int, int]]:
        """For the gRPC API: submit `work` for `n` tokens (`output_ids`: their ids, for the KV
        events of generated blocks) to the batch loop and yield (tokens
        delivered so far, cached prompt tokens) after each step that produced some; the
        latency histograms are observed and `last_token_s` slept after the last one.
        LlmdError (400 or 429) when the engine refuses the request."""
        batch = self.batch
        assert batch is not None
        await self.wait_awake()
        ticket = batchserving.submit(batch, work, n, output_ids=output_ids)
        try:
            async for have in batchserving.delivered(ticket, n):
                yield have, ticket.req.cached_tokens
            if ticket.failed:
                raise LlmdError(500, "internal server error")
            batchserving.observe(self.metrics, batch, work, ticket)
            await self.clock.sleep(self._last_token_s)
        finally:
            batch.cancel(ticket)

    def _batch_cached(self, ticket: Ticket) -> int | None:
        return ticket.req.cached_tokens if self.cfg.enable_prefix_caching else None

    # -- shutdown -------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Completion requests being handled (queued, running or streaming)."""
        return len(self._inflight)

    def start_drain(self) -> None:
        """From now on a new completion request gets a 503 at once."""
        self.draining = True

    async def wait_idle(self) -> None:
        """Until no completion request is in flight."""
        if not self._inflight:
            return
        if self._idle is None or self._idle.done():
            self._idle = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._idle)

    def abort_in_flight(self, message: str) -> int:
        """End every in-flight completion with a 503 `message` (error event for streams)."""
        self._abort = LlmdError(503, message)
        for task in self._inflight:
            task.cancel()
        return len(self._inflight)

    async def _end_stream(self, resp: web.StreamResponse, error: LlmdError) -> None:
        """The error as an SSE event, then `[DONE]`; bounded for a client that stops reading."""
        event = b"data: " + error_json(error.status, error.message, error.param) + b"\n\n"
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(ABORT_WRITE_TIMEOUT):
                await resp.write(event + DONE)

    @contextlib.asynccontextmanager
    async def admitted(self, work: Work) -> AsyncIterator[Plan]:
        """Queue `work`, wait for a worker, start it; the worker is released on exit.

        A full queue is a 429 `LlmdError`; errors of `start` (context, KV capacity)
        propagate after the worker was given back.
        """
        admission = self.engine.admit(work, self.clock.now())
        if admission is Admission.REJECTED:
            raise LlmdError(429, QUEUE_FULL_MESSAGE)
        holds_worker = admission is Admission.STARTED
        self._publish_gauges()
        try:
            if not holds_worker:
                holds_worker = await self._wait_for_worker(work)
            plan = self.engine.start(work, self.clock.now())
            self._publish_gauges()
            yield plan
        finally:
            if holds_worker:
                self._release(work)

    async def _wait_for_worker(self, work: Work) -> bool:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[work] = fut
        try:
            await fut
        except asyncio.CancelledError:
            if self.engine.withdraw(work):
                self._publish_gauges()
            else:  # started meanwhile: give the worker back
                self._release(work)
            raise
        finally:
            self._waiters.pop(work, None)
        self.metrics.observe_queue_time(self.clock.now() - work.admitted_at)
        return True

    def _release(self, work: Work) -> None:
        for started in self.engine.release(work, self.clock.now()):
            fut = self._waiters.get(started)
            if fut is not None and not fut.done():
                fut.set_result(None)
        self._publish_gauges()

    def resume(self, started: list[Work]) -> None:
        """Hand workers to queued requests started by a wake-up (not by a release)."""
        if self._woken is not None and not self._woken.done():
            self._woken.set_result(None)
        for work in started:
            fut = self._waiters.get(work)
            if fut is not None and not fut.done():
                fut.set_result(None)
        self._publish_gauges()

    def _publish_gauges(self) -> None:
        """The gauges that are pushed: LoRA series (on change) and KV usage (with a cache)."""
        engine = self.engine
        loras = engine.queue.loras
        if loras.version != self.metrics.lora_version:
            self.metrics.publish_loras(loras)
        if engine.kv is not None:
            self.metrics.set_kv_usage(engine.kv_usage)

    def _usage(self, work: Work, plan: Plan, reply: Reply) -> Usage:
        cached = plan.cached_tokens if self.engine.kv is not None else None
        return Usage(len(work.prompt_ids), reply.completion_tokens, cached)

    async def wait_whole(self, plan: Plan, completion_tokens: int) -> None:
        """TTFT, then the inter-token gaps of a reply that is sent whole (not streamed)."""
        if not plan.delays:
            return
        await self.sleep_ttft(plan)
        start = deadline = self.clock.now()
        remaining = completion_tokens - 1
        while remaining > 0:
            delay = self.next_itl(remaining)
            if delay is None:
                break
            remaining -= 1
            if delay > 0:
                deadline += delay
                await self.clock.sleep_until(deadline)
        if completion_tokens > 1:
            self.metrics.observe_decode_time(self.clock.now() - start)

    def _respond(self, work: Work, call: _Call, plan: Plan, reply: Reply) -> web.Response:
        """The whole reply of a non-streamed request, once its waits are over; counted."""
        logprobs = None
        if call.logprobs is not None and reply.tokens:
            make = chat_logprobs if call.chat else text_logprobs
            logprobs = make(reply.tokens, call.logprobs)
        completion = reply.completion_tokens
        cached = plan.cached_tokens if self.engine.kv is not None else None
        if self.batch is not None:
            cached = plan.cached_tokens if self.cfg.enable_prefix_caching else None
        body = completion_body(
            chat=call.chat,
            request_id=work.request_id,
            created=int(self.clock.wall()),
            model=call.model,
            text="".join(reply.tokens),
            finish_reason=reply.finish_reason,
            usage=Usage(len(work.prompt_ids), completion, cached),
            tool_calls=reply.calls,
            logprobs=logprobs,
        )
        now = self.clock.now()  # record_success, written out (the hot path)
        self.metrics.finish(
            now - work.admitted_at,
            now - work.started_at,
            len(work.prompt_ids),
            completion,
            work.max_tokens,
            reply.finish_reason,
        )
        return web.Response(body=body, headers=call.headers)  # Content-Type is in them

    def next_itl(self, remaining: int) -> float | None:
        """The next inter-token delay, observed; None once the rest are all zero (and observed)."""
        delay = self.engine.itl()
        if delay <= 0 and self.engine.itl_fixed:
            self.metrics.observe_itl_many(delay, remaining)
            return None
        self.metrics.observe_itl(delay)
        return delay

    async def sleep_ttft(self, plan: Plan) -> None:
        self.metrics.observe_ttft(plan.ttft)
        before = self.clock.now()
        if plan.ttft > 0:
            await self.clock.sleep(plan.ttft)
        self.metrics.observe_prefill_time(self.clock.now() - before)

    async def _open_stream(
        self, request: web.Request, work: Work, call: _Call
    ) -> tuple[web.StreamResponse, ChunkWriter]:
        resp = web.StreamResponse(headers={**call.headers, "Content-Type": "text/event-stream"})
        await resp.prepare(request)
        writer = ChunkWriter(
            chat=call.chat,
            request_id=work.request_id,
            created=int(self.clock.wall()),
            model=call.model,
        )
        return resp, writer

    async def _ended_by_shutdown(self, resp: web.StreamResponse, work: Work) -> bool:
        """A stream's task was cancelled: False when the client left (the caller re-raises);
        when the shutdown aborted it, the stream ends with the shutdown's error."""
        if self._abort is None:
            log.debug("client left the stream request_id=%s", work.request_id)
            return False
        task = asyncio.current_task()
        assert task is not None
        task.uncancel()
        await self._end_stream(resp, self._abort)
        return True

    async def _stream(
        self, request: web.Request, work: Work, call: _Call, plan: Plan, reply: Reply
    ) -> web.StreamResponse:
        resp, writer = await self._open_stream(request, work, call)
        try:
            await self._stream_tokens(resp, writer, call, plan, reply)
            if call.include_usage:
                await resp.write(writer.usage(self._usage(work, plan, reply)))
            await resp.write(DONE)
        except asyncio.CancelledError:
            if not await self._ended_by_shutdown(resp, work):
                raise
            return resp
        except ConnectionError:
            log.debug("client left the stream request_id=%s", work.request_id)
            raise
        self.record_success(work, reply)
        return resp

    async def _stream_tokens(
        self, resp: web.StreamResponse, writer: ChunkWriter, call: _Call, plan: Plan, reply: Reply
    ) -> None:
        """Role chunk, one TTFT wait (also for tool calls), then the chunks with ITL gaps."""
        count = len(reply.tokens) or sum(len(c.tokens) or 1 for c in reply.calls)
        if not count:
            if plan.finish_reason == "cache_threshold":
                await resp.write(writer.token("", plan.finish_reason))
            return
        buf = bytearray(writer.role() if call.chat else b"")
        if plan.delays:
            if buf and plan.ttft > 0:  # the role chunk goes out before the TTFT wait
                await resp.write(bytes(buf))
                buf.clear()
            await self.sleep_ttft(plan)
        last = count - 1
        if reply.calls:
            chunks = writer.tool_calls(reply.calls, reply.finish_reason)
        else:
            on_last = reply.finish_reason if reply.finish_reason != "stop" else None
            chunks = writer.tokens(reply.tokens, on_last, call.logprobs)
        start = deadline = self.clock.now()
        timed = plan.delays
        for i, chunk in enumerate(chunks):
            if i and timed:
                delay = self.next_itl(last - i + 1)
                if delay is None:
                    timed = False
                elif delay > 0:
                    if buf:
                        await resp.write(bytes(buf))
                        buf.clear()
                    deadline += delay
                    await self.clock.sleep_until(deadline)
            buf += chunk
        if reply.finish_reason == "stop":
            buf += writer.token("", "stop")
        await resp.write(bytes(buf))
        if last and plan.delays:
            self.metrics.observe_decode_time(self.clock.now() - start)

    def record_success(self, work: Work, reply: Reply) -> None:
        now = self.clock.now()
        self.metrics.finish(
            now - work.admitted_at,
            now - work.started_at,
            len(work.prompt_ids),
            reply.completion_tokens,
            work.max_tokens,
            reply.finish_reason,
        )


def _pod_headers(cfg: SimConfig, port: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    if cfg.pod_name:
        headers["x-inference-pod"] = cfg.pod_name
        headers["x-inference-port"] = str(port)
    if cfg.pod_namespace:
        headers["x-inference-namespace"] = cfg.pod_namespace
    return headers


def _reply_ids(reply: Reply) -> list[int]:
    """Token ids of a reply's generated tokens (its text, else its tool calls' tokens), as
    the simple tokenizer numbers them: the token ids of its generated KV blocks' events."""
    return token_ids(reply.tokens or [t for call in reply.calls for t in call.tokens])
