"""The ext_proc servicer: one gRPC stream per HTTP request, answered as spec §2.3 says.

Envoy runs the filter in FULL_DUPLEX_STREAMED mode, so the request-headers
answer is held until the whole body arrived; then the EPP parses, validates,
admits and schedules, and sends the header mutation (destination, fresh
Content-Length, re-emitted client headers), the `envoy.lb` dynamic metadata
and the body back as streamed pieces. Responses are passed through while their
token usage is read.
With flow control on (`flow_control`), a parsed request first waits there:
the stream simply gets no answer until it is dispatched or refused.

The scheduler, the endpoint source, admission and metrics are the small
Protocols of `contracts.py`, so this shell does not depend on how they are built.
What it keeps per stream is `stream.py`'s `StreamState`.

Deviations from upstream (spec §14): the subset hint honours a port when one is
given; response errors are detected from `:status` as well as `status`; an
unchanged request body and every response body are forwarded byte for byte;
response pseudo-headers (`:status`) are not re-emitted in the header mutation.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from pyllmd.core.clock import Clock, RealClock
from pyllmd.epp.extproc import wire
from pyllmd.epp.extproc.contracts import (
    Admission,
    EndpointSource,
    FlowControl,
    NullMetrics,
    RequestMetrics,
    RequestScheduler,
    ResponseObserver,
)
from pyllmd.epp.extproc.health import NO_REUSEPORT
from pyllmd.epp.extproc.stream import Ledger, StreamState
from pyllmd.epp.extproc.tls import CertReloader, server_credentials
from pyllmd.epp.requests import (
    DESTINATION_HEADER,
    INTERNAL,
    OBJECTIVE_HEADER,
    REQUEST_ID_HEADER,
    RESOURCE_EXHAUSTED,
    SERVICE_UNAVAILABLE,
    EppError,
    ParsedRequest,
    body_chunks,
    forwarded_body,
    forwarded_headers,
    parse_request,
    scheduling_request,
)
from pyllmd.epp.scheduling.types import Endpoint

log = logging.getLogger(__name__)

MODEL_SERVER_ERROR = "ModelServerError"
NO_CANDIDATES = "failed to find candidate pods for serving the request"


def subset_filter(endpoints: Sequence[Endpoint], hint: Sequence[str]) -> list[Endpoint]:
    """Endpoints named by a subset hint: `ip` keeps every port of the pod, `ip:port` one port."""
    wanted: set[tuple[str, int | None]] = set()
    for entry in hint:
        if entry.startswith("["):  # [v6]:port or [v6]
            host, _, rest = entry[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        elif entry.count(":") == 1:
            host, port = entry.split(":")
        else:
            host, port = entry, ""
        wanted.add((host, int(port) if port.isascii() and port.isdigit() else None))
    return [e for e in endpoints if (e.address, e.port) in wanted or (e.address, None) in wanted]


class ExtProcServicer:
    """`envoy.service.ext_proc.v3.ExternalProcessor` (registered by `serve_epp`)."""

    def __init__(
        self,
        scheduler: RequestScheduler,
        endpoints: EndpointSource,
        *,
        admission: Admission | None = None,
        flow_control: FlowControl | None = None,
        metrics: RequestMetrics | None = None,
        observer: ResponseObserver | None = None,
        model_rewrite: Callable[[str], str] | None = None,
        objective_priority: Callable[[str], int | None] | None = None,
        disable_subset_filter: bool = False,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.endpoints = endpoints
        self.admission = admission
        self.flow_control = flow_control
        self.metrics: RequestMetrics = metrics or NullMetrics()
        self.observer = observer
        self.model_rewrite = model_rewrite
        self.objective_priority = objective_priority
        self.disable_subset_filter = disable_subset_filter
        self.clock: Clock = clock or RealClock()
        self.rng = rng or random.Random()

    async def Process(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        """Handle one HTTP request's messages in order; end after an immediate response."""
        stream = StreamState(Ledger(received_at=self.clock.now()))
        try:
            async for message in request_iterator:
                try:
                    replies = self._handle(stream, message)
                    if stream.intake.held is not None:  # flow control: no answer until dispatched
                        replies = [*(await self._release(stream)), *replies]
                except EppError as err:
                    stream.ledger.error_code = err.code
                    log.debug("immediate response %d: %s", err.status, err)
                    yield wire.immediate_response(err)
                    return
                except Exception as err:
                    log.exception("ext_proc stream failed")
                    await context.abort(grpc.StatusCode.UNKNOWN, f"failed to handle request: {err}")
                for reply in replies:
                    yield reply
        finally:
            self._finish(stream)

    def _handle(self, stream: StreamState, message: Any) -> list[Any]:
        kind = message.WhichOneof("request")
        if message.HasField("metadata_context"):
            hint = wire.subset_hint(message)
            if hint is not None:
                stream.intake.subset = hint
        if kind == "request_headers":
            return self._request_headers(stream, message.request_headers)
        if kind == "request_body":
            stream.intake.body += message.request_body.body
            if message.request_body.end_of_stream:
                return self._request_complete(stream, end_of_stream=True)
            return []
        if kind == "request_trailers":
            replies = [] if stream.intake.done else self._request_complete(stream, False)
            return [*replies, wire.request_trailers_response()]
        if kind == "response_headers":
            return self._response_headers(stream, message.response_headers)
        if kind == "response_body":
            body = message.response_body
            return self._response_body(stream, body.body, body.end_of_stream)
        if kind == "response_trailers":
            replies = [] if stream.ledger.completed else self._response_body(stream, b"", True)
            return [*replies, wire.response_trailers_response()]
        return []

    def _request_headers(self, stream: StreamState, msg: Any) -> list[Any]:
        intake = stream.intake
        incoming = wire.header_map(msg.headers)
        if not any(k.lower() == REQUEST_ID_HEADER for k in incoming):
            intake.generated_id = str(uuid.uuid4())
        if not msg.end_of_stream:
            intake.headers = incoming
            if intake.generated_id is not None:
                intake.headers[REQUEST_ID_HEADER] = intake.generated_id
            return []
        intake.done = True  # no body: random endpoint, no scheduling
        endpoints = self.endpoints()
        if not endpoints:
            raise EppError(INTERNAL, "no pods available in datastore")
        destination = self.rng.choice(list(endpoints)).hostport
        headers = [(DESTINATION_HEADER, destination)]
        if intake.generated_id is not None:
            headers.append((REQUEST_ID_HEADER, intake.generated_id))
        return [wire.request_headers_response(headers, destination)]

    def _request_complete(self, stream: StreamState, end_of_stream: bool) -> list[Any]:
        intake = stream.intake
        raw = intake.take_body()
        parsed = parse_request(raw, intake.headers)
        if self.model_rewrite is not None:
            parsed = _with_target(parsed, self.model_rewrite(parsed.target_model))
        stream.parsed = parsed
        request = scheduling_request(
            parsed, intake.headers, intake.request_id(), self._priority(intake.headers)
        )
        stream.request = request
        if self.flow_control is not None:
            intake.held = (raw, end_of_stream)
            return []
        return self._route(stream, raw, end_of_stream)

    def _candidates(self, stream: StreamState) -> list[Endpoint]:
        candidates = list(self.endpoints())
        subset = stream.intake.subset
        if subset is not None and not self.disable_subset_filter:
            candidates = subset_filter(candidates, subset)
        return candidates

    async def _release(self, stream: StreamState) -> list[Any]:
        """Wait in flow control, then schedule; a vanished client counts as 503."""
        held = stream.intake.held
        assert held is not None and stream.request is not None and self.flow_control
        raw, end_of_stream = held
        stream.intake.held = None
        try:
            await self.flow_control.enqueue_and_wait(
                stream.request, len(raw), lambda: self._candidates(stream)
            )
        except asyncio.CancelledError:
            stream.ledger.error_code = SERVICE_UNAVAILABLE  # client disconnected while queued
            raise
        return self._route(stream, raw, end_of_stream)

    def _route(self, stream: StreamState, raw: bytes, end_of_stream: bool) -> list[Any]:
        """Admission, candidates and scheduling; the header and body replies."""
        request, parsed = stream.request, stream.parsed
        assert request is not None and parsed is not None
        candidates = self._candidates(stream)
        if self.admission is not None:
            rejection = self.admission.admit(request, candidates)
            if rejection is not None:
                raise EppError(RESOURCE_EXHAUSTED, rejection)
        if not candidates:
            raise EppError(SERVICE_UNAVAILABLE, NO_CANDIDATES)
        try:
            result = self.scheduler.schedule(request, candidates)
            targets = result.targets
        except Exception as err:  # noqa: BLE001 - any scheduling failure is a 429
            raise EppError(RESOURCE_EXHAUSTED, f"failed to find target pod: {err}") from err
        if not targets:
            raise EppError(RESOURCE_EXHAUSTED, "failed to find target pod: no endpoint chosen")
        stream.result = result
        stream.intake.headers.update(result.headers)
        out = forwarded_body(raw, parsed)
        destination = ",".join(t.hostport for t in targets)
        headers = [(DESTINATION_HEADER, destination)]
        if out:
            headers.append(("Content-Length", str(len(out))))
        headers += forwarded_headers(stream.intake.headers).items()
        replies = [wire.request_headers_response(headers, destination)]
        replies += [
            wire.request_body_response(chunk, eos and end_of_stream)
            for chunk, eos in body_chunks(out)
        ]
        model, target = stream.models
        self.metrics.request_received(model, target, len(raw))
        self.metrics.running_changed(model, 1)
        stream.ledger.running = True
        return replies

    def _priority(self, headers: dict[str, str]) -> int:
        name = headers.get(OBJECTIVE_HEADER)
        if not name or self.objective_priority is None:
            return 0
        return self.objective_priority(name) or 0

    def _response_headers(self, stream: StreamState, msg: Any) -> list[Any]:
        headers = wire.header_map(msg.headers)
        status = headers.get(":status", headers.get("status", "200"))
        if status != "200":
            stream.ledger.error_code = MODEL_SERVER_ERROR
        stream.response.streaming = "text/event-stream" in headers.get("content-type", "")
        if self.observer is not None and stream.request is not None and stream.result is not None:
            # may add e.g. x-session-token
            self.observer.response_received(stream.request, stream.result, headers)
        out = [("x-went-into-resp-headers", "true")]
        out += [(k, v) for k, v in forwarded_headers(headers).items() if not k.startswith(":")]
        if msg.end_of_stream:
            self._complete(stream)
        return [wire.response_headers_response(out)]

    def _response_body(self, stream: StreamState, chunk: bytes, end_of_stream: bool) -> list[Any]:
        usage, whole = stream.response.add(chunk, end_of_stream)
        if usage is not None:
            self.metrics.tokens(*stream.models, usage)
        if end_of_stream:
            self._complete(stream)
        if stream.response.streaming:
            return [wire.response_body_response(chunk, end_of_stream)]
        if whole is None:
            return []
        return [wire.response_body_response(c, eos) for c, eos in body_chunks(whole)]

    def _complete(self, stream: StreamState) -> None:
        ledger = stream.ledger
        if ledger.completed:
            return
        ledger.completed = True
        model, target = stream.models
        latency = self.clock.now() - ledger.received_at
        response = stream.response
        self.metrics.response_done(model, target, response.size, latency, response.usage)
        self._notify(stream)

    def _notify(self, stream: StreamState) -> None:
        if self.observer is not None and stream.request is not None and stream.result is not None:
            try:
                self.observer.response_complete(stream.request, stream.result)
            except Exception:  # noqa: BLE001 - cleanup hooks must not break the stream
                log.exception("response_complete hook failed")

    def _finish(self, stream: StreamState) -> None:
        """Stream end (normal, cancelled or after an error): cleanup and error metrics."""
        ledger = stream.ledger
        model, target = stream.models
        if not ledger.completed and stream.result is not None:
            ledger.completed = True
            self._notify(stream)
        if ledger.error_code is not None:
            self.metrics.request_error(model, target, ledger.error_code)
        if ledger.running:
            ledger.running = False
            self.metrics.running_changed(model, -1)


