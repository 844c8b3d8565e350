"""A device's status as the UAPI `get=1` answer reports it, parsed into dataclasses (sans-IO).

Theory of operation
-------------------
`parse_get` reads the answer to `get=1` (the cross-platform UAPI that
`pywg.uapi.get` renders and wireguard-go speaks: `key=value` lines, device
keys first, then one block per peer starting at `public_key=`, and the final
`errno=N`) into frozen dataclasses. Keys arrive in hex and are kept in base64,
the form people compare. The private key is read only to derive the public
key and is not kept; a preshared key is reduced to "there is one".

`pywg.cmd.show` renders these the way `wg show` does; `pywg.lab` reads
daemons' state through them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from .keys import PrivateKey, PublicKey

__all__ = ["InterfaceStatus", "PeerStatus", "parse_get"]

_DEVICE_KEYS: Final = frozenset({"private_key", "listen_port", "fwmark"})
_PEER_KEYS: Final = frozenset(
    {
        "preshared_key",
        "endpoint",
        "allowed_ip",
        "last_handshake_time_sec",
        "last_handshake_time_nsec",
        "rx_bytes",
        "tx_bytes",
        "persistent_keepalive_interval",
        "protocol_version",
    }
)


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """One peer as `get=1` reports it."""

    public_key: str  # base64
    preshared_key: bool = False  # whether one is set (never its value)
    endpoint: str | None = None  # as the UAPI writes it: 198.18.0.2:51820, [fd18::2]:51820
    allowed_ips: tuple[str, ...] = ()
    last_handshake: float | None = None  # unix time; None if never
    rx_bytes: int = 0
    tx_bytes: int = 0
    persistent_keepalive: int = 0  # seconds; 0 = off


@dataclass(frozen=True, slots=True)
class InterfaceStatus:
    """A device as `get=1` reports it (without its private key)."""

    name: str
    public_key: str | None = None  # base64, derived from the private key
    has_private_key: bool = False
    listen_port: int | None = None
    fwmark: int = 0
    peers: tuple[PeerStatus, ...] = ()


# ---------------------------------------------------------------------- parse


class _PeerBuilder:
    def __init__(self, public_key: str) -> None:
        self.public_key = public_key
        self.preshared_key = False
        self.endpoint: str | None = None
        self.allowed_ips: list[str] = []
        self.sec = 0
        self.nsec = 0
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.persistent_keepalive = 0

    def build(self) -> PeerStatus:
        handshake = None
        if self.sec or self.nsec:
            handshake = self.sec + self.nsec / 1e9
        return PeerStatus(
            public_key=self.public_key,
            preshared_key=self.preshared_key,
            endpoint=self.endpoint,
            allowed_ips=tuple(self.allowed_ips),
            last_handshake=handshake,
            rx_bytes=self.rx_bytes,
            tx_bytes=self.tx_bytes,
            persistent_keepalive=self.persistent_keepalive,
        )


def _uint(key: str, value: str, lineno: int, bits: int = 64) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 20 or int(value) >> bits:
        raise ValueError(f"line {lineno}: {key} is not an unsigned {bits}-bit integer")
    return int(value)


def _hex_key(key: str, value: str, lineno: int) -> bytes:
    # the message never quotes the value: for private_key it is the secret
    if len(value) != 64 or not all(c in "0123456789abcdefABCDEF" for c in value):
        raise ValueError(f"line {lineno}: {key} is not 64 hexadecimal digits")
    return bytes.fromhex(value)


def _body(name: str, text: str) -> list[str]:
    """The lines before the final `errno=`, once the errno says the request succeeded."""
    lines = text.split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines or not lines[-1].startswith("errno="):
        raise ValueError(f"malformed UAPI reply for {name!r}: no errno= line at the end")
    errno_text = lines.pop()[len("errno=") :]
    digits = errno_text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 10:
        raise ValueError(f"malformed UAPI reply for {name!r}: errno is not an integer")
    errno = int(errno_text)
    if errno != 0:
        try:
            reason = os.strerror(-errno)
        except (ValueError, OverflowError):
            reason = "unknown error"
        raise ValueError(f"the device {name!r} answered errno={errno} ({reason})")
    return lines


def parse_get(name: str, text: str) -> InterfaceStatus:
    """Parse the answer to `get=1` for interface `name`.

    Raises ValueError on a non-zero errno or malformed text; messages never
    quote a value. Keys this module does not know are skipped, as newer
    implementations may add some.
    """
    lines = _body(name, text)
    try:
        return _parse_body(name, lines)
    except ValueError as exc:
        raise ValueError(f"malformed UAPI reply for {name!r}: {exc}") from None


def _parse_body(name: str, lines: list[str]) -> InterfaceStatus:
    public_key: str | None = None
    listen_port: int | None = None
    fwmark = 0
    peers: list[_PeerBuilder] = []
    seen: set[str] = set()
    for lineno, line in enumerate(lines, 1):
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise ValueError(f"line {lineno} is not key=value")
        if key in _DEVICE_KEYS:
            if peers:
                raise ValueError(f"line {lineno}: device key {key} after the first peer")
            if key == "private_key":
                raw = _hex_key(key, value, lineno)
                # all zeros: no private key; otherwise only its public half is kept
                public_key = PrivateKey(raw).public_key.to_base64() if any(raw) else None
            elif key == "listen_port":
                listen_port = _uint(key, value, lineno, 16)
            else:
                fwmark = _uint(key, value, lineno, 32)
        elif key == "public_key":
            pub = PublicKey(_hex_key(key, value, lineno)).to_base64()
            if pub in seen:
                raise ValueError(f"line {lineno}: peer {pub} is listed twice")
            seen.add(pub)
            peers.append(_PeerBuilder(pub))
        elif peers:
            _peer_line(peers[-1], key, value, lineno)
        elif key in _PEER_KEYS:
            raise ValueError(f"line {lineno}: {key} before any public_key")
        # else: a device key this module does not know
    return InterfaceStatus(
        name=name,
        public_key=public_key,
        has_private_key=public_key is not None,
        listen_port=listen_port,
        fwmark=fwmark,
        peers=tuple(p.build() for p in peers),
    )


def _peer_line(peer: _PeerBuilder, key: str, value: str, lineno: int) -> None:
    if key == "preshared_key":
        peer.preshared_key = any(_hex_key(key, value, lineno))
    elif key == "endpoint":
        if not value or not value.isprintable():
            raise ValueError(f"line {lineno}: endpoint is empty or unprintable")
        peer.endpoint = value
    elif key == "allowed_ip":
        if not value or not value.isprintable():
            raise ValueError(f"line {lineno}: allowed_ip is empty or unprintable")
        peer.allowed_ips.append(value)
    elif key == "last_handshake_time_sec":
        peer.sec = _uint(key, value, lineno)
    elif key == "last_handshake_time_nsec":
        peer.nsec = _uint(key, value, lineno)
        if peer.nsec >= 1_000_000_000:
            raise ValueError(f"line {lineno}: {key} is not below 10^9")
    elif key == "rx_bytes":
        peer.rx_bytes = _uint(key, value, lineno)
    elif key == "tx_bytes":
        peer.tx_bytes = _uint(key, value, lineno)
    elif key == "persistent_keepalive_interval":
        peer.persistent_keepalive = _uint(key, value, lineno, 16)
    # anything else (protocol_version, keys of newer versions) is not shown
