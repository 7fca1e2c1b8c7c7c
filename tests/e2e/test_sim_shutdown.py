"""SIGTERM drains a real simulator process for at most `--shutdown-timeout`.

What a client sees: a request that finishes within the drain is answered normally;
a stream still running at the deadline gets an SSE error event (the `openai` client
raises it), a request with nothing sent yet gets a 503, a new request during the
drain gets a 503; a gRPC stream is cancelled; and the process exits (status 0)
right after the deadline.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import signal
from collections.abc import Callable

import grpc
import openai
import pytest

from pyllmd.sim.grpcgen import vllm_engine_pb2 as pb
from pyllmd.sim.grpcgen import vllm_engine_pb2_grpc as pb_grpc
from tests.e2e.harness import LOOPBACK, SimProcess

pytestmark = pytest.mark.e2e

StartSim = Callable[..., SimProcess]
CAP = 2  # --shutdown-timeout of these tests, seconds
# A bound on the wait for the exit, far below the ~60 s a stream used to hold the process.
EXIT_WAIT = CAP + 10


def client(sim: SimProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim.base_url}/v1", api_key="unused", max_retries=0)


def terminate(sim: SimProcess) -> None:
    """SIGTERM, then wait until the process says it drains (the signal is handled)."""
    sim.proc.send_signal(signal.SIGTERM)
    sim.wait_until(lambda: "shutting down:" in sim.output, EXIT_WAIT, "draining")


def test_sigterm_ends_a_long_stream_with_an_error_and_exits(start_sim: StartSim) -> None:
    sim = start_sim(
        "--model", "m", "--shutdown-timeout", str(CAP), "--inter-token-latency", "300ms",
        "--max-num-seqs", "1",
    )  # fmt: skip
    # 200 tokens at 300 ms: a minute of streaming, far past the drain
    stream = client(sim).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Hello"}],
        max_tokens=200,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    chunks = iter(stream)
    first = next(chunks)
    assert first.choices[0].delta.role == "assistant"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # queued behind the stream (one worker): nothing is sent before the deadline
        queued = pool.submit(client(sim).completions.create, model="m", prompt="q", max_tokens=3)
        waiting = 'vllm:num_requests_waiting{model_name="m"} 1'
        sim.wait_until(lambda: waiting in sim.metrics(), EXIT_WAIT, "queueing the request")
        terminate(sim)
        received = 0
        with pytest.raises(openai.APIError) as err:
            for chunk in chunks:
                received += 1
                assert chunk.choices[0].finish_reason is None
        assert "shut down before the request finished" in err.value.message
        assert "--shutdown-timeout 2s" in err.value.message
        assert 0 < received < 200
        with pytest.raises(openai.InternalServerError) as waited:
            queued.result(timeout=EXIT_WAIT)
        assert waited.value.status_code == 503
        assert "shut down before the request finished" in waited.value.message
    assert sim.proc.wait(timeout=EXIT_WAIT) == 0
    assert "ended 2 unfinished requests with an error" in sim.output


def test_the_stream_error_event_is_followed_by_done(start_sim: StartSim) -> None:
    sim = start_sim("--model", "m", "--shutdown-timeout", "0", "--inter-token-latency", "1s")
    conn = http.client.HTTPConnection(LOOPBACK, sim.port, timeout=EXIT_WAIT)
    body = {"model": "m", "prompt": "hi", "max_tokens": 50, "ignore_eos": True, "stream": True}
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.readline().startswith(b"data: {")  # the first token
    sim.proc.send_signal(signal.SIGTERM)
    rest = resp.read().decode()
    events = [e.strip() for e in rest.split("\n\n") if e.strip()]
    assert events[-1] == "data: [DONE]"
    error = json.loads(events[-2].removeprefix("data: "))
    assert error == {
        "error": {
            "message": "the server shut down before the request finished (--shutdown-timeout 0s)",
            "type": "InternalServerError",
            "param": None,
            "code": 503,
        }
    }
    assert sim.proc.wait(timeout=EXIT_WAIT) == 0


def test_requests_finishing_within_the_drain_are_answered(start_sim: StartSim) -> None:
    sim = start_sim("--model", "m", "--shutdown-timeout", "30", "--inter-token-latency", "100ms")
    idle = http.client.HTTPConnection(LOOPBACK, sim.port, timeout=EXIT_WAIT)
    idle.request("GET", "/health")
    assert idle.getresponse().read() == b"{}"  # a kept-alive connection, idle
    stream = client(sim).completions.create(
        model="m", prompt="hi", max_tokens=20, stream=True, extra_body={"ignore_eos": True}
    )
    chunks = iter(stream)
    next(chunks)
    terminate(sim)
    # during the drain a new request gets a 503 (new connections are refused)
    body = json.dumps({"model": "m", "prompt": "late", "max_tokens": 1})
    idle.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    late = idle.getresponse()
    assert late.status == 503
    assert json.loads(late.read())["error"]["message"] == (
        "the server is shutting down and takes no new requests"
    )
    rest = list(chunks)  # the stream in flight runs to its end
    assert len(rest) == 19 and rest[-1].choices[0].finish_reason == "length"
    assert sim.proc.wait(timeout=EXIT_WAIT) == 0


def test_a_grpc_stream_past_the_deadline_is_cancelled(start_sim: StartSim) -> None:
    sim = start_sim("--model", "m", "--shutdown-timeout", str(CAP), "--inter-token-latency", "1s")
    with grpc.insecure_channel(f"{LOOPBACK}:{sim.port}") as channel:
        stub = pb_grpc.VllmEngineStub(channel)  # type: ignore[no-untyped-call]
        params = pb.SamplingParams(max_tokens=60, ignore_eos=True)
        request = pb.GenerateRequest(request_id="g", text="hi", stream=True, sampling_params=params)
        replies = stub.Generate(request, timeout=EXIT_WAIT * 2)
        assert next(replies).HasField("chunk")
        terminate(sim)
        with pytest.raises(grpc.RpcError) as err:
            for reply in replies:
                assert not reply.HasField("complete")
        assert err.value.code() != grpc.StatusCode.DEADLINE_EXCEEDED
    assert sim.proc.wait(timeout=EXIT_WAIT) == 0
