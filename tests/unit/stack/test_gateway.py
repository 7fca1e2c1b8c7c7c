"""The local stack's built-in gateway, served on a real socket in front of fake pods.

The fake pods are small aiohttp servers whose behaviour each test picks: answer at
once, hold every request until released (to count what is in flight), drop the
connection before answering, or die in the middle of a stream. Clients are the
`openai` client, aiohttp and raw sockets, i.e. what a user of the gateway sees.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import openai
import pytest
from aiohttp import web

from pyllmd.stack.gateway import Gateway, model_list, pick, request_model

MODEL = "m"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FakePod:
    """A model server; `mode` is answer | hold | drop | die-mid-stream."""

    mode: str = "answer"
    name: str = "pod"
    arrived: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    runner: web.AppRunner | None = None
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.arrived += 1
        if self.mode == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if self.mode == "hold":
            await self.release.wait()
        if self.mode == "die-mid-stream":
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(b'data: {"choices": []}\n\n')
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.close()  # the pod dies
            return resp
        return web.json_response({"id": "x", "object": "text_completion", "pod": self.name,
                                  "model": MODEL, "created": 0, "choices": []})  # fmt: skip

    async def start(self, port: int = 0) -> FakePod:
        app = web.Application()
        app.router.add_post("/v1/completions", self.handle)
        app.router.add_post("/v1/chat/completions", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port or free_port()).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()


@dataclass
class Served:
    """A gateway on a real port, the pods it routes `MODEL` to, and its URL."""

    gateway: Gateway
    pods: list[str]
    url: str
    runner: web.AppRunner

    def client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key="x", max_retries=0)


StartGateway = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve() -> AsyncIterator[StartGateway]:
    started: list[web.AppRunner] = []

    async def start(*pods: str, queue_timeout: float = 30.0) -> Served:
        urls = list(pods)
        gateway = Gateway(
            lambda model: urls if model == MODEL else [],
            lambda: {MODEL},
            queue_timeout=queue_timeout,
            poll=0.01,
            created=1700000000,
        )
        runner = web.AppRunner(gateway.app(), shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", free_port()).start()
        started.append(runner)
        return Served(gateway, urls, f"http://127.0.0.1:{runner.addresses[0][1]}", runner)

    yield start
    for runner in started:
        await runner.cleanup()


@pytest.fixture
async def fake_pods() -> AsyncIterator[Callable[..., Awaitable[FakePod]]]:
    pods: list[FakePod] = []

    async def start(mode: str = "answer", name: str = "pod") -> FakePod:
        pod = await FakePod(mode, name).start()
        pods.append(pod)
        return pod

    yield start
    for pod in pods:
        await pod.stop()


async def _until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------ pure parts


def test_request_model() -> None:
    assert request_model(b'{"model": "m"}') == "m"
    assert request_model(b"not json") == (400, "Failed to read and parse request body")
    assert request_model(b"[1]") == (400, "Failed to read and parse request body")
    assert request_model(b'{"prompt": "x"}') == (400, "model not found in request body")
    assert request_model(b'{"model": 5}') == (400, "model not found in request body")


def test_pick_least_in_flight_skipping_excluded() -> None:
    pods = ["a", "b", "c"]
    assert pick(pods, {"a": 3, "b": 1, "c": 2}, (), 0) == "b"
    assert pick(pods, {"a": 3, "b": 1, "c": 2}, {"b"}, 0) == "c"
    assert [pick(pods, {"a": 1}, (), t) for t in range(4)] == ["b", "c", "b", "c"]
    assert pick(pods, {}, set(pods), 0) is None
    assert pick([], {}, (), 0) is None


def test_model_list_is_vllm_shaped() -> None:
    body = model_list({"b", "a"}, 7)
    assert body["object"] == "list"
    assert [(m["id"], m["object"], m["created"], m["root"]) for m in body["data"]] == [
        ("a", "model", 7, "a"),
        ("b", "model", 7, "b"),
    ]


# ------------------------------------------------------------------ models


async def test_an_unknown_model_is_404_at_once_in_the_openai_shape(
    serve: StartGateway, fake_pods: Callable[..., Awaitable[FakePod]]
) -> None:
    pod = await fake_pods()
    served = await serve(pod.url)
    with pytest.raises(openai.NotFoundError) as caught:
        await served.client().completions.create(model="other", prompt="hi")
    assert caught.value.status_code == 404
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["message"] == "The model `other` does not exist."
    assert body["type"] == "NotFoundError"
    assert pod.arrived == 0
    assert 'inference_extension_flow_control_queue_size{target_model_name="other"}' not in (
        served.gateway.registry.render().decode()
    )


async def test_models_list_names_the_served_models(serve: StartGateway) -> None:
    served = await serve()  # no pod at all: the model is still served (at zero replicas)
    models = await served.client().models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert models.data[0].owned_by == "vllm"


async def test_other_paths_answer_in_the_openai_shape(serve: StartGateway) -> None:
    served = await serve()
    async with aiohttp.ClientSession() as http, http.get(served.url + "/v1/nope") as r:
        assert r.status == 404
        assert (await r.json())["error"]["type"] == "NotFoundError"
    async with aiohttp.ClientSession() as http:
        async with http.post(served.url + "/v1/completions", data=b"{") as r:
            assert r.status == 400
            assert (await r.json())["error"]["type"] == "BadRequestError"


async def test_a_served_model_at_zero_replicas_is_held_until_a_pod_is_ready(
    serve: StartGateway, fake_pods: Callable[..., Awaitable[FakePod]]
) -> None:
    served = await serve()
    pending = asyncio.create_task(served.client().completions.create(model=MODEL, prompt="hi"))
    queued = f'inference_extension_flow_control_queue_size{{target_model_name="{MODEL}"}} 1'
    await _until(lambda: queued in served.gateway.registry.render().decode(), "the queue gauge")
    assert not pending.done()
    pod = await fake_pods()
    served.pods.append(pod.url)
    reply = await asyncio.wait_for(pending, 20)
    assert reply.id == "x" and pod.arrived == 1


# ------------------------------------------------------------------ dispatch


async def test_no_global_cap_more_than_100_requests_in_flight(
    serve: StartGateway, fake_pods: Callable[..., Awaitable[FakePod]]
) -> None:
    pods = [await fake_pods("hold", "a"), await fake_pods("hold", "b")]
    served = await serve(*(p.url for p in pods))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one() -> int:
            async with http.post(served.url + "/v1/completions", json={"model": MODEL}) as r:
                await r.read()
                return r.status

        requests = [asyncio.create_task(one()) for _ in range(150)]
        # every request reaches a pod at once: 150 in flight, spread evenly
        await _until(lambda: sum(p.arrived for p in pods) == 150, "150 requests at the pods")
        assert [p.arrived for p in pods] == [75, 75]
        for pod in pods:
            pod.release.set()
        assert await asyncio.gather(*requests) == [200] * 150


async def test_a_new_pod_gets_the_next_requests_while_the_old_one_is_busy(
    serve: StartGateway, fake_pods: Callable[..., Awaitable[FakePod]]
) -> None:
    old = await fake_pods("hold", "old")
    served = await serve(old.url)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one() -> int:
            async with http.post(served.url + "/v1/completions", json={"model": MODEL}) as r:
                await r.read()
                return r.status

        overload = [asyncio.create_task(one()) for _ in range(120)]
        await _until(lambda: old.arrived == 120, "120 requests at the old pod")
        new = await fake_pods("hold", "new")
        served.pods.append(new.url)  # scaled up under overload
        more = [asyncio.create_task(one()) for _ in range(10)]
        await _until(lambda: new.arrived == 10, "the new pod to get the next 10 requests")
        assert old.arrived == 120
        old.release.set()
        new.release.set()
        assert await asyncio.gather(*overload, *more) == [200] * 130


async def test_a_request_for_a_pod_that_went_away_is_sent_to_another(
    serve: StartGateway, fake_pods: Callable[..., Awaitable[FakePod]]
) -> None:
    live = await fake_pods("answer", "live")
    gone = f"http://127.0.0.1:{free_port()}"  # nobody listens: connection refused
    dropping = await fake_pods("drop", "dropping")  # closes before answering
    served = await serve(gone, dropping.url, live.url)
    client = served.client()
    for _ in range(6):  # whichever pod is picked first, every request is answered
        reply = await client.completions.create(model=MODEL, prompt="hi")
        assert reply.model_extra is not None and reply.model_extra["pod"] == "live"
    assert live.arrived == 6 and dropping.arrived >= 1


async def test_when_every_pod_is_gone_the_request_waits_for_a_new_one(
    serve: StartGateway, fake_pods: Callable[..., Awaitable[FakePod]]
) -> None:
    served = await serve(f"http://127.0.0.1:{free_port()}")
    pending = asyncio.create_task(served.client().completions.create(model=MODEL, prompt="hi"))
    await asyncio.sleep(0.2)
    assert not pending.done()
    replacement = await fake_pods("answer", "replacement")
    served.pods[:] = [replacement.url]
    reply = await asyncio.wait_for(pending, 20)
    assert reply.model_extra is not None and reply.model_extra["pod"] == "replacement"


# ------------------------------------------------------------------ faults and shutdown


async def test_a_pod_dying_mid_stream_aborts_the_client_connection(
    serve: StartGateway, fake_pods: Callable[..., Awaitable[FakePod]]
) -> None:
    pod = await fake_pods("die-mid-stream")
    served = await serve(pod.url)
    port = served.runner.addresses[0][1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps({"model": MODEL, "stream": True}).encode()
    writer.write(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), 20)  # EOF: the connection was closed
    writer.close()
    assert received.startswith(b"HTTP/1.1 200")
    assert b"data: " in received
    assert b"HTTP/1.1 502" not in received and not received.endswith(b"0\r\n\r\n")
    # an aiohttp client fails at once instead of waiting for its timeout
    async with aiohttp.ClientSession() as http:
        async with http.post(served.url + "/v1/completions", json={"model": MODEL}) as r:
            with pytest.raises(aiohttp.ClientPayloadError):
                await asyncio.wait_for(r.read(), 20)


async def test_shutdown_ends_held_and_in_flight_requests_with_an_error(
    serve: StartGateway, fake_pods: Callable[..., Awaitable[FakePod]]
) -> None:
    pod = await fake_pods("hold")
    served = await serve(pod.url)
    other = Gateway(lambda m: [], lambda: {MODEL}, poll=0.01)  # a model at zero replicas
    runner = web.AppRunner(other.app(), shutdown_timeout=60.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", free_port()).start()
    held_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    async with aiohttp.ClientSession() as http:

        async def status(url: str) -> int | str:
            try:
                async with http.post(url + "/v1/completions", json={"model": MODEL}) as r:
                    await r.read()
                    return r.status
            except aiohttp.ClientError as e:
                return type(e).__name__

        in_flight = asyncio.create_task(status(served.url))
        held = asyncio.create_task(status(held_url))
        await _until(lambda: pod.arrived == 1, "the request at the pod")
        await asyncio.sleep(0.1)
        # the runners would wait up to their shutdown_timeout (60 s for `other`) for
        # handlers; the gateway ends them itself
        await asyncio.gather(served.runner.cleanup(), runner.cleanup())
        assert await asyncio.wait_for(asyncio.gather(in_flight, held), 5) == [503, 503]
