"""TLS for the relay's TCP port: the server's context, and the dialer's context.

The relay's certificate comes from files (a CA's, for its host name) or is
made once in the state directory and kept (`pywg.mesh.tls`, as the
coordinator's), so its SHA-256, which clients may pin, stays the same
across restarts. Either way the hellos sign that SHA-256
(`relayproto.certificate_binding`), and the relay's signed OK authenticates
it to clients, so a dialing relay needs no certificate verification
(docs/relay.md, "Signatures").
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from .. import tls
from ..relayproto import certificate_binding


@dataclass(frozen=True, slots=True)
class ServerTls:
    context: ssl.SSLContext
    binding: bytes  # SHA-256 of the certificate (DER): what clients pin and hellos sign

    @property
    def fingerprint(self) -> str:
        return self.binding.hex()


def server_tls(certificate: tls.Certificate) -> ServerTls:
    """The relay's TLS with `certificate` (`pywg.mesh.tls.load` or `load_or_make`); TlsError
    if it cannot be used."""
    context = certificate.server_context()
    context.set_alpn_protocols(["http/1.1"])  # what an HTTPS server offers
    return ServerTls(context, certificate.pin)


def peer_binding(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bytes:
    """The binding of the certificate a TLS connection's server showed; ValueError if none."""
    der = None if ssl_object is None else ssl_object.getpeercert(binary_form=True)
    if not der:
        raise ValueError("the TLS connection shows no server certificate")
    return certificate_binding(der)
