"""Exceptions. Remote (network) errors never escape Device.receive_datagram."""

from __future__ import annotations


class WireGuardError(Exception):
    """Base class of every pywg exception."""


class LocalProtocolError(WireGuardError):
    """The caller misused the API (wrong argument, unknown peer, ...)."""


class RemoteProtocolError(WireGuardError):
    """Bytes from the network are malformed or fail authentication.

    Raised inside the core by parsers and handshake code; the Device catches
    it, drops the datagram and counts it.
    """


class DecryptionError(RemoteProtocolError):
    """An AEAD tag did not verify."""
