"""Self-signed certificates for loopback TLS (the local stack, tests) and servers without one.

The `cryptography` package builds them; nothing here reads the clock unless no
`now` is given (callers in decision code must pass one). `write_self_signed`
keeps its original shape (EC P-256, its own CA, loopback SANs);
`self_signed_pem` is the general builder, e.g. the EPP's upstream-like RSA 4096
certificate with organisation `Inference Ext` and no SANs.

`CertFiles` notices replaced certificate files by polling their stat signature
rather than through inotify: no extra dependency, it works on every platform,
and a Kubernetes Secret volume update (an atomic swap of the `..data` symlink,
which a watch on the file itself misses) shows up as a new inode of the path.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyKind = Literal["ec", "rsa"]


def self_signed_pem(
    *,
    key_kind: KeyKind = "ec",
    rsa_bits: int = 4096,
    common_name: str | None = None,
    organisation: str | None = None,
    ips: Sequence[str] = (),
    dns_names: Sequence[str] = (),
    days: int = 365,
    ca: bool = True,
    now: dt.datetime | None = None,
) -> tuple[bytes, bytes]:
    """A self-signed certificate and its PKCS#8 key, both PEM: `(cert, key)`.

    No SAN extension is written when `ips` and `dns_names` are empty (an empty
    one is invalid). A non-CA certificate is marked for server authentication.
    """
    now = now or dt.datetime.now(dt.UTC)
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if key_kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    attributes = []
    if organisation is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    if common_name is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    name = x509.Name(attributes)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    sans += [x509.DNSName(d) for d in dns_names]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if not ca:
        usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=key_kind == "rsa",
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        )
        builder = builder.add_extension(usage, critical=True).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_self_signed(
    directory: Path,
    stem: str = "server",
    ips: Sequence[str] = ("127.0.0.1",),
    dns_names: Sequence[str] = ("localhost",),
    days: int = 365,
    now: dt.datetime | None = None,
) -> tuple[Path, Path]:
    """Write `<stem>.crt` (EC, its own CA) and `<stem>.key` (PEM, 0600); returns their paths."""
    cert_pem, key_pem = self_signed_pem(
        common_name=f"pyllmd {stem}", ips=ips, dns_names=dns_names, days=days, now=now
    )
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    key_path.chmod(0o600)
    return cert_path, key_path


def load_pair(cert_file: Path, key_file: Path) -> tuple[bytes, bytes]:
    """`(cert, key)` PEM bytes; ValueError unless both parse and the key matches the cert."""
    cert_pem, key_pem = cert_file.read_bytes(), key_file.read_bytes()
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = load_pem_private_key(key_pem, password=None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) != key.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise ValueError(f"{key_file} does not belong to {cert_file}")
    return cert_pem, key_pem


_Signature = tuple[tuple[int, int, int], tuple[int, int, int]]


class CertFiles:
    """A certificate/key file pair, re-read when either file changes (see the module docstring).

    `poll()` is cheap (two `stat` calls). A change is adopted only once the pair
    parses and matches, so a half-written or half-replaced pair is skipped and
    retried at the next poll instead of breaking handshakes.
    """

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self._seen = self._signature()
        self.pair = load_pair(cert_file, key_file)

    def _signature(self) -> _Signature | None:
        try:
            a, b = self.cert_file.stat(), self.key_file.stat()
        except OSError:
            return None
        return (a.st_mtime_ns, a.st_size, a.st_ino), (b.st_mtime_ns, b.st_size, b.st_ino)

    def poll(self) -> tuple[bytes, bytes] | None:
        """The new `(cert, key)` when the files changed into a valid pair, else None."""
        signature = self._signature()
        if signature is None or signature == self._seen:
            return None
        try:
            pair = load_pair(self.cert_file, self.key_file)
        except (OSError, ValueError, TypeError, UnsupportedAlgorithm):
            return None
        self._seen = signature
        if pair == self.pair:
            return None
        self.pair = pair
        return pair
