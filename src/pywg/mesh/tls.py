"""TLS for the mesh's servers: a certificate they make themselves, and the pin that checks it.

A self-hosted coordinator (or relay) rarely has a certificate from a public
CA, and a node must not trust whatever answers on first contact. So the
server makes its own certificate once (ECDSA P-256, RFC 5480; ten years;
kept in its state directory, the key file 0600) and the *pin*, the SHA-256
of the certificate's DER encoding, travels with the join token
(`pywg.mesh.auth`). A node that has a pin accepts exactly that certificate,
whatever its names or issuer (aiohttp's `Fingerprint` check; the hash of the
whole certificate, as aiohttp compares it); without a pin it checks the
certificate against the system's CAs, as any HTTPS client would (a server
run with a CA-issued `--tls-cert`).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..system.secretfile import write_secret_file

CERT_FILE: Final = "tls.crt"
KEY_FILE: Final = "tls.key"
PIN_SIZE: Final = 32  # SHA-256
VALIDITY: Final = datetime.timedelta(days=3650)


class TlsError(ValueError):
    """A certificate or pin that cannot be used; str() says why."""


@dataclass(frozen=True, slots=True)
class Certificate:
    """A server certificate on disk and its pin."""

    cert_path: str
    key_path: str
    pin: bytes  # SHA-256 of the DER certificate

    def server_context(self) -> ssl.SSLContext:
        """An SSL context that serves this certificate (TLS 1.2 and up)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_path, self.key_path)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"cannot load {self.cert_path} / {self.key_path}: {exc}") from None
        return context


def format_pin(pin: bytes) -> str:
    """A pin as it is written in tokens: base64url without padding (43 characters)."""
    return base64.urlsafe_b64encode(pin).decode("ascii").rstrip("=")


def parse_pin(text: str) -> bytes:
    """The pin a token carries; TlsError if `text` is not one."""
    if len(text) != 43:
        raise TlsError("a certificate pin is 43 base64url characters")
    try:
        pin = base64.urlsafe_b64decode(text + "=")
    except (binascii.Error, ValueError):
        raise TlsError("a certificate pin is 43 base64url characters") from None
    if len(pin) != PIN_SIZE or format_pin(pin) != text:
        raise TlsError("a certificate pin is 43 base64url characters")
    return pin


def der_pin(der: bytes) -> bytes:
    """The pin of a DER certificate: its SHA-256 (what aiohttp's Fingerprint compares,
    and RFC 5929's tls-server-end-point binding with SHA-256)."""
    return hashlib.sha256(der).digest()


def pin_of(pem: bytes) -> bytes:
    """The pin of a PEM certificate: SHA-256 of its DER encoding."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise TlsError(f"not a PEM certificate: {exc}") from None
    return der_pin(cert.public_bytes(serialization.Encoding.DER))


def load(cert_path: str, key_path: str) -> Certificate:
    """A certificate from files (for instance one a public CA issued)."""
    try:
        with open(cert_path, "rb") as f:
            pem = f.read()
    except OSError as exc:
        raise TlsError(f"cannot read {cert_path}: {exc.strerror}") from None
    return Certificate(cert_path, key_path, pin_of(pem))


def self_made(directory: str) -> Certificate | None:
    """The certificate made in `directory` by `load_or_make`, if there is one."""
    cert_path = os.path.join(directory, CERT_FILE)
    if not os.path.exists(cert_path):
        return None
    return load(cert_path, os.path.join(directory, KEY_FILE))


def load_or_make(directory: str, names: Sequence[str] = ()) -> Certificate:
    """The server's own certificate in `directory`, made on first use for `names`
    (host names or addresses, its subjectAltName; a pin does not depend on them)."""
    existing = self_made(directory)
    if existing is not None:
        return existing
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _build(key, names)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_path = os.path.join(directory, KEY_FILE)
    cert_path = os.path.join(directory, CERT_FILE)
    write_secret_file(key_path, key_pem.decode("ascii"))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    partial = cert_path + ".new"
    with open(partial, "wb") as f:  # public; written whole, then put in place
        f.write(cert_pem)
    os.replace(partial, cert_path)
    return Certificate(cert_path, key_path, pin_of(cert_pem))


def _build(key: ec.EllipticCurvePrivateKey, names: Sequence[str]) -> x509.Certificate:
    """A self-signed certificate for `key`, valid for VALIDITY from an hour ago."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pywg mesh server")])
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(key, hashes.SHA256())


def dialer_context() -> ssl.SSLContext:
    """A context for dialing a relay (a node, or another relay): TLS 1.2 and up, ALPN
    http/1.1, no CA check: the relay's signed OK, over the certificate's SHA-256, or a
    pin authenticates it (docs/relay.md, "TLS")."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context
