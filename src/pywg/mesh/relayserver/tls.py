"""TLS for the relay's TCP port: the server's context and certificate, and the dialer's context.

The relay's certificate comes from files (a CA's, for its host name) or is
self-signed, made once in the state directory (ECDSA P-256, 10 years) and
kept, so its SHA-256 fingerprint, which clients may pin, stays the same
across restarts. Either way the hellos sign the SHA-256 of the certificate
(`relayproto.certificate_binding`), and the relay's signed OK authenticates
it to clients, so a dialing relay needs no certificate verification
(docs/relay.md, "Signatures").
"""

from __future__ import annotations

import datetime
import os
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ...system.secretfile import write_secret_file
from ..relayproto import certificate_binding

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
VALID_DAYS = 3650


@dataclass(frozen=True, slots=True)
class ServerTls:
    context: ssl.SSLContext
    binding: bytes  # SHA-256 of the certificate (DER): what clients pin and hellos sign

    @property
    def fingerprint(self) -> str:
        return self.binding.hex()


def server_tls(cert_file: str, key_file: str) -> ServerTls:
    """The relay's TLS from a PEM certificate chain (its own first) and key; OSError, ssl.SSLError
    or ValueError if they cannot be used."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["http/1.1"])  # what an HTTPS server offers
    with open(cert_file, encoding="ascii", errors="replace") as handle:
        text = handle.read()
    end = text.find(ssl.PEM_FOOTER)
    if end < 0:
        raise ValueError(f"{cert_file} holds no PEM certificate")
    der = ssl.PEM_cert_to_DER_cert(text[: end + len(ssl.PEM_FOOTER)])
    return ServerTls(context, certificate_binding(der))


def self_signed(state_dir: str, hostname: str) -> tuple[str, str]:
    """(certificate, key) files in `state_dir`: made there, self-signed for `hostname`, if
    missing; kept otherwise."""
    cert_path = os.path.join(state_dir, CERT_FILE)
    key_path = os.path.join(state_dir, KEY_FILE)
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_secret_file(key_path, key_pem.decode("ascii"))
    write_secret_file(cert_path, certificate.public_bytes(serialization.Encoding.PEM).decode())
    return cert_path, key_path


def client_context() -> ssl.SSLContext:
    """A dialer's context: TLS 1.2 or newer, no certificate verification (the relay's signed
    OK authenticates the relay, over the certificate's binding)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


def peer_binding(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bytes:
    """The binding of the certificate a TLS connection's server showed; ValueError if none."""
    der = None if ssl_object is None else ssl_object.getpeercert(binary_form=True)
    if not der:
        raise ValueError("the TLS connection shows no server certificate")
    return certificate_binding(der)
