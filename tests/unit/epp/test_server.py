"""The ext_proc servicer driven message by message through a fake stream (spec §2.3-§2.5)."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from google.protobuf import struct_pb2

from pyllmd.core.clock import VirtualClock
from pyllmd.core.promtext import parse_samples
from pyllmd.epp.extproc import wire
from pyllmd.epp.extproc.adapters import MetricsRecorder
from pyllmd.epp.extproc.contracts import StaticEndpoints
from pyllmd.epp.extproc.servicer import ExtProcServicer
from pyllmd.epp.metrics import EppMetrics
from pyllmd.epp.requests import Usage
from pyllmd.epp.scheduling.types import Endpoint, LLMRequest, ProfileResult, SchedulingResult

E1 = Endpoint("pod1-rank-0", "ns", "pod1", "10.0.0.1", 8000)
E2 = Endpoint("pod2-rank-0", "ns", "pod2", "10.0.0.2", 8000)
E2B = Endpoint("pod2-rank-1", "ns", "pod2", "10.0.0.2", 8001)
COMPLETION = b'{"model":"m","prompt":"hi"}'


class FirstScheduler:
    """Chooses the first candidate(s); remembers what it was offered."""

    def __init__(self, n: int = 1) -> None:
        self.n = n
        self.offered: list[list[Endpoint]] = []
        self.requests: list[LLMRequest] = []

    def schedule(self, request: LLMRequest, candidates: Sequence[Endpoint]) -> SchedulingResult:
        self.offered.append(list(candidates))
        self.requests.append(request)
        return SchedulingResult(
            "default",
            {"default": ProfileResult(tuple(candidates[: self.n]))},
            headers={"x-prefiller-host-port": "10.9.9.9:8000"},
        )


class FailingScheduler:
    def schedule(self, request: LLMRequest, candidates: Sequence[Endpoint]) -> SchedulingResult:
        raise RuntimeError("no candidate pods available after filtering")


class Metrics:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.running = 0
        self.done_usage: list[Usage | None] = []

    def request_received(self, model: str, target: str, size: int) -> None:
        self.calls.append(("request", model, target, size))

    def request_error(self, model: str, target: str, code: str) -> None:
        self.calls.append(("error", model, target, code))

    def running_changed(self, model: str, delta: int) -> None:
        self.running += delta

    def response_done(
        self, model: str, target: str, size: int, latency: float, usage: Usage | None = None
    ) -> None:
        self.calls.append(("response", model, target, size))
        self.done_usage.append(usage)

    def tokens(self, model: str, target: str, usage: Usage) -> None:
        self.calls.append(("tokens", model, target, usage))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind]


class Observer:
    def __init__(self) -> None:
        self.completed: list[str] = []

    def response_received(
        self, request: LLMRequest, result: SchedulingResult, headers: dict[str, str]
    ) -> None:
        pass

    def response_complete(self, request: LLMRequest, result: SchedulingResult) -> None:
        self.completed.append(request.request_id)


class FakeContext:
    async def abort(self, code: Any, details: str) -> None:
        raise AbortError(code, details)


class AbortError(Exception):
    pass


def headers_msg(
    headers: dict[str, str] | None = None,
    *,
    eos: bool = False,
    path: str = "/v1/completions",
    subset: list[Any] | None = None,
) -> Any:
    hs = {":path": path, ":method": "POST", "x-request-id": "rid-1", **(headers or {})}
    msg = pb.ProcessingRequest(
        request_headers=pb.HttpHeaders(
            headers=base_pb2.HeaderMap(
                headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in hs.items()]
            ),
            end_of_stream=eos,
        )
    )
    if subset is not None:
        hint = struct_pb2.Struct()
        hint.update({wire.SUBSET_KEY: subset})
        msg.metadata_context.filter_metadata[wire.SUBSET_NAMESPACE].CopyFrom(hint)
    return msg


def drop_request_id(msg: Any) -> Any:
    kept = [h for h in msg.request_headers.headers.headers if h.key != "x-request-id"]
    del msg.request_headers.headers.headers[:]
    msg.request_headers.headers.headers.extend(kept)
    return msg


def body_msg(data: bytes, eos: bool = True) -> Any:
    return pb.ProcessingRequest(request_body=pb.HttpBody(body=data, end_of_stream=eos))


def resp_headers_msg(headers: dict[str, str], eos: bool = False) -> Any:
    return pb.ProcessingRequest(
        response_headers=pb.HttpHeaders(
            headers=base_pb2.HeaderMap(
                headers=[base_pb2.HeaderValue(key=k, value=v) for k, v in headers.items()]
            ),
            end_of_stream=eos,
        )
    )


def resp_body_msg(data: bytes, eos: bool) -> Any:
    return pb.ProcessingRequest(response_body=pb.HttpBody(body=data, end_of_stream=eos))


async def run(servicer: ExtProcServicer, messages: Sequence[Any]) -> list[Any]:
    async def source() -> AsyncIterator[Any]:
        for m in messages:
            yield m

    return [r async for r in servicer.Process(source(), FakeContext())]


def make(
    endpoints: Sequence[Endpoint] = (E1,), scheduler: Any = None, **kw: Any
) -> ExtProcServicer:
    return ExtProcServicer(
        scheduler or FirstScheduler(), StaticEndpoints(endpoints), rng=random.Random(1), **kw
    )


def kinds(replies: list[Any]) -> list[str]:
    return [r.WhichOneof("response") for r in replies]


def immediate(replies: list[Any]) -> tuple[int, bytes]:
    assert kinds(replies)[-1] == "immediate_response"
    ir = replies[-1].immediate_response
    return ir.status.code, ir.body


def streamed(replies: list[Any], phase: str) -> list[tuple[bytes, bool]]:
    out = []
    for r in replies:
        if r.WhichOneof("response") == phase:
            s = getattr(r, phase).response.body_mutation.streamed_response
            out.append((s.body, s.end_of_stream))
    return out


async def test_epp_acc_24_body_request_routed_to_the_endpoint() -> None:
    replies = await run(make(), [headers_msg(), body_msg(COMPLETION)])
    assert kinds(replies) == ["request_headers", "request_body"]
    first = replies[0]
    assert first.request_headers.response.clear_route_cache
    set_headers = wire.headers_of(first, "request_headers")
    assert set_headers["x-gateway-destination-endpoint"] == "10.0.0.1:8000"
    assert set_headers["Content-Length"] == str(len(COMPLETION))
    lb = first.dynamic_metadata.fields["envoy.lb"].struct_value
    assert lb.fields["x-gateway-destination-endpoint"].string_value == "10.0.0.1:8000"
    assert streamed(replies, "request_body") == [(COMPLETION, True)]


async def test_body_chunks_are_accumulated_before_scheduling() -> None:
    scheduler = FirstScheduler()
    msgs = [headers_msg(), body_msg(COMPLETION[:10], eos=False), body_msg(COMPLETION[10:])]
    replies = await run(make(scheduler=scheduler), msgs)
    assert streamed(replies, "request_body") == [(COMPLETION, True)]
    assert scheduler.requests[0].body == {"model": "m", "prompt": "hi"}


async def test_client_and_plugin_headers_are_re_emitted() -> None:
    replies = await run(make(), [headers_msg({"x-custom": "v"}), body_msg(COMPLETION)])
    set_headers = wire.headers_of(replies[0], "request_headers")
    assert set_headers["x-custom"] == "v"
    assert set_headers["x-request-id"] == "rid-1"
    assert set_headers["x-prefiller-host-port"] == "10.9.9.9:8000"


async def test_epp_acc_25_invalid_json_is_400() -> None:
    metrics = Metrics()
    status, body = immediate(await run(make(metrics=metrics), [headers_msg(), body_msg(b"x")]))
    assert status == 400
    assert body.startswith(b"inference gateway: BadRequest - Error unmarshaling request body")
    assert metrics.of("error") == [("error", "", "", "BadRequest")]


async def test_epp_acc_26_missing_model_is_400() -> None:
    replies = await run(make(), [headers_msg(), body_msg(b'{"prompt":"hi"}')])
    assert immediate(replies) == (
        400,
        b"inference gateway: BadRequest - model not found in request body",
    )


async def test_epp_acc_27_empty_chat_messages_is_400() -> None:
    msgs = [headers_msg(path="/v1/chat/completions"), body_msg(b'{"model":"m","messages":[]}')]
    status, body = immediate(await run(make(), msgs))
    assert status == 400
    assert body.endswith(b"invalid chat completions request: must have valid messages field")


CHAT_MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
# Chat fields upstream decodes into typed struct fields, each with a value of the wrong type.
CHAT_TYPE_CASES = [
    ("role", {"messages": [{"role": 7, "content": "hi"}]}),
    ("role", {"messages": [{"role": {"name": "user"}, "content": "hi"}]}),
    ("tools", {"tools": {"type": "function"}}),
    ("tools", {"tools": "search"}),
    ("documents", {"documents": "doc"}),
    ("documents", {"documents": {"title": "t"}}),
    ("chat_template", {"chat_template": ["{{ x }}"]}),
    ("chat_template", {"chat_template": 3}),
    ("return_assistant_tokens_mask", {"return_assistant_tokens_mask": "true"}),
    ("continue_final_message", {"continue_final_message": 1}),
    ("add_generation_prompt", {"add_generation_prompt": "yes"}),
    ("chat_template_kwargs", {"chat_template_kwargs": ["enable_thinking"]}),
    ("chat_template_kwargs", {"chat_template_kwargs": "x"}),
]
CHAT_NULL_CASES = [
    ("role", {"messages": [{"role": None, "content": "hi"}]}),
    *(
        (name, {name: None})
        for name in (
            "tools",
            "documents",
            "chat_template",
            "return_assistant_tokens_mask",
            "continue_final_message",
            "add_generation_prompt",
            "chat_template_kwargs",
        )
    ),
]


def chat_body(fields: dict[str, Any]) -> bytes:
    return orjson.dumps({"model": "m", "messages": CHAT_MESSAGES, **fields})


@pytest.mark.parametrize(
    ("field", "fields"), CHAT_TYPE_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CHAT_TYPE_CASES)]
)
async def test_chat_field_of_the_wrong_type_is_400(field: str, fields: dict[str, Any]) -> None:
    scheduler = FirstScheduler()
    msgs = [headers_msg(path="/v1/chat/completions"), body_msg(chat_body(fields))]
    assert immediate(await run(make(scheduler=scheduler), msgs)) == (
        400,
        b"inference gateway: BadRequest - failed to extract request data: "
        b"inference gateway: BadRequest - "
        b"invalid chat completions request: must have valid messages field",
    )
    assert scheduler.requests == []  # refused before scheduling


@pytest.mark.parametrize(("field", "fields"), CHAT_NULL_CASES, ids=[c[0] for c in CHAT_NULL_CASES])
async def test_chat_field_set_to_null_is_routed(field: str, fields: dict[str, Any]) -> None:
    scheduler = FirstScheduler()
    msgs = [headers_msg(path="/v1/chat/completions"), body_msg(chat_body(fields))]
    replies = await run(make(scheduler=scheduler), msgs)
    assert kinds(replies)[0] == "request_headers"
    headers = wire.headers_of(replies[0], "request_headers")
    assert headers["x-gateway-destination-endpoint"] == "10.0.0.1:8000"
    assert len(scheduler.requests) == 1


async def test_epp_acc_28_missing_prompt_is_400() -> None:
    status, body = immediate(await run(make(), [headers_msg(), body_msg(b'{"model":"m"}')]))
    assert status == 400
    assert b"must have prompt field" in body


async def test_epp_acc_29_no_endpoints_is_503() -> None:
    replies = await run(make(endpoints=()), [headers_msg(), body_msg(COMPLETION)])
    assert immediate(replies) == (
        503,
        b"inference gateway: ServiceUnavailable - "
        b"failed to find candidate pods for serving the request",
    )


async def test_epp_acc_30_bodyless_request_gets_a_random_endpoint() -> None:
    scheduler = FirstScheduler()
    replies = await run(make(scheduler=scheduler), [headers_msg(eos=True, path="/v1/models")])
    assert kinds(replies) == ["request_headers"]
    set_headers = wire.headers_of(replies[0], "request_headers")
    assert set_headers == {"x-gateway-destination-endpoint": "10.0.0.1:8000"}
    assert scheduler.requests == []  # no scheduling cycle
    status, body = immediate(await run(make(endpoints=()), [headers_msg(eos=True)]))
    assert status == 500
    assert body == b"inference gateway: Internal - no pods available in datastore"


async def test_epp_acc_31_request_id_generated_or_preserved() -> None:
    replies = await run(make(), [drop_request_id(headers_msg()), body_msg(COMPLETION)])
    generated = wire.headers_of(replies[0], "request_headers")["x-request-id"]
    assert uuid.UUID(generated).version == 4
    replies = await run(make(), [headers_msg({"x-request-id": "keep-me"}), body_msg(COMPLETION)])
    assert wire.headers_of(replies[0], "request_headers")["x-request-id"] == "keep-me"
    replies = await run(make(), [drop_request_id(headers_msg(eos=True))])
    assert "x-request-id" in wire.headers_of(replies[0], "request_headers")


async def test_epp_acc_32_client_destination_header_is_not_echoed() -> None:
    msgs = [headers_msg({"x-gateway-destination-endpoint": "1.2.3.4:1"}), body_msg(COMPLETION)]
    replies = await run(make(), msgs)
    mutation = replies[0].request_headers.response.header_mutation.set_headers
    values = [h.header.raw_value for h in mutation if h.header.key.lower().startswith("x-gateway")]
    assert values == [b"10.0.0.1:8000"]


async def test_epp_acc_33_model_rewrite_header() -> None:
    metrics = Metrics()
    raw = b'{"model":"m1","prompt":"hi"}'
    msgs = [headers_msg({"x-gateway-model-name-rewrite": "m2"}), body_msg(raw)]
    replies = await run(make(metrics=metrics), msgs)
    body = streamed(replies, "request_body")[0][0]
    assert orjson.loads(body)["model"] == "m2"
    set_headers = wire.headers_of(replies[0], "request_headers")
    assert set_headers["Content-Length"] == str(len(body))
    assert "x-gateway-model-name-rewrite" not in set_headers
    assert metrics.of("request") == [("request", "m1", "m2", len(raw))]


async def test_model_rewrite_hook_and_objective_priority() -> None:
    scheduler = FirstScheduler()
    servicer = make(
        scheduler=scheduler,
        model_rewrite=lambda m: "lora-" + m,
        objective_priority={"critical": 2}.get,
    )
    msgs = [headers_msg({"x-gateway-inference-objective": "critical"}), body_msg(COMPLETION)]
    replies = await run(servicer, msgs)
    assert orjson.loads(streamed(replies, "request_body")[0][0])["model"] == "lora-m"
    assert (scheduler.requests[0].target_model, scheduler.requests[0].priority) == ("lora-m", 2)


@pytest.mark.parametrize(
    ("hint", "disabled", "expected"),
    [
        (None, False, [E1, E2, E2B]),
        (["10.0.0.2:8000"], False, [E2]),  # deviation: the port is honoured
        (["10.0.0.2"], False, [E2, E2B]),
        (["10.0.0.2:8000", 7], False, [E2]),  # non-string entries ignored
        (["10.0.0.2:8000"], True, [E1, E2, E2B]),
    ],
)
async def test_epp_acc_35_subset_hint(
    hint: list[Any] | None, disabled: bool, expected: list[Endpoint]
) -> None:
    scheduler = FirstScheduler()
    servicer = make(endpoints=(E1, E2, E2B), scheduler=scheduler, disable_subset_filter=disabled)
    await run(servicer, [headers_msg(subset=hint), body_msg(COMPLETION)])
    assert scheduler.offered == [expected]


async def test_epp_acc_35_empty_subset_is_503() -> None:
    replies = await run(make(endpoints=(E1, E2)), [headers_msg(subset=[]), body_msg(COMPLETION)])
    assert immediate(replies)[0] == 503


async def test_epp_acc_36_large_body_split_into_chunks() -> None:
    raw = orjson.dumps({"model": "m", "prompt": "x" * 130_000})
    replies = await run(make(), [headers_msg(), body_msg(raw)])
    chunks = streamed(replies, "request_body")
    assert len(chunks) == -(-len(raw) // 62000) == 3
    assert [eos for _, eos in chunks] == [False, False, True]
    assert all(len(c) <= 62000 for c, _ in chunks)
    assert b"".join(c for c, _ in chunks) == raw


async def test_fallback_targets_joined_in_order() -> None:
    replies = await run(
        make(endpoints=(E2, E1), scheduler=FirstScheduler(2)), [headers_msg(), body_msg(COMPLETION)]
    )
    destination = wire.headers_of(replies[0], "request_headers")["x-gateway-destination-endpoint"]
    assert destination == "10.0.0.2:8000,10.0.0.1:8000"


async def test_scheduling_failure_is_429() -> None:
    replies = await run(make(scheduler=FailingScheduler()), [headers_msg(), body_msg(COMPLETION)])
    assert immediate(replies) == (
        429,
        b"inference gateway: InferencePoolResourceExhausted - failed to find target pod: "
        b"no candidate pods available after filtering",
    )


async def test_admission_rejection_is_429_before_scheduling() -> None:
    class Saturated:
        def admit(self, request: LLMRequest, candidates: Sequence[Endpoint]) -> str | None:
            return "system saturated, sheddable request dropped"

    scheduler = FirstScheduler()
    servicer = make(scheduler=scheduler, admission=Saturated())
    status, body = immediate(await run(servicer, [headers_msg(), body_msg(COMPLETION)]))
    assert (status, scheduler.requests) == (429, [])
    assert body.endswith(b"system saturated, sheddable request dropped")


def _response_flow(resp_headers: dict[str, str], chunks: list[tuple[bytes, bool]]) -> list[Any]:
    msgs = [headers_msg(), body_msg(COMPLETION), resp_headers_msg(resp_headers)]
    return msgs + [resp_body_msg(c, eos) for c, eos in chunks]


async def test_epp_acc_38_non_streaming_usage_recorded_and_body_passed() -> None:
    metrics, observer = Metrics(), Observer()
    body = b'{"object":"chat.completion","usage":{"prompt_tokens":7,"completion_tokens":3,'
    body += b'"total_tokens":10}}'
    msgs = _response_flow(
        {":status": "200", "content-type": "application/json"},
        [(body[:20], False), (body[20:], True)],
    )
    replies = await run(make(metrics=metrics, observer=observer), msgs)
    assert streamed(replies, "response_body") == [(body, True)]
    assert metrics.of("tokens") == [("tokens", "m", "m", Usage(7, 3, 10, 0))]
    assert metrics.of("response") == [("response", "m", "m", len(body))]
    assert observer.completed == ["rid-1"]
    assert metrics.running == 0 and metrics.of("error") == []


async def test_epp_acc_39_streaming_chunks_pass_unchanged_tokens_once() -> None:
    metrics = Metrics()
    chunks = [
        (b'data: {"object":"chat.completion.chunk","choices":[{"delta":{}}]}\n\n', False),
        (
            b'data: {"object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":5,',
            False,
        ),
        (b'"completion_tokens":7,"total_tokens":12}}\n\ndata: [DONE]\n\n', False),
        (b"", True),
    ]
    msgs = _response_flow({":status": "200", "content-type": "text/event-stream"}, chunks)
    replies = await run(make(metrics=metrics), msgs)
    assert streamed(replies, "response_body") == chunks
    assert metrics.of("tokens") == [("tokens", "m", "m", Usage(5, 7, 12, 0))]


async def test_epp_acc_40_response_headers_marked() -> None:
    msgs = _response_flow({":status": "200", "x-inference-pod": "p"}, [])
    replies = await run(make(), msgs)
    assert kinds(replies)[-1] == "response_headers"
    set_headers = wire.headers_of(replies[-1], "response_headers")
    assert set_headers["x-went-into-resp-headers"] == "true"
    assert set_headers["x-inference-pod"] == "p"
    assert ":status" not in set_headers


@pytest.mark.parametrize("key", [":status", "status"])
async def test_model_server_error_counted_from_either_status_header(key: str) -> None:
    metrics = Metrics()
    await run(make(metrics=metrics), _response_flow({key: "500"}, [(b"oops", True)]))
    assert metrics.of("error") == [("error", "m", "m", "ModelServerError")]


async def test_cancelled_stream_still_cleans_up() -> None:
    metrics, observer = Metrics(), Observer()
    await run(make(metrics=metrics, observer=observer), [headers_msg(), body_msg(COMPLETION)])
    assert observer.completed == ["rid-1"]
    assert metrics.running == 0


async def test_trailers_are_answered() -> None:
    trailers = pb.ProcessingRequest(request_trailers=pb.HttpTrailers())
    msgs = [headers_msg(), body_msg(COMPLETION, eos=False), trailers]
    replies = await run(make(), msgs)
    assert kinds(replies) == ["request_headers", "request_body", "request_trailers"]
    assert streamed(replies, "request_body") == [(COMPLETION, False)]


async def test_unexpected_error_aborts_the_stream() -> None:
    class Broken:
        synced = True

        def __call__(self) -> Sequence[Endpoint]:
            raise ValueError("boom")

    servicer = ExtProcServicer(FirstScheduler(), Broken())
    with pytest.raises(AbortError, match="failed to handle request: boom"):
        await run(servicer, [headers_msg(), body_msg(COMPLETION)])


NTPOT = "inference_objective_normalized_time_per_output_token_seconds"
CHAT_USAGE = b'{"object":"chat.completion","usage":{"prompt_tokens":2,"completion_tokens":8,'
CHAT_USAGE += b'"total_tokens":10}}'


async def test_completion_callback_gets_the_usage_once() -> None:
    metrics = Metrics()
    flow = _response_flow({":status": "200"}, [(CHAT_USAGE, True)])
    await run(make(metrics=metrics), flow)
    assert metrics.done_usage == [Usage(2, 8, 10, 0)]
    sse = b'data: {"object":"chat.completion.chunk","usage":{"prompt_tokens":1,'
    sse += b'"completion_tokens":4,"total_tokens":5}}\n\ndata: [DONE]\n\n'
    flow = _response_flow({"content-type": "text/event-stream"}, [(sse, False), (b"", True)])
    await run(make(metrics=metrics), flow)
    await run(make(metrics=metrics), _response_flow({":status": "200"}, [(b"{}", True)]))
    assert metrics.done_usage[1:] == [Usage(1, 4, 5, 0), None]


def _samples(m: EppMetrics, name: str) -> dict[str, float]:
    body = m.render().decode()
    return {s.name: s.value for s in parse_samples(body) if s.name.startswith(name)}


@pytest.mark.parametrize("streaming", [False, True])
async def test_ntpot_is_latency_per_output_token(streaming: bool) -> None:
    clock, registry = VirtualClock(), EppMetrics("p")
    servicer = make(metrics=MetricsRecorder(registry), clock=clock)
    if streaming:
        sse = b'data: {"object":"chat.completion.chunk","usage":{"prompt_tokens":2,'
        sse += b'"completion_tokens":8,"total_tokens":10}}\n\ndata: [DONE]\n\n'
        ctype, chunks = "text/event-stream", [(sse, False), (b"", True)]
    else:
        ctype, chunks = "application/json", [(CHAT_USAGE, True)]
    response = [resp_headers_msg({":status": "200", "content-type": ctype})]
    response += [resp_body_msg(c, eos) for c, eos in chunks]

    async def source() -> AsyncIterator[Any]:
        yield headers_msg()
        yield body_msg(COMPLETION)
        await clock.advance(2.0)  # the model server takes two seconds
        for m in response:
            yield m

    [r async for r in servicer.Process(source(), FakeContext())]
    samples = _samples(registry, NTPOT)
    assert samples[NTPOT + "_count"] == 1
    assert samples[NTPOT + "_sum"] == 0.25  # 2 s / 8 output tokens


async def test_no_ntpot_without_output_tokens() -> None:
    registry = EppMetrics("p")
    servicer = make(metrics=MetricsRecorder(registry), clock=VirtualClock())
    body = b'{"object":"chat.completion","usage":{"prompt_tokens":2,"completion_tokens":0,'
    body += b'"total_tokens":2}}'
    await run(servicer, _response_flow({":status": "200"}, [(body, True)]))
    assert _samples(registry, NTPOT) == {}
