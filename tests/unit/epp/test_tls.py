"""TLS of the ext_proc port (spec §11, acceptance check 64) and the certificate helpers."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from pyllmd.core.clock import RealClock, VirtualClock
from pyllmd.core.tls import CertFiles, self_signed_pem, write_self_signed
from pyllmd.epp.extproc.contracts import StaticEndpoints
from pyllmd.epp.extproc.servicer import ExtProcServicer, serve_epp
from pyllmd.epp.extproc.tls import CertReloader
from pyllmd.epp.scheduling.types import LLMRequest, SchedulingResult


class NoScheduler:
    def schedule(self, request: LLMRequest, candidates: object) -> SchedulingResult:
        raise AssertionError("not called")


def servicer(clock: RealClock | VirtualClock | None = None) -> ExtProcServicer:
    return ExtProcServicer(NoScheduler(), StaticEndpoints(()), clock=clock, rng=random.Random(0))


async def served_certificate(port: int) -> x509.Certificate:
    """The certificate the server presents in a fresh TLS handshake (no verification)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    assert der is not None
    return x509.load_der_x509_certificate(der)


def install(directory: Path, stem: str) -> x509.Certificate:
    """Replace `tls.crt`/`tls.key` atomically (as a Secret volume update does)."""
    work = directory / "work"
    work.mkdir(exist_ok=True)
    cert, key = write_self_signed(work, stem, days=1)
    os.replace(key, directory / "tls.key")
    os.replace(cert, directory / "tls.crt")
    return x509.load_pem_x509_certificate((directory / "tls.crt").read_bytes())


async def test_epp_acc_64_default_certificate_is_inference_ext() -> None:
    server, port = await serve_epp(servicer(), 0, host="127.0.0.1")
    try:
        cert = await served_certificate(port)
    finally:
        await server.stop(None)
    organisation = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [a.value for a in organisation] == ["Inference Ext"]
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 4096
    assert cert.not_valid_after_utc - cert.not_valid_before_utc >= dt.timedelta(days=3650)
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


async def test_epp_acc_64_replaced_files_are_served_to_new_handshakes(tmp_path: Path) -> None:
    first = install(tmp_path, "first")
    server, port = await serve_epp(
        servicer(RealClock()), 0, host="127.0.0.1", cert_path=tmp_path, cert_reload=True
    )
    try:
        assert (await served_certificate(port)).serial_number == first.serial_number
        second = install(tmp_path, "second")
        served = first
        for _ in range(40):  # bounded: 40 × 50 ms, the reload polls every 250 ms
            await asyncio.sleep(0.05)
            served = await served_certificate(port)
            if served.serial_number != first.serial_number:
                break
        assert served.serial_number == second.serial_number
    finally:
        await server.stop(None)
    for _ in range(100):  # the polling task ends with the server
        if not [t for t in asyncio.all_tasks() if t.get_name().startswith("ext_proc cert")]:
            break
        await asyncio.sleep(0)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("ext_proc cert")]


async def test_static_cert_path_is_served_without_reload(tmp_path: Path) -> None:
    first = install(tmp_path, "only")
    server, port = await serve_epp(servicer(), 0, host="127.0.0.1", cert_path=tmp_path)
    try:
        assert (await served_certificate(port)).serial_number == first.serial_number
    finally:
        await server.stop(None)


def test_reloader_hands_a_changed_certificate_over_once(tmp_path: Path) -> None:
    install(tmp_path, "a")
    reloader = CertReloader(tmp_path)
    reloader.credentials()
    assert reloader._fetch() is None and reloader.poll() is False
    install(tmp_path, "b")
    assert reloader.poll() is True
    assert reloader._fetch() is not None
    assert reloader._fetch() is None  # no change until the files change again


def test_cert_files_skip_mismatched_and_missing_pairs(tmp_path: Path) -> None:
    install(tmp_path, "a")
    files = CertFiles(tmp_path / "tls.crt", tmp_path / "tls.key")
    original = files.pair
    assert files.poll() is None
    new_cert, _ = write_self_signed(tmp_path / "work", "b", days=1)
    os.replace(new_cert, tmp_path / "tls.crt")  # key not replaced yet: keep the old pair
    assert files.poll() is None and files.pair == original
    os.replace(tmp_path / "work" / "b.key", tmp_path / "tls.key")
    assert files.poll() is not None and files.pair != original
    (tmp_path / "tls.key").unlink()
    assert files.poll() is None
    (tmp_path / "tls.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\ntrunc")
    assert files.poll() is None


async def test_reload_loop_polls_on_the_clock(tmp_path: Path) -> None:
    install(tmp_path, "a")
    clock, reloader = VirtualClock(), CertReloader(tmp_path)
    task = asyncio.get_running_loop().create_task(reloader.run(clock))
    try:
        await clock.advance(0.25)
        install(tmp_path, "b")
        assert reloader._fetch() is None
        await clock.advance(0.2)
        assert reloader._fetch() is None  # not polled yet
        await clock.advance(0.05)
        assert reloader._fetch() is not None
    finally:
        task.cancel()


def test_write_self_signed_keeps_its_ec_ca_shape(tmp_path: Path) -> None:
    cert_path, key_path = write_self_signed(tmp_path, "svc")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.subject.rfc4514_string() == "CN=pyllmd svc"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert key_path.stat().st_mode & 0o777 == 0o600


def test_self_signed_pem_leaf_without_sans() -> None:
    cert_pem, key_pem = self_signed_pem(organisation="Org", ca=False, days=2)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.subject.rfc4514_string() == "O=Org" and b"PRIVATE KEY" in key_pem
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usage
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
