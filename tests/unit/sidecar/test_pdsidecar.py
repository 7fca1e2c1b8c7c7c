"""`pyllmd pd-sidecar`: flags, request shaping, and the proxy against recording upstreams.

The upstreams here are small aiohttp servers that record what the sidecar sent
them (which a real model server cannot show); tests/e2e/test_epp_pd.py runs the
sidecar between real simulators behind Envoy and the EPP.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from pyllmd import cli
from pyllmd.core.errors import ConfigError
from pyllmd.sidecar.config import FLAGS, SidecarOptions, load_options
from pyllmd.sidecar.protocol import (
    DECODER_DOWN,
    cache_threshold_hit,
    hostport,
    nixl_decode_body,
    nixl_prefill_body,
    pick_prefiller,
    sglang_body,
    sglang_bootstrap_host,
    sglang_room,
)
from pyllmd.sidecar.run import RunningSidecar, start_sidecar

KV_REPLY = {"do_remote_decode": False, "do_remote_prefill": True, "remote_engine_id": "E"}

# ------------------------------------------------------------------ flags


def test_defaults_match_upstream() -> None:
    o = load_options([], {})
    assert (o.port, o.vllm_port, o.data_parallel_size, o.connector) == (8000, 8001, 1, "nixlv2")
    assert o.secure_proxy is True
    assert o.enable_prefiller_sampling is False


def test_go_style_single_dash_flags_and_env() -> None:
    o = load_options(
        ["-port=9000", "-vllm-port", "9200", "--secure-proxy=false", "-data-parallel-size=2"],
        {"ENABLE_PREFILLER_SAMPLING": "true", "POD_IP": "10.1.2.3"},
    )
    assert (o.port, o.vllm_port, o.data_parallel_size, o.secure_proxy) == (9000, 9200, 2, False)
    assert o.enable_prefiller_sampling is True
    assert o.pod_ip == "10.1.2.3"
    given = load_options(["--enable-prefiller-sampling=false"], {"ENABLE_PREFILLER_SAMPLING": "1"})
    assert given.enable_prefiller_sampling is False


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--connector=foo"], {}, "--connector must be one of: nixlv2, shared-storage, sglang"),
        (
            ["--zap-encoder=xml"],
            {},
            'invalid argument "xml" for "--zap-encoder" flag: invalid encoder value "xml"',
        ),
        (
            ["--zap-log-level=loud"],
            {},
            'invalid argument "loud" for "--zap-log-level" flag: invalid log level "loud"',
        ),
        (["--bind-address=not an address"], {}, "--bind-address: 'not an address' is not"),
        (["--connector=sglang"], {"SGLANG_BOOTSTRAP_PORT": "x"}, "SGLANG_BOOTSTRAP_PORT: invalid"),
        (["--port=x"], {}, "--port: invalid port 'x'"),
        (["--vllm-port=70000"], {}, "--vllm-port: invalid port '70000'"),
        (["--data-parallel-size=0"], {}, "--data-parallel-size must be at least 1, got 0"),
        (
            ["--enable-ssrf-protection"],
            {},
            "--inference-pool-namespace or INFERENCE_POOL_NAMESPACE environment variable",
        ),
        (
            ["--enable-ssrf-protection"],
            {"INFERENCE_POOL_NAMESPACE": "ns", "INFERENCE_POOL_NAME": "p"},
            "--enable-ssrf-protection is not implemented",
        ),
        (["--nope"], {}, "unknown flag: --nope"),
    ],
)
def test_flag_errors(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_options(argv, env)
    assert message in str(err.value)


def test_sglang_connector_and_its_bootstrap_port() -> None:
    assert load_options(["--connector=sglang"], {}).sglang_bootstrap_port == 8998
    env = {"SGLANG_BOOTSTRAP_PORT": "9100"}
    assert load_options(["--connector=sglang"], env).sglang_bootstrap_port == 9100
    # only the sglang connector reads the variable
    assert load_options([], {"SGLANG_BOOTSTRAP_PORT": "x"}).connector == "nixlv2"


def test_help_lists_sglang_among_the_supported_connectors() -> None:
    help_text = "\n".join(spec.help for spec in FLAGS if spec.name == "connector")
    assert help_text.endswith("Supported: nixlv2, shared-storage, sglang")
    assert load_options(["--connector=sglang"], {}).connector == "sglang"


def test_cli_reports_errors_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["pd-sidecar", "--connector=foo"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "pyllmd pd-sidecar: error: --connector must be one of: nixlv2, shared-storage, sglang"
    ]


# ------------------------------------------------------------------ request shaping


def test_nixl_prefill_and_decode_bodies() -> None:
    original = {"model": "m", "prompt": "p", "stream": True, "stream_options": {"x": 1}}
    prefill = nixl_prefill_body(original)
    assert prefill["kv_transfer_params"]["do_remote_decode"] is True
    assert prefill["kv_transfer_params"]["do_remote_prefill"] is False
    assert (prefill["stream"], prefill["max_tokens"], prefill["max_completion_tokens"]) == (
        False,
        1,
        1,
    )
    assert "stream_options" not in prefill
    assert original == {"model": "m", "prompt": "p", "stream": True, "stream_options": {"x": 1}}
    decode = nixl_decode_body(original, KV_REPLY)
    assert decode == {**original, "kv_transfer_params": KV_REPLY}


@pytest.mark.parametrize(
    ("values", "pick", "expected"),
    [
        ([], None, ""),
        ([""], None, ""),
        (["10.0.0.1:8000"], None, "10.0.0.1:8000"),
        (["10.0.0.1:8000, 10.0.0.2:8000"], None, "10.0.0.1:8000"),
        (["10.0.0.1:8000", "10.0.0.2:8000"], None, "10.0.0.1:8000"),
        (["10.0.0.1:8000, 10.0.0.2:8000"], 1, "10.0.0.2:8000"),
    ],
)
def test_pick_prefiller(values: list[str], pick: int | None, expected: str) -> None:
    sample = (lambda n: pick) if pick is not None else None
    assert pick_prefiller(values, sample) == expected


@pytest.mark.parametrize(
    ("prefiller", "host"),
    [
        ("10.0.0.1:8000", "10.0.0.1"),
        ("http://10.0.0.1:8000", "10.0.0.1"),
        ("prefill-0.svc:8000", "prefill-0.svc"),
        ("[fd00::1]:8000", "fd00::1"),
        ("10.0.0.1", "10.0.0.1"),
    ],
)
def test_sglang_bootstrap_host(prefiller: str, host: str) -> None:
    assert sglang_bootstrap_host(prefiller) == host


def test_sglang_body_and_room() -> None:
    request = {"model": "m", "prompt": "p", "stream": True}
    body = sglang_body(request, "10.0.0.1:8000", 8998, 42)
    assert body == {**request, "bootstrap_host": "10.0.0.1", "bootstrap_port": 8998,
                    "bootstrap_room": 42}  # fmt: skip
    assert request == {"model": "m", "prompt": "p", "stream": True}  # not changed
    assert sglang_room(1_000_000, lambda n: n - 1) == 1_000_999


def test_helpers() -> None:
    assert hostport("10.0.0.1", 80) == "10.0.0.1:80"
    assert hostport("fd00::1", 80) == "[fd00::1]:80"
    assert hostport("", 80) == ":80"
    assert cache_threshold_hit(b'{"choices":[{"finish_reason":"cache_threshold"}]}')
    assert cache_threshold_hit(b'data: {"choices":[{"finish_reason":"cache_threshold"}]}\n\n')
    assert not cache_threshold_hit(b'{"choices":[{"finish_reason":"stop"}]}')
    assert not cache_threshold_hit(b"data: [DONE]\n\n")


# ------------------------------------------------------------------ the proxy


def free_ports(n: int) -> int:
    """The first of `n` consecutive loopback ports that were free a moment ago."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + n > 65535:
            continue
        try:
            socks = []
            for i in range(n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no consecutive free ports")


@dataclass
class Upstream:
    """A recording model server: answers prefill with `kv_transfer_params`."""

    name: str
    port: int = 0
    seen: list[tuple[str, dict[str, Any], list[str]]] = field(default_factory=list)
    status: int = 200
    finish: str = "stop"
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = orjson.loads(raw) if raw else {}
        self.seen.append((request.path, body, request.headers.getall("x-request-id", [])))
        if request.path == "/metrics":
            return web.Response(text=f"served_by {self.name}\n")
        if self.status != 200:
            return web.json_response({"error": self.name}, status=self.status)
        if body.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for event in ({"choices": [{"finish_reason": None}]}, {"choices": [{"x": 1}]}):
                await resp.write(b"data: " + orjson.dumps(event) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            return resp
        reply: dict[str, Any] = {
            "served_by": self.name,
            "choices": [{"finish_reason": self.finish}],
        }
        kv = body.get("kv_transfer_params") or {}
        if kv.get("do_remote_decode"):
            reply["kv_transfer_params"] = KV_REPLY
        return web.json_response(reply)

    async def start(self, port: int = 0) -> Upstream:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port or free_ports(1))
        await site.start()
        self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        return self


Start = Callable[..., Awaitable[RunningSidecar]]


@pytest.fixture
async def sidecar() -> AsyncIterator[Start]:
    started: list[RunningSidecar] = []

    async def start(decoder_port: int, **kw: Any) -> RunningSidecar:
        options = SidecarOptions(
            port=kw.pop("port", 0) or free_ports(1),
            vllm_port=decoder_port,
            secure_proxy=False,
            bind_address="127.0.0.1",
            **kw,
        )
        running = await start_sidecar(options)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.close()


@pytest.fixture
async def upstreams() -> AsyncIterator[Callable[..., Awaitable[Upstream]]]:
    made: list[Upstream] = []

    async def make(name: str, port: int = 0) -> Upstream:
        up = await Upstream(name).start(port)
        made.append(up)
        return up

    yield make
    for up in made:
        if up.runner is not None:
            await up.runner.cleanup()


async def post(port: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    async with aiohttp.ClientSession() as s:
        url = f"http://127.0.0.1:{port}/v1/completions"
        async with s.post(url, json=body, headers=headers or {}) as r:
            return r.status, await r.read(), r.headers


async def test_without_prefill_header_the_request_goes_to_the_decoder_unchanged(
    sidecar: Start, upstreams: Callable[..., Awaitable[Upstream]]
) -> None:
    decoder = await upstreams("decoder")
    running = await sidecar(decoder.port)
    status, body, _ = await post(running.ports[0], {"model": "m", "prompt": "p"})
    assert status == 200
    assert orjson.loads(body)["served_by"] == "decoder"
    assert decoder.seen[0][1] == {"model": "m", "prompt": "p"}


async def test_nixlv2_prefills_then_decodes_with_the_returned_params(
    sidecar: Start, upstreams: Callable[..., Awaitable[Upstream]]
) -> None:
    decoder, prefiller = await upstreams("decoder"), await upstreams("prefiller")
    running = await sidecar(decoder.port)
    request = {"model": "m", "prompt": "p", "max_tokens": 7, "stream": True}
    status, body, headers = await post(
        running.ports[0], request, {"x-prefiller-host-port": f"127.0.0.1:{prefiller.port}"}
    )
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream"
    assert body.endswith(b"data: [DONE]\n\n")  # the decoder's stream, passed through
    path, sent, ids = prefiller.seen[0]
    assert path == "/v1/completions"
    assert sent["kv_transfer_params"]["do_remote_decode"] is True
    assert (sent["max_tokens"], sent["max_completion_tokens"], sent["stream"]) == (1, 1, False)
    _, decoded, decode_ids = decoder.seen[0]
    assert decoded == {**request, "kv_transfer_params": KV_REPLY}
    assert len(ids) == 1 and ids == decode_ids  # one request id shared by both phases


async def test_failed_prefill_is_returned_with_its_body(
    sidecar: Start, upstreams: Callable[..., Awaitable[Upstream]]
) -> None:
    decoder, prefiller = await upstreams("decoder"), await upstreams("prefiller")
    prefiller.status = 429
    running = await sidecar(decoder.port)
    status, body, _ = await post(
        running.ports[0],
        {"model": "m", "prompt": "p"},
        {"x-prefiller-host-port": f"127.0.0.1:{prefiller.port}"},
    )
    assert (status, orjson.loads(body)) == (429, {"error": "prefiller"})
    assert decoder.seen == []


async def test_unreachable_prefiller_is_502_and_bad_json_400(
    sidecar: Start, upstreams: Callable[..., Awaitable[Upstream]]
) -> None:
    decoder = await upstreams("decoder")
    running = await sidecar(decoder.port)
    closed = free_ports(1)
    status, body, _ = await post(
        running.ports[0],
        {"model": "m", "prompt": "p"},
        {"x-prefiller-host-port": f"127.0.0.1:{closed}"},
    )
    assert status == 502
    assert orjson.loads(body)["type"] == "BadGateway"
    async with aiohttp.ClientSession() as s:
        url = f"http://127.0.0.1:{running.ports[0]}/v1/completions"
        async with s.post(url, data=b"{", headers={"x-prefiller-host-port": "h:1"}) as r:
            assert r.status == 400
            assert (await r.json())["type"] == "BadRequestError"


async def test_decoder_down_is_503_and_other_paths_are_proxied(
    sidecar: Start, upstreams: Callable[..., Awaitable[Upstream]]
) -> None:
    down = await sidecar(free_ports(1))
    status, body, _ = await post(down.ports[0], {"model": "m", "prompt": "p"})
    assert status == 503
    assert orjson.loads(body) == {
        "object": "error", "message": DECODER_DOWN, "type": "ServiceUnavailable",
        "param": "", "code": 503,
    }  # fmt: skip
    decoder = await upstreams("decoder")
    running = await sidecar(decoder.port)
    async with aiohttp.ClientSession() as s:
        base = f"http://127.0.0.1:{running.ports[0]}"
        async with s.get(base + "/metrics") as r:
            assert await r.text() == "served_by decoder\n"
        async with s.get(base + "/health") as r:
            assert r.status == 200
    assert [p for p, _, _ in decoder.seen] == ["/metrics"]  # /health is the sidecar's own


async def test_data_parallel_ranks(
    sidecar: Start, upstreams: Callable[..., Awaitable[Upstream]]
) -> None:
    vllm = free_ports(2)
    rank0, rank1 = await upstreams("rank0", vllm), await upstreams("rank1", vllm + 1)
    port = free_ports(2)
    running = await sidecar(vllm, port=port, data_parallel_size=2, pod_ip="127.0.0.1")
    assert running.ports == [port, port + 1]
    body = {"model": "m", "prompt": "p"}
    for header, expected in ((f"127.0.0.1:{port + 1}", "rank1"), (f"127.0.0.1:{port}", "rank0")):
        status, reply, _ = await post(port, body, {"x-data-parallel-host-port": header})
        assert (status, orjson.loads(reply)["served_by"]) == (200, expected)
    status, _, _ = await post(port, body, {"x-data-parallel-host-port": "10.9.9.9:1"})
    assert status == 400
    status, reply, _ = await post(
        port + 1, body, {"x-data-parallel-host-port": f"127.0.0.1:{port}"}
    )
    assert orjson.loads(reply)["served_by"] == "rank1"  # a rank port ignores the header
    assert len(rank0.seen) == 1 and len(rank1.seen) == 2


async def test_shared_storage_tries_decode_first_with_a_cache_hit_threshold(
    sidecar: Start, upstreams: Callable[..., Awaitable[Upstream]]
) -> None:
    decoder, prefiller = await upstreams("decoder"), await upstreams("prefiller")
    running = await sidecar(decoder.port, connector="shared-storage")
    hdr = {"x-prefiller-host-port": f"127.0.0.1:{prefiller.port}"}
    status, body, _ = await post(
        running.ports[0], {"model": "m", "prompt": "p", "cache_hit_threshold": 0.5}, hdr
    )
    assert (status, orjson.loads(body)["served_by"]) == (200, "decoder")
    assert prefiller.seen == []  # the decoder had enough cached
    decoder.finish = "cache_threshold"
    status, body, _ = await post(
        running.ports[0], {"model": "m", "prompt": "p", "cache_hit_threshold": 0.5}, hdr
    )
    assert prefiller.seen[0][1]["max_tokens"] == 1
    assert prefiller.seen[0][1]["cache_hit_threshold"] == 0
    assert decoder.seen[-1][1]["cache_hit_threshold"] == 0
    assert len(decoder.seen) == 3  # tried, then decoded after the prefill


async def test_sglang_sends_one_tagged_body_to_prefiller_and_decoder(
    sidecar: Start, upstreams: Callable[..., Awaitable[Upstream]]
) -> None:
    decoder, prefiller = await upstreams("decoder"), await upstreams("prefiller")
    running = await sidecar(decoder.port, connector="sglang", sglang_bootstrap_port=9100)
    request = {"model": "m", "prompt": "p", "max_tokens": 7, "stream": True}
    status, body, headers = await post(
        running.ports[0],
        request,
        {"x-prefiller-host-port": f"127.0.0.1:{prefiller.port}", "x-request-id": "r1"},
    )
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream"
    assert body.endswith(b"data: [DONE]\n\n")  # the decoder's stream is the answer
    for _ in range(200):  # the prefill runs in the background: bounded wait (~2 s)
        if prefiller.seen:
            break
        await asyncio.sleep(0.01)
    [(path, prefilled, ids)] = prefiller.seen
    [(decode_path, decoded, decode_ids)] = decoder.seen
    assert path == decode_path == "/v1/completions"
    assert prefilled == decoded  # one body for both engines, the request kept whole
    room = decoded.pop("bootstrap_room")
    assert isinstance(room, int) and room > 0
    assert decoded == {**request, "bootstrap_host": "127.0.0.1", "bootstrap_port": 9100}
    assert ids == decode_ids == ["r1"]  # the client's headers go to both


async def test_sglang_answer_is_the_decoders_even_when_prefill_fails(
    sidecar: Start, upstreams: Callable[..., Awaitable[Upstream]]
) -> None:
    decoder = await upstreams("decoder")
    running = await sidecar(decoder.port, connector="sglang")
    closed = free_ports(1)
    status, body, _ = await post(
        running.ports[0],
        {"model": "m", "prompt": "p"},
        {"x-prefiller-host-port": f"127.0.0.1:{closed}"},
    )
    assert status == 200 and orjson.loads(body)["served_by"] == "decoder"
    status, body = await post_raw(running.ports[0], b"{not json", f"127.0.0.1:{closed}")
    assert status == 400 and orjson.loads(body)["type"] == "BadRequestError"
    assert len(decoder.seen) == 1


async def post_raw(port: int, data: bytes, prefiller: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s:
        url = f"http://127.0.0.1:{port}/v1/completions"
        headers = {"x-prefiller-host-port": prefiller, "content-type": "application/json"}
        async with s.post(url, data=data, headers=headers) as r:
            return r.status, await r.read()


async def test_secure_proxy_serves_a_self_signed_sidecar_certificate(
    upstreams: Callable[..., Awaitable[Upstream]],
) -> None:
    decoder = await upstreams("decoder")
    options = replace(
        SidecarOptions(), port=free_ports(1), vllm_port=decoder.port, bind_address="127.0.0.1"
    )
    running = await start_sidecar(options)
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        async with aiohttp.ClientSession() as s:
            url = f"https://127.0.0.1:{options.port}/health"
            async with s.get(url, ssl=ctx) as r:
                assert r.status == 200
        pem = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", options.port))
        subject = x509.load_pem_x509_certificate(pem.encode()).subject
        org = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        assert org == "llm-d Routing Sidecar"
    finally:
        await running.close()
