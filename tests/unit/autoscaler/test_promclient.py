"""The Prometheus client against an HTTP server that answers like Prometheus."""

from __future__ import annotations

import asyncio
import math
import random
import ssl
from pathlib import Path

import pytest

from pyllmd.autoscaler.collect.prometheus import PrometheusClient, PrometheusOptions
from pyllmd.autoscaler.collect.queries import PrometheusError, VectorSample
from tests.tlsutil import write_self_signed
from tests.unit.autoscaler.promfake import (
    EVAL_TIME,
    RecordingClock,
    Reply,
    api_error,
    serve_prometheus,
    vector,
)


def client_for(url: str, clock: RecordingClock | None = None, **opts: object) -> PrometheusClient:
    return PrometheusClient(
        PrometheusOptions(base_url=url, **opts),  # type: ignore[arg-type]
        clock=clock or RecordingClock(),
        rng=random.Random(7),
    )


async def test_vector_query_is_posted_as_a_form_at_the_clock_time() -> None:
    def handler(promql: str) -> Reply:
        return vector(({"pod": "a"}, "0.5"), ({"pod": "b"}, 2))

    async with serve_prometheus(handler) as prom, client_for(prom.url) as client:
        samples = await client.query('up{job="x"}')
    assert samples == [
        VectorSample({"pod": "a"}, 0.5, EVAL_TIME),
        VectorSample({"pod": "b"}, 2.0, EVAL_TIME),
    ]
    (req,) = prom.requests
    assert (req.method, req.path) == ("POST", "/api/v1/query")
    assert req.form == {"query": 'up{job="x"}', "time": "1700000000.000"}
    assert "Authorization" not in req.headers


async def test_scalar_and_matrix_results_and_non_finite_values() -> None:
    answers: dict[str, Reply] = {
        "scalar": (
            200,
            {"status": "success", "data": {"resultType": "scalar", "result": [12.5, "3"]}},
        ),
        "matrix": (
            200,
            {
                "status": "success",
                "data": {
                    "resultType": "matrix",
                    "result": [
                        {"metric": {"pod": "a"}, "values": [[10, "1"], [20, "7"]]},
                        {"metric": {"pod": "empty"}, "values": []},
                    ],
                },
            },
        ),
        "nonfinite": vector(({"v": "nan"}, "NaN"), ({"v": "inf"}, "+Inf"), ({"v": "-inf"}, "-Inf")),
    }
    async with serve_prometheus(lambda q: answers[q]) as prom, client_for(prom.url) as client:
        assert await client.query("scalar") == [VectorSample({}, 3.0, 12.5)]
        assert await client.query("matrix") == [VectorSample({"pod": "a"}, 7.0, 20.0)]
        values = [s.value for s in await client.query("nonfinite")]
    assert values == [0.0, 0.0, 0.0]
    assert all(math.isfinite(v) for v in values)


async def test_api_error_keeps_error_type_and_is_not_retried() -> None:
    clock = RecordingClock()
    reply = api_error(400, "bad_data", 'parse error: unexpected "}"')
    async with serve_prometheus(lambda q: reply) as prom, client_for(prom.url, clock) as client:
        with pytest.raises(PrometheusError) as info:
            await client.query("sum(")
    err = info.value
    assert (err.kind, err.status, err.error_type) == ("api", 400, "bad_data")
    assert err.error == 'parse error: unexpected "}"'
    assert len(prom.requests) == 1 and clock.sleeps == []


async def test_server_errors_are_retried_five_times_with_jittered_doubling_backoff() -> None:
    clock = RecordingClock()
    reply = api_error(503, "timeout", "query timed out in expression evaluation")
    async with serve_prometheus(lambda q: reply) as prom, client_for(prom.url, clock) as client:
        with pytest.raises(PrometheusError) as info:
            await client.query("up")
    assert info.value.error_type == "timeout"
    assert len(prom.requests) == 5
    assert len(clock.sleeps) == 4
    for slept, base in zip(clock.sleeps, (0.5, 1.0, 2.0, 4.0), strict=True):
        assert base <= slept <= base * 1.1


async def test_a_transient_failure_then_success_returns_the_data() -> None:
    calls: list[str] = []

    def handler(promql: str) -> Reply:
        calls.append(promql)
        return (502, b"bad gateway") if len(calls) < 3 else vector(({}, 1))

    clock = RecordingClock()
    async with serve_prometheus(handler) as prom, client_for(prom.url, clock) as client:
        assert await client.query("up") == [VectorSample({}, 1.0, EVAL_TIME)]
    assert len(calls) == 3 and len(clock.sleeps) == 2


async def test_non_json_answer_is_an_http_error_with_its_status() -> None:
    async with (
        serve_prometheus(lambda q: (502, b"<html>bad gateway</html>")) as prom,
        client_for(prom.url, retry_steps=1) as client,
    ):
        with pytest.raises(PrometheusError) as info:
            await client.query("up")
    assert (info.value.kind, info.value.status) == ("http", 502)


