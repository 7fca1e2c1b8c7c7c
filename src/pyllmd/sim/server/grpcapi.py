"""The vLLM gRPC engine API (`vllm.grpc.engine.VllmEngine`) of one rank (spec §11.1).

`Generate` is a text completion on `--model` through the same queue, KV cache,
latency model and metrics as `/v1/completions` (`CompletionService.admitted`).
Beyond upstream, which leaves them unimplemented: `HealthCheck`,
`GetServerInfo` and `Abort` answer (an aborted request ends with
`finish_reason: "abort"`, as vLLM), `GetModelInfo` fills the context length, a
`cache_threshold` reply is immediate also when streamed, and error messages
carry no Go formatting artefact. `Embed` is UNIMPLEMENTED (no embeddings).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection

from pyllmd.core.clock import Clock
from pyllmd.core.errors import LlmdError
from pyllmd.sim.engine import Plan, Work
from pyllmd.sim.engine.failures import pick_failure
from pyllmd.sim.grpcgen import vllm_engine_pb2 as pb
from pyllmd.sim.grpcgen import vllm_engine_pb2_grpc as pb_grpc
from pyllmd.sim.server.serving import CompletionService, Reply

Context = grpc.aio.ServicerContext[Any, Any]

__all__ = ["SERVICE_NAME", "VllmEngineServicer", "grpc_code", "serve_grpc"]

SERVICE_NAME = "vllm.grpc.engine.VllmEngine"
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def grpc_code(status: int) -> grpc.StatusCode:
    """The gRPC code upstream maps an HTTP status to (UNKNOWN otherwise)."""
    return _CODES.get(status, grpc.StatusCode.UNKNOWN)


class VllmEngineServicer(pb_grpc.VllmEngineServicer):
    """One rank's gRPC face over its `CompletionService`."""

    def __init__(self, service: CompletionService, clock: Clock) -> None:
        self.service = service
        self.clock = clock
        self.started = clock.now()
        self.last_receive = 0.0
        self._running: dict[str, set[asyncio.Task[None]]] = {}

    async def Generate(  # noqa: N802 - gRPC method name
        self, request: Any, context: Context
    ) -> AsyncIterator[Any]:
        self.last_receive = self.clock.wall()
        try:
            work, ids = self._work(request)
        except LlmdError as e:
            await context.abort(grpc_code(e.status), e.message)
            return
        out: asyncio.Queue[Any] = asyncio.Queue()
        producer = asyncio.create_task(self._produce(work, ids, bool(request.stream), out))
        self._running.setdefault(work.request_id, set()).add(producer)
        try:
            while True:
                item = await out.get()
                if isinstance(item, LlmdError):
                    await context.abort(grpc_code(item.status), item.message)
                    return
                if item is None:
                    if producer.cancelled():  # aborted: vLLM ends the stream with "abort"
                        complete = _complete(work, [], "abort", 0, 0)
                        yield pb.GenerateResponse(complete=complete)
                    return
                yield item
        finally:
            tasks = self._running.get(work.request_id, set())
            tasks.discard(producer)
            if not tasks:
                self._running.pop(work.request_id, None)
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer

    def _work(self, request: Any) -> tuple[Work, dict[str, int]]:
        """The Work of a Generate request (checks as `/v1/completions`, model = `--model`)."""
        svc = self.service
        cfg = svc.cfg
        failure = pick_failure(svc.rng, cfg.failure_injection_rate, cfg.failure_types, cfg.model)
        if failure is not None:
            raise failure
        lora = svc.engine.resolve_model(cfg.model)
        if request.WhichOneof("input") == "tokenized":
            ids = list(request.tokenized.input_ids)
            strs = [str(i) for i in ids]
        else:
            ids, strs = svc.tokenizer.encode(request.text)
        params = request.sampling_params
        max_tokens = params.max_tokens if params.HasField("max_tokens") else None
        if max_tokens is not None and max_tokens < 1:
            raise LlmdError(400, "Max completion tokens and max tokens should be positive")
        work = Work(
            request_id=request.request_id,
            prompt_ids=ids,
            prompt_tokens=strs,
            lora=lora,
            max_tokens=max_tokens,
        )
        svc.engine.check_context(work)
        return work, dict(zip(strs, ids, strict=True))

    async def _produce(
        self, work: Work, known: dict[str, int], stream: bool, out: asyncio.Queue[Any]
    ) -> None:
        """Run the request and put its messages on `out`, then None (or an LlmdError)."""
        if self.service.batch is not None:
            await self._produce_batch(work, known, stream, out)
            return
        try:
            async with self.service.admitted(work) as plan:
                reply = Reply.of(plan, ())
                ids = [known.get(t) or self._token_id(t) for t in reply.tokens]
                if stream:
                    await self._stream(work, plan, reply, ids, out)
                else:
                    await self.service.wait_whole(plan, reply.completion_tokens)
                    complete = _complete(
                        work, ids, reply.finish_reason, len(ids), plan.cached_tokens
                    )
                    out.put_nowait(pb.GenerateResponse(complete=complete))
                self.service.record_success(work, reply)
        except LlmdError as e:
            out.put_nowait(e)
            return
        finally:
            out.put_nowait(None)

    async def _stream(
        self, work: Work, plan: Plan, reply: Reply, ids: list[int], out: asyncio.Queue[Any]
    ) -> None:
        """One chunk per token after TTFT with ITL gaps, then the closing `complete`."""
        prompt = len(work.prompt_ids)
        if plan.delays and ids:
            await self.service.sleep_ttft(plan)
        deadline = self.clock.now()
        timed = plan.delays
        for i, token in enumerate(ids):
            if i and timed:
                delay = self.service.next_itl(len(ids) - i)
                if delay is None:
                    timed = False
                elif delay > 0:
                    deadline += delay
                    await self.clock.sleep_until(deadline)
            chunk = pb.GenerateStreamChunk(
                token_ids=[token],
                prompt_tokens=prompt,
                completion_tokens=1,
                cached_tokens=plan.cached_tokens,
            )
            out.put_nowait(pb.GenerateResponse(chunk=chunk))
        complete = _complete(work, [], reply.finish_reason, 0, plan.cached_tokens)
        out.put_nowait(pb.GenerateResponse(complete=complete))

    async def _produce_batch(
        self, work: Work, known: dict[str, int], stream: bool, out: asyncio.Queue[Any]
    ) -> None:
        """`--latency-calculator batch`: tokens come at the ends of the rank's engine steps."""
        svc = self.service
        try:
            work.admitted_at = self.clock.now()
            plan = svc.engine.start(work, work.admitted_at)  # the text
            reply = Reply.of(plan, ())
            ids = [known.get(t) or self._token_id(t) for t in reply.tokens]
            prompt = len(work.prompt_ids)
            cached = 0
            if ids and plan.delays:
                sent = 0
                async for have, cached in svc.batch_deliveries(work, len(ids), ids):
                    if stream:
                        for token in ids[sent:have]:
                            chunk = pb.GenerateStreamChunk(
                                token_ids=[token],
                                prompt_tokens=prompt,
                                completion_tokens=1,
                                cached_tokens=cached,
                            )
                            out.put_nowait(pb.GenerateResponse(chunk=chunk))
                    sent = have
            if stream:
                complete = _complete(work, [], reply.finish_reason, 0, cached)
            else:
                complete = _complete(work, ids, reply.finish_reason, len(ids), cached)
            out.put_nowait(pb.GenerateResponse(complete=complete))
            svc.record_success(work, reply)
        except LlmdError as e:
            out.put_nowait(e)
            return
        finally:
            if work.in_kv_cache and svc.engine.kv is not None:
                svc.engine.kv.finish(work.request_id, self.clock.now())
                work.in_kv_cache = False
            out.put_nowait(None)

    def _token_id(self, token: str) -> int:
        ids, _ = self.service.tokenizer.encode(token)
        return ids[0] if ids else 0

    async def Abort(self, request: Any, context: Any) -> Any:  # noqa: N802
        for request_id in request.request_ids:
            for task in self._running.get(request_id, set()):
                task.cancel()
        return pb.AbortResponse()

    async def HealthCheck(self, request: Any, context: Any) -> Any:  # noqa: N802
        sleeping = self.service.engine.sleep_state.is_sleeping
        return pb.HealthCheckResponse(
            healthy=True, message="sleeping" if sleeping else "Health check passed"
        )

    async def GetModelInfo(self, request: Any, context: Any) -> Any:  # noqa: N802
        cfg = self.service.cfg
        return pb.GetModelInfoResponse(
            model_path=cfg.model, is_generation=True, max_context_length=cfg.max_model_len
        )

    async def GetServerInfo(self, request: Any, context: Any) -> Any:  # noqa: N802
        engine = self.service.engine
        return pb.GetServerInfoResponse(
            active_requests=engine.num_running + engine.num_waiting,
            is_paused=engine.sleep_state.is_sleeping,
            last_receive_timestamp=self.last_receive,
            uptime_seconds=self.clock.now() - self.started,
            server_type="vllm-grpc",
        )

    async def Embed(self, request: Any, context: Context) -> Any:  # noqa: N802
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "embeddings are not supported")


def _complete(work: Work, ids: list[int], finish: str, completion: int, cached: int) -> Any:
    return pb.GenerateComplete(
        output_ids=ids,
        finish_reason=finish,
        prompt_tokens=len(work.prompt_ids),
        completion_tokens=completion,
        cached_tokens=cached,
    )


async def serve_grpc(service: CompletionService, clock: Clock) -> tuple[grpc.aio.Server, int]:
    """A plaintext gRPC server on a private loopback port (the port mux splices to it)."""
    server = grpc.aio.server()
    add = pb_grpc.add_VllmEngineServicer_to_server
    add(VllmEngineServicer(service, clock), server)  # type: ignore[no-untyped-call]
    reflection.enable_server_reflection((SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port