def _with_target(parsed: ParsedRequest, target: str) -> ParsedRequest:
    return ParsedRequest(parsed.body, parsed.incoming_model, target, parsed.api)


_background: set[asyncio.Task[None]] = set()


def _spawn(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def _stop_with(server: grpc.aio.Server, task: asyncio.Task[None]) -> None:
    try:
        await server.wait_for_termination()
    finally:
        task.cancel()


async def serve_epp(
    servicer: ExtProcServicer,
    port: int,
    *,
    host: str = "0.0.0.0",
    secure: bool = True,
    cert_path: Path | None = None,
    cert_reload: bool = False,
    health: Any | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Start the ext_proc gRPC server (TLS unless `secure` is off); returns it and its port.

    `health` (a `grpc.health.v1` servicer) is registered on the same port when given,
    as `--health-checking` does upstream. `cert_reload` (only with `cert_path`)
    polls the files on the servicer's clock until the server stops.
    """
    from grpc_health.v1 import health_pb2_grpc

    reloader = CertReloader(cert_path) if secure and cert_reload and cert_path else None
    server = grpc.aio.server(options=NO_REUSEPORT)
    pb_grpc.add_ExternalProcessorServicer_to_server(servicer, server)
    if health is not None:
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
    address = f"{host}:{port}"
    if not secure:
        bound = server.add_insecure_port(address)
    else:
        if reloader is not None:
            credentials = reloader.credentials()
        else:  # RSA 4096 generation takes about a second: keep the loop free meanwhile
            credentials = await asyncio.to_thread(server_credentials, cert_path)
        bound = server.add_secure_port(address, credentials)
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    if reloader is not None:
        task = _spawn(reloader.run(servicer.clock), "ext_proc cert reload")
        _spawn(_stop_with(server, task), "ext_proc cert reload stop")
    return server, bound
