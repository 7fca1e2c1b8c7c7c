"""The simulator's TLS setup (spec §10.1): upstream's generated certificate, given files,
one-line errors, TLS 1.2 as the minimum; and an HTTPS request to the in-process app."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import openai
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pyllmd.core.clock import SteppingClock
from pyllmd.core.tls import write_self_signed
from pyllmd.core.tokenize import SimpleTokenizer
from pyllmd.sim.config import load_config
from pyllmd.sim.run import RUNNER_OPTIONS, build_app
from pyllmd.sim.server.tls import (
    SIM_CERT_ORGANISATION,
    TLSSetupError,
    context_from_files,
    self_signed_pair,
    server_ssl_context,
)


def test_generated_certificate_is_upstreams() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert_pem, _ = self_signed_pair(now)
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 4096
    org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [a.value for a in org] == [SIM_CERT_ORGANISATION] == ["llm-d Inference Simulator"]
    assert cert.not_valid_after_utc - now == dt.timedelta(days=3650)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_flags_choose_the_context(tmp_path: Path) -> None:
    cert, key = write_self_signed(tmp_path)
    plain = load_config(["--model", "m"], {}, 0).config
    assert server_ssl_context(plain) is None
    files = ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    ctx = server_ssl_context(load_config(["--model", "m", *files], {}, 0).config)
    assert ctx is not None and ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    names = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names and all(n.startswith("ECDHE-") for n in names)
    assert all("GCM" in n or "CHACHA20" in n for n in names)


def test_unusable_files_give_one_line(tmp_path: Path) -> None:
    cert, key = write_self_signed(tmp_path, "a")
    other_cert, _ = write_self_signed(tmp_path, "b")
    with pytest.raises(TLSSetupError) as missing:
        context_from_files(str(tmp_path / "none.crt"), str(key))
    assert "none.crt" in str(missing.value)
    with pytest.raises(TLSSetupError) as mismatch:
        context_from_files(str(other_cert), str(key))
    (tmp_path / "junk.crt").write_text("not a certificate")
    with pytest.raises(TLSSetupError) as junk:
        context_from_files(str(tmp_path / "junk.crt"), str(key))
    for err in (missing, mismatch, junk):
        assert "\n" not in str(err.value)
    assert context_from_files(str(cert), str(key)) is not None


async def test_https_with_the_openai_client(tmp_path: Path) -> None:
    import httpx2

    cert, key = write_self_signed(tmp_path)
    cfg = load_config(["--model", "m", "--mode", "echo"], {}, 0).config
    runner = web.AppRunner(
        build_app(cfg, cfg.port, SteppingClock(), SimpleTokenizer()), **RUNNER_OPTIONS
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context_from_files(str(cert), str(key)))
    await site.start()
    port = runner.addresses[0][1]
    trust = ssl.create_default_context(cafile=str(cert))
    client = openai.AsyncOpenAI(
        base_url=f"https://127.0.0.1:{port}/v1",
        api_key="x",
        max_retries=0,
        http_client=httpx2.AsyncClient(verify=trust),
    )
    try:
        done = await client.completions.create(model="m", prompt="Hello, world!")
        assert done.choices[0].text == "Hello, world!"
        url = f"http://127.0.0.1:{port}/v1"
        plain = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
        with pytest.raises(openai.APIConnectionError):
            await plain.models.list()
        await plain.close()
    finally:
        await client.close()
        await runner.cleanup()
