"""TLS of the ext_proc port (spec §11): the generated certificate and hot reload.

Without `--cert-path` the server presents a certificate made at start-up like
upstream's (RSA 4096, organisation `Inference Ext`, ten years, no SANs). With
`--enable-cert-reload` the files are polled on the clock every 250 ms (see
`core.tls.CertFiles` for why polling, not inotify) and handed to grpc's own
reload hook, `grpc.dynamic_ssl_server_credentials`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

import grpc
from cryptography.exceptions import UnsupportedAlgorithm

from pyllmd.core.clock import Clock
from pyllmd.core.errors import ConfigError
from pyllmd.core.gosyntax import printable
from pyllmd.core.tls import CertFiles, load_pair, self_signed_pem

__all__ = [
    "CERT_POLL_INTERVAL",
    "EPP_CERT_ORGANISATION",
    "CertReloader",
    "check_cert_dir",
    "self_signed_pair",
    "server_credentials",
]

log = logging.getLogger(__name__)

EPP_CERT_ORGANISATION = "Inference Ext"
CERT_POLL_INTERVAL = 0.25  # upstream debounces its file-watch reloads by 250 ms


def self_signed_pair() -> tuple[bytes, bytes]:
    """Upstream's generated certificate (§11): RSA 4096, O=Inference Ext, 10 years, no SANs."""
    return self_signed_pem(key_kind="rsa", organisation=EPP_CERT_ORGANISATION, days=3650, ca=False)


def _certificate(pair: tuple[bytes, bytes]) -> grpc.ServerCertificateConfiguration:
    cert, key = pair
    return grpc.ssl_server_certificate_configuration([(key, cert)])


class CertReloader:
    """`--enable-cert-reload`: grpc's own certificate fetcher fed from polled files.

    grpc calls the fetcher (from its own threads) at every new handshake; it
    hands over a changed certificate once, and None (no change) otherwise, so
    established connections keep theirs and new handshakes use the new one.
    """

    def __init__(self, cert_path: Path) -> None:
        self.files = CertFiles(cert_path / "tls.crt", cert_path / "tls.key")
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._lock = threading.Lock()

    def credentials(self) -> grpc.ServerCredentials:
        # grpc documents None as "no change"; its type stubs omit it
        fetch = cast(Callable[[], grpc.ServerCertificateConfiguration], self._fetch)
        return grpc.dynamic_ssl_server_credentials(_certificate(self.files.pair), fetch)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def poll(self) -> bool:
        """Stage a changed certificate for the next handshake; True when one was staged."""
        pair = self.files.poll()
        if pair is None:
            return False
        with self._lock:
            self._pending = _certificate(pair)
        log.info("reloaded the ext_proc certificate from %s", self.files.cert_file.parent)
        return True

    async def run(self, clock: Clock, interval: float = CERT_POLL_INTERVAL) -> None:
        """Poll every `interval` until cancelled."""
        while True:
            await clock.sleep(interval)
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - keep serving the current certificate
                log.exception("certificate reload failed")


def check_cert_dir(cert_path: Path) -> None:
    """`--cert-path` must hold a matching `tls.crt`/`tls.key` pair; ConfigError (one line)."""
    try:
        load_pair(cert_path / "tls.crt", cert_path / "tls.key")
    except OSError as err:
        reason = (err.strerror or str(err)).lower()
        raise ConfigError(f"--cert-path: open {printable(str(err.filename))}: {reason}") from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        reason = " ".join(str(err).split())
        shown = printable(str(cert_path))
        raise ConfigError(
            f"--cert-path: {shown}: tls.crt and tls.key are not a PEM certificate "
            f"and its unencrypted key: {reason}"
        ) from None


def server_credentials(cert_path: Path | None) -> grpc.ServerCredentials:
    """TLS from `<cert_path>/tls.crt` + `tls.key`, or a fresh self-signed certificate (§11)."""
    if cert_path is None:
        pair = self_signed_pair()
    else:
        pair = load_pair(cert_path / "tls.crt", cert_path / "tls.key")
    return grpc.ssl_server_credentials([(pair[1], pair[0])])