async def test_unreachable_server_is_a_connection_error_after_retries() -> None:
    async with serve_prometheus(lambda q: vector()) as prom:
        url = prom.url  # closed when the block ends: nothing listens there any more
    clock = RecordingClock()
    async with client_for(url, clock) as client:
        with pytest.raises(PrometheusError) as info:
            await client.query("up")
    assert info.value.kind == "connection"
    assert len(clock.sleeps) == 4


async def test_slow_answer_times_out() -> None:
    release = asyncio.Event()

    async def slow(promql: str) -> Reply:
        await release.wait()
        return vector()

    async with (
        serve_prometheus(slow) as prom,
        client_for(prom.url, query_timeout=0.2, retry_steps=1) as client,
    ):
        with pytest.raises(PrometheusError) as info:
            await client.query("up")
        release.set()
    assert info.value.kind == "connection"
    assert "timed out" in str(info.value)


async def test_bearer_token_is_sent_and_a_wrong_one_is_refused() -> None:
    async with serve_prometheus(lambda q: vector(), token="s3cret") as prom:
        async with client_for(prom.url, bearer_token="s3cret") as client:
            assert await client.query("up") == []
        async with client_for(prom.url, bearer_token="wrong", retry_steps=1) as client:
            with pytest.raises(PrometheusError) as info:
                await client.query("up")
    assert (info.value.kind, info.value.status) == ("http", 401)
    assert prom.requests[0].headers["Authorization"] == "Bearer s3cret"


async def test_token_file_is_trimmed_re_read_and_loses_to_an_explicit_token(
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    async with serve_prometheus(lambda q: vector()) as prom:
        async with client_for(prom.url, token_path=str(token_file)) as client:
            await client.query("up")
            token_file.write_text("rotated\n")
            await client.query("up")
        async with client_for(prom.url, token_path=str(token_file), bearer_token="env") as client:
            await client.query("up")
    sent = [r.headers["Authorization"] for r in prom.requests]
    assert sent == ["Bearer from-file", "Bearer rotated", "Bearer env"]


async def test_validate_connectivity_runs_up_once() -> None:
    clock = RecordingClock()
    async with serve_prometheus(lambda q: (503, b"starting")) as prom:
        async with client_for(prom.url, clock) as client:
            with pytest.raises(PrometheusError):
                await client.validate_connectivity()
    assert prom.queries == ["up"] and clock.sleeps == []


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    return ctx


async def test_https_with_the_ca_file_verifies_the_server(tmp_path: Path) -> None:
    cert, key = write_self_signed(tmp_path)
    async with serve_prometheus(
        lambda q: vector(({}, 1)), ssl_context=server_context(cert, key)
    ) as prom:
        assert prom.url.startswith("https://127.0.0.1:")
        async with client_for(prom.url, ca_cert_path=str(cert)) as client:
            assert [s.value for s in await client.query("up")] == [1.0]
        async with client_for(prom.url, retry_steps=1) as client:  # system CAs only
            with pytest.raises(PrometheusError) as info:
                await client.query("up")
        async with client_for(prom.url, insecure_skip_verify=True) as client:
            assert [s.value for s in await client.query("up")] == [1.0]
    assert info.value.kind == "connection"
    assert "certificate" in str(info.value).lower()


async def test_server_name_is_the_name_checked_against_the_certificate(tmp_path: Path) -> None:
    cert, key = write_self_signed(tmp_path, ips=(), dns_names=("prometheus.monitoring.svc",))
    ctx = server_context(cert, key)
    async with serve_prometheus(lambda q: vector(({}, 1)), ssl_context=ctx) as prom:
        async with client_for(prom.url, ca_cert_path=str(cert), retry_steps=1) as client:
            with pytest.raises(PrometheusError):  # certificate is not for 127.0.0.1
                await client.query("up")
        async with client_for(
            prom.url, ca_cert_path=str(cert), server_name="prometheus.monitoring.svc"
        ) as client:
            assert [s.value for s in await client.query("up")] == [1.0]


async def test_client_certificate_for_mutual_tls(tmp_path: Path) -> None:
    cert, key = write_self_signed(tmp_path)
    client_cert, client_key = write_self_signed(tmp_path, stem="client", ips=(), dns_names=("wva",))
    ctx = server_context(cert, key, client_ca=client_cert)
    async with serve_prometheus(lambda q: vector(({}, 1)), ssl_context=ctx) as prom:
        async with client_for(prom.url, ca_cert_path=str(cert), retry_steps=1) as client:
            with pytest.raises(PrometheusError):
                await client.query("up")
        async with client_for(
            prom.url,
            ca_cert_path=str(cert),
            client_cert_path=str(client_cert),
            client_key_path=str(client_key),
        ) as client:
            assert [s.value for s in await client.query("up")] == [1.0]


def test_tls_floor_is_1_2(tmp_path: Path) -> None:
    from pyllmd.autoscaler.collect.prometheus import ssl_context

    ctx = ssl_context(PrometheusOptions(base_url="https://p:9090"))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
