"""What the servicer keeps for one ext_proc stream, one class per job.

- `RequestIntake` gathers the request as Envoy sends it: headers, the body in
  pieces, the subset hint, and the complete body while flow control holds it.
- `ResponseTally` reads the response as it passes: its size, and its token usage
  from the JSON body or the SSE stream (reported once).
- `Ledger` records what the metrics and the response hooks were told, so that the
  end of the stream (normal, cancelled or after an error) tells them the rest
  exactly once.
- `StreamState` ties them to the parsed request and the scheduling result.

No I/O: the servicer (`servicer.py`) reads and writes the gRPC stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyllmd.epp.requests import REQUEST_ID_HEADER, ParsedRequest, SseUsage, Usage, json_usage
from pyllmd.epp.scheduling.types import LLMRequest, SchedulingResult


@dataclass(slots=True)
class RequestIntake:
    """The request half of the stream until its body is complete."""

    headers: dict[str, str] = field(default_factory=dict)
    generated_id: str | None = None  # x-request-id made up when the client sent none
    body: bytearray = field(default_factory=bytearray)
    done: bool = False  # the body is complete (or there is none)
    subset: list[str] | None = None  # the subset hint of the metadata context
    held: tuple[bytes, bool] | None = None  # body and EoS while flow control holds the request

    def take_body(self) -> bytes:
        """The complete body, which the intake then no longer keeps."""
        self.done = True
        raw = bytes(self.body)
        self.body = bytearray()
        return raw

    def request_id(self) -> str:
        """The client's `x-request-id`, else the generated one."""
        for key, value in self.headers.items():
            if key.lower() == REQUEST_ID_HEADER:
                return value
        return self.generated_id or ""


@dataclass(slots=True)
class ResponseTally:
    """The response half: its size and token usage, read as the pieces pass."""

    streaming: bool = False  # text/event-stream
    size: int = 0
    usage: Usage | None = None
    buffer: bytearray = field(default_factory=bytearray)  # a JSON body until its end
    sse: SseUsage = field(default_factory=SseUsage)

    def add(self, chunk: bytes, end_of_stream: bool) -> tuple[Usage | None, bytes | None]:
        """Count one piece: the usage now known for the first time (else None) and,
        for a JSON body, the whole body once it ended (else None)."""
        self.size += len(chunk)
        if self.streaming:
            self.sse.feed(chunk)
            if end_of_stream:
                self.sse.finish()
            known = self.sse.usage if self.sse.done or end_of_stream else None
            return self._first(known), None
        self.buffer += chunk
        if not end_of_stream:
            return None, None
        body = bytes(self.buffer)
        self.buffer = bytearray()
        usage, _ = json_usage(body)
        return self._first(usage), body

    def _first(self, usage: Usage | None) -> Usage | None:
        if usage is None or self.usage is not None:
            return None
        self.usage = usage
        return usage


@dataclass(slots=True)
class Ledger:
    """What the metrics and hooks were told about the stream."""

    received_at: float
    error_code: str | None = None  # counted as a request error when the stream ends
    running: bool = False  # counted in the running-requests gauge
    completed: bool = False  # response metrics and `response_complete` done


@dataclass(slots=True)
class StreamState:
    """One ext_proc stream: the request, what scheduling decided, the response."""

    ledger: Ledger
    intake: RequestIntake = field(default_factory=RequestIntake)
    parsed: ParsedRequest | None = None
    request: LLMRequest | None = None
    result: SchedulingResult | None = None
    response: ResponseTally = field(default_factory=ResponseTally)

    @property
    def models(self) -> tuple[str, str]:
        """(incoming model, target model) once the body was parsed, else empty."""
        p = self.parsed
        return (p.incoming_model, p.target_model) if p is not None else ("", "")
