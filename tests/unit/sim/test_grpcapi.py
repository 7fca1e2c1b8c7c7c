"""The vLLM gRPC API of the simulator (spec §11.1), with a real grpc.aio client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pyllmd.core.clock import RealClock
from pyllmd.core.tokenize import fnv1a_32
from pyllmd.sim.grpcgen import vllm_engine_pb2 as pb
from pyllmd.sim.grpcgen import vllm_engine_pb2_grpc as pb_grpc
from pyllmd.sim.run import SERVICE
from pyllmd.sim.server.grpcapi import grpc_code, serve_grpc
from tests.unit.sim.conftest import Sim, SimFactory, metric_value

HELLO = ["Hello", ", ", "world", "!"]
Stub = Callable[..., Awaitable[tuple[pb_grpc.VllmEngineStub, Sim]]]


@pytest.fixture
async def grpc_sim(start_sim: SimFactory) -> AsyncIterator[Stub]:
    """Factory: a simulator with its gRPC server; yields (stub, sim)."""
    servers: list[grpc.aio.Server] = []
    channels: list[grpc.aio.Channel] = []

    async def make(*args: str, real_time: bool = False) -> tuple[pb_grpc.VllmEngineStub, Sim]:
        sim = await start_sim(*args, clock=RealClock() if real_time else None)
        server, port = await serve_grpc(sim.server.app[SERVICE], sim.clock)
        servers.append(server)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        channels.append(channel)
        return pb_grpc.VllmEngineStub(channel), sim

    yield make
    for channel in channels:
        await channel.close()
    for server in servers:
        await server.stop(None)


def _ids(tokens: list[str]) -> list[int]:
    return [fnv1a_32(t.encode()) for t in tokens]


async def _collect(call: object) -> list[pb.GenerateResponse]:
    return [r async for r in call]  # type: ignore[attr-defined]


async def test_generate_echo_text_non_streaming(grpc_sim: Stub) -> None:
    stub, sim = await grpc_sim("--mode", "echo")
    replies = await _collect(
        stub.Generate(pb.GenerateRequest(request_id="r1", text="Hello, world!"))
    )
    assert len(replies) == 1 and replies[0].HasField("complete")
    done = replies[0].complete
    assert list(done.output_ids) == _ids(HELLO)
    assert (done.finish_reason, done.prompt_tokens, done.completion_tokens) == ("stop", 4, 4)
    text = await sim.metrics()
    assert metric_value(text, "vllm:request_success_total", finish_reason="stop") == 1


async def test_generate_streams_one_chunk_per_token_then_complete(grpc_sim: Stub) -> None:
    stub, _ = await grpc_sim("--mode", "echo")
    ids = [11, 22, 33]
    request = pb.GenerateRequest(
        request_id="r2",
        tokenized=pb.TokenizedInput(input_ids=ids),
        sampling_params=pb.SamplingParams(max_tokens=2),
        stream=True,
    )
    replies = await _collect(stub.Generate(request))
    chunks = [r.chunk for r in replies if r.HasField("chunk")]
    assert [list(c.token_ids) for c in chunks] == [[11], [22], [33]]  # echo ignores max_tokens
    assert all((c.prompt_tokens, c.completion_tokens) == (3, 1) for c in chunks)
    last = replies[-1].complete
    assert (list(last.output_ids), last.completion_tokens, last.finish_reason) == ([], 0, "length")


async def test_random_mode_respects_max_tokens(grpc_sim: Stub) -> None:
    stub, _ = await grpc_sim()
    params = pb.SamplingParams(max_tokens=5, ignore_eos=True)
    replies = await _collect(
        stub.Generate(pb.GenerateRequest(request_id="r", text="hi", sampling_params=params))
    )
    assert 1 <= replies[0].complete.completion_tokens <= 5
    assert len(replies[0].complete.output_ids) == replies[0].complete.completion_tokens


@pytest.mark.parametrize(
    ("args", "request_kwargs", "code"),
    [
        (("--served-model-name", "a", "b"), {}, grpc.StatusCode.NOT_FOUND),
        (
            (),
            {"sampling_params": pb.SamplingParams(max_tokens=0)},
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (("--max-model-len", "3"), {}, grpc.StatusCode.INVALID_ARGUMENT),
        (
            ("--failure-injection-rate", "100", "--failure-types", "rate_limit"),
            {},
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ),
    ],
)
async def test_errors_map_to_grpc_codes(
    grpc_sim: Stub, args: tuple[str, ...], request_kwargs: dict[str, object], code: grpc.StatusCode
) -> None:
    stub, _ = await grpc_sim(*args)
    request = pb.GenerateRequest(request_id="e", text="Hello, world!", **request_kwargs)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _collect(stub.Generate(request))
    assert err.value.code() == code
    assert "%!" not in (err.value.details() or "")


def test_status_to_code_table() -> None:
    assert grpc_code(409) == grpc.StatusCode.ABORTED
    assert grpc_code(504) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert grpc_code(418) == grpc.StatusCode.UNKNOWN


async def test_abort_ends_a_running_request_with_finish_reason_abort(grpc_sim: Stub) -> None:
    stub, _ = await grpc_sim("--time-to-first-token", "10s", real_time=True)
    call = stub.Generate(pb.GenerateRequest(request_id="slow", text="hi", stream=True))
    reader = asyncio.ensure_future(_collect(call))
    for _ in range(200):  # until the server holds it
        info = await stub.GetServerInfo(pb.GetServerInfoRequest())
        if info.active_requests == 1:
            break
        await asyncio.sleep(0.01)
    await stub.Abort(pb.AbortRequest(request_ids=["slow"]))
    replies = await asyncio.wait_for(reader, 5)
    assert replies[-1].complete.finish_reason == "abort"
    info = await stub.GetServerInfo(pb.GetServerInfoRequest())
    assert info.active_requests == 0


async def test_health_model_and_server_info(grpc_sim: Stub) -> None:
    stub, _ = await grpc_sim("--max-model-len", "2048")
    health = await stub.HealthCheck(pb.HealthCheckRequest())
    assert health.healthy
    model = await stub.GetModelInfo(pb.GetModelInfoRequest())
    assert (model.model_path, model.max_context_length, model.is_generation) == ("m", 2048, True)
    info = await stub.GetServerInfo(pb.GetServerInfoRequest())
    assert (info.server_type, info.is_paused, info.active_requests) == ("vllm-grpc", False, 0)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Embed(pb.EmbedRequest())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_reflection_lists_the_engine_service(grpc_sim: Stub) -> None:
    _, sim = await grpc_sim()
    server, port = await serve_grpc(sim.server.app[SERVICE], sim.clock)

    async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
            replies = [r async for r in reflect.ServerReflectionInfo(ask())]
    finally:
        await server.stop(None)
    names = {s.name for s in replies[0].list_services_response.service}
    assert "vllm.grpc.engine.VllmEngine" in names


BATCH = ("--model", "meta-llama/Llama-2-7b-hf", "--latency-calculator", "batch")


async def test_batch_calculator_streams_at_engine_steps(grpc_sim: Stub) -> None:
    stub, sim = await grpc_sim(*BATCH, "--mode", "echo", real_time=True)
    request = pb.GenerateRequest(
        request_id="b1", tokenized=pb.TokenizedInput(input_ids=[5, 6, 7, 8]), stream=True
    )
    replies = await _collect(stub.Generate(request))
    chunks = [r.chunk for r in replies if r.HasField("chunk")]
    assert [list(c.token_ids) for c in chunks] == [[5], [6], [7], [8]]
    assert replies[-1].complete.finish_reason == "stop"
    text = await sim.metrics()
    steps = metric_value(text, "vllm:iteration_tokens_total_count")
    assert steps is not None and steps >= 4  # a step per token
    whole = await _collect(stub.Generate(pb.GenerateRequest(request_id="b2", text="Hello, world!")))
    assert whole[0].complete.completion_tokens == 4
    assert list(whole[0].complete.output_ids) == _ids(HELLO)
