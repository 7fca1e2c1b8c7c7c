"""HTTPS for the simulator's port (spec §10.1): given files or a generated certificate.

`--ssl-certfile`/`--ssl-keyfile` (PEM) or `--self-signed-certs` turn the port into
HTTPS only. The generated certificate is upstream's: RSA 4096, organisation
`llm-d Inference Simulator`, valid ten years, server authentication, no SANs.
TLS 1.2 is the minimum; TLS 1.2 suites are limited to ECDHE with AES-GCM or
ChaCha20 (TLS 1.3 suites are all of that kind already).

Python's `ssl` loads keys only from files, so a generated pair goes through a
private temporary directory that is removed right after loading. Its SHA-256
fingerprint is logged (upstream logs nothing) so a client can pin it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from pyllmd.core.tls import load_pair, self_signed_pem
from pyllmd.sim.config import SimConfig

log = logging.getLogger(__name__)

SIM_CERT_ORGANISATION = "llm-d Inference Simulator"
CERT_DAYS = 3650
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class TLSSetupError(Exception):
    """The certificate or key could not be used; the message is one line."""


def self_signed_pair(now: dt.datetime | None = None) -> tuple[bytes, bytes]:
    """Upstream's generated certificate and key, PEM: `(cert, key)`."""
    return self_signed_pem(
        key_kind="rsa", organisation=SIM_CERT_ORGANISATION, days=CERT_DAYS, ca=False, now=now
    )


def _context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    return ctx


def context_from_files(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server context for a PEM certificate (chain) and its key; TLSSetupError if unusable."""
    try:
        load_pair(Path(certfile), Path(keyfile))  # clear errors: unreadable, unparsable, mismatch
        ctx = _context()
        ctx.load_cert_chain(certfile, keyfile)
    except OSError as e:
        flag = "--ssl-keyfile" if e.filename == keyfile != certfile else "--ssl-certfile"
        raise TLSSetupError(
            f"{flag}: cannot read {e.filename or certfile}: {e.strerror or e}"
        ) from None
    except (ValueError, TypeError, UnsupportedAlgorithm, ssl.SSLError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TLSSetupError(
            f"--ssl-certfile, --ssl-keyfile: invalid TLS certificate {certfile} or key "
            f"{keyfile}: {reason}"
        ) from None
    return ctx


def context_from_pem(cert: bytes, key: bytes) -> ssl.SSLContext:
    """A server context for an in-memory PEM pair (written to a private temp dir to load)."""
    with tempfile.TemporaryDirectory(prefix="pyllmd-sim-tls-") as tmp:
        cert_path, key_path = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        key_path.touch(mode=0o600)
        key_path.write_bytes(key)
        cert_path.write_bytes(cert)
        return context_from_files(str(cert_path), str(key_path))


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the DER certificate, as colon-separated hex."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def server_ssl_context(cfg: SimConfig) -> ssl.SSLContext | None:
    """The port's TLS context from the flags; None for plain HTTP."""
    if cfg.ssl_certfile or cfg.ssl_keyfile:
        return context_from_files(cfg.ssl_certfile, cfg.ssl_keyfile)
    if not cfg.self_signed_certs:
        return None
    cert, key = self_signed_pair()
    log.info("tls: generated a self-signed certificate sha256=%s", fingerprint(cert))
    return context_from_pem(cert, key)
