"""The batch engine's side of a completion (`--latency-calculator batch`): submitting to the
rank's step loop, following the tokens it delivers, streaming them at step ends, and the
latency histograms from the engine's record. `serving.CompletionService` calls these for its
HTTP and gRPC paths; they hold no state of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from pyllmd.core.errors import LlmdError
from pyllmd.sim.api.responses import DONE, ChunkWriter, Usage
from pyllmd.sim.engine import Work
from pyllmd.sim.engine.admission import QUEUE_FULL_MESSAGE
from pyllmd.sim.server.batchloop import QUEUE_FULL, BatchLoop, Ticket
from pyllmd.sim.server.metrics import SimMetrics

if TYPE_CHECKING:
    from pyllmd.sim.server.serving import Reply, _Call


def submit(
    batch: BatchLoop,
    work: Work,
    tokens: int,
    transfer: float | None = None,
    output_ids: Sequence[int] = (),
) -> Ticket:
    """Hand `work` to the step loop for `tokens` output tokens; LlmdError 429 when the bounded
    waiting queue is full, 400 for the engine's other refusals (e.g. too long)."""
    try:
        return batch.submit(
            work.prompt_ids, tokens, work.admitted_at, transfer, output_ids, work.lora
        )
    except ValueError as e:
        if str(e) == QUEUE_FULL:  # --max-waiting-queue-length given
            raise LlmdError(429, QUEUE_FULL_MESSAGE) from None
        raise LlmdError(400, str(e)) from None


async def delivered(ticket: Ticket, n: int) -> AsyncIterator[int]:
    """The count of tokens delivered after each step that delivered some, up to `n`."""
    sent = 0
    while sent < n and not ticket.done:
        await ticket.wait(sent)
        have = min(len(ticket.times), n)
        if have > sent:
            sent = have
            yield have


def observe(metrics: SimMetrics, batch: BatchLoop, work: Work, ticket: Ticket) -> None:
    """The latency histograms from the engine's record of the request."""
    times = ticket.times
    if not times:
        return
    req = ticket.req
    admitted = batch.t0 + (req.admitted if req.admitted is not None else req.arrival)
    work.started_at = admitted
    metrics.observe_queue_time(max(0.0, admitted - work.admitted_at))
    metrics.observe_ttft(times[0] - work.admitted_at)
    metrics.observe_prefill_time(max(0.0, times[0] - admitted))
    for a, b in zip(times, times[1:], strict=False):
        metrics.observe_itl(b - a)
    if len(times) > 1:
        metrics.observe_decode_time(times[-1] - times[0])


async def stream_tokens(
    resp: web.StreamResponse,
    writer: ChunkWriter,
    call: _Call,
    reply: Reply,
    ticket: Ticket,
) -> bool:
    """Role chunk and each token's chunk at the end of its step; False when the engine failed
    (the caller ends the stream with the error)."""
    if call.chat:
        await resp.write(writer.role())
    if reply.calls:
        chunks = list(writer.tool_calls(reply.calls, reply.finish_reason))
    else:
        on_last = reply.finish_reason if reply.finish_reason != "stop" else None
        chunks = list(writer.tokens(reply.tokens, on_last, call.logprobs))
    n = reply.completion_tokens
    sent = 0
    async for have in delivered(ticket, n):
        # token i of the engine carries chunk i; extra chunks go with the last token
        upto = len(chunks) if have >= n else min(have, len(chunks))
        lo = min(sent, len(chunks))
        if upto > lo:
            await resp.write(b"".join(chunks[lo:upto]))
        sent = have
    return not ticket.failed


async def finish_stream(
    resp: web.StreamResponse, writer: ChunkWriter, call: _Call, reply: Reply, usage: Usage
) -> None:
    """The stop chunk (a reply that stopped), the usage chunk (when asked) and `[DONE]`."""
    tail = bytearray()
    if reply.finish_reason == "stop":
        tail += writer.token("", "stop")
    if call.include_usage:
        tail += writer.usage(usage)
    await resp.write(bytes(tail) + DONE)
