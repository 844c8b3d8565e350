"""SOCKS5 messages (RFC 1928, and RFC 1929's user/password), sans-IO.

Each `parse_*` takes the bytes of one message read so far and answers either
the message, or `Need(n)`: read exactly n more bytes and ask again. So a
reader never takes a byte past the message (a client may send its first data
right behind a request), and every message is bounded (at most 513 bytes).
Malformed input raises `Socks5Error` carrying the reply code to answer with.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

VERSION: Final = 5
# authentication methods (RFC 1928 §3)
NO_AUTH: Final = 0x00
USER_PASSWORD: Final = 0x02
NO_ACCEPTABLE: Final = 0xFF
# commands (§4)
CONNECT: Final = 1
BIND: Final = 2
UDP_ASSOCIATE: Final = 3
# address types (§5)
ATYP_IPV4: Final = 1
ATYP_DOMAIN: Final = 3
ATYP_IPV6: Final = 4
# replies (§6)
SUCCEEDED: Final = 0
GENERAL_FAILURE: Final = 1
NOT_ALLOWED: Final = 2
NETWORK_UNREACHABLE: Final = 3
HOST_UNREACHABLE: Final = 4
CONNECTION_REFUSED: Final = 5
TTL_EXPIRED: Final = 6
COMMAND_NOT_SUPPORTED: Final = 7
ADDRESS_TYPE_NOT_SUPPORTED: Final = 8
# RFC 1929 §2: the sub-negotiation's own version, and its answers
USER_PASSWORD_VERSION: Final = 1
AUTH_OK: Final = 0
AUTH_FAILED: Final = 1

_ADDRESS_LENGTH: Final = {ATYP_IPV4: 4, ATYP_IPV6: 16}


class Socks5Error(ValueError):
    """A malformed or unsupported message; `reply` is the code to answer a request with."""

    def __init__(self, reply: int, message: str) -> None:
        super().__init__(message)
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Need:
    """The message is incomplete: read exactly `count` more bytes."""

    count: int


@dataclass(frozen=True, slots=True)
class Request:
    """A client's request (§4): a command and its destination."""

    command: int
    host: str  # an IPv4 or IPv6 address, or a domain name to resolve remotely
    port: int
    atyp: int


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """A datagram of a UDP association with its header (§7)."""

    fragment: int
    host: str
    port: int
    atyp: int
    payload: bytes


def parse_greeting(data: bytes) -> tuple[int, ...] | Need:
    """The methods a client offers: VER NMETHODS METHODS... (§3)."""
    if len(data) < 2:
        return Need(2 - len(data))
    if data[0] != VERSION:
        raise Socks5Error(GENERAL_FAILURE, f"not SOCKS5 (version {data[0]})")
    total = 2 + data[1]
    if len(data) < total:
        return Need(total - len(data))
    _check_exact(data, total)
    return tuple(data[2:total])


def parse_user_password(data: bytes) -> tuple[bytes, bytes] | Need:
    """The user and password: VER ULEN UNAME PLEN PASSWD (RFC 1929 §2)."""
    if len(data) < 2:
        return Need(2 - len(data))
    if data[0] != USER_PASSWORD_VERSION:
        raise Socks5Error(GENERAL_FAILURE, f"user/password version {data[0]}")
    plen_at = 2 + data[1]
    if len(data) < plen_at + 1:
        return Need(plen_at + 1 - len(data))
    total = plen_at + 1 + data[plen_at]
    if len(data) < total:
        return Need(total - len(data))
    _check_exact(data, total)
    return bytes(data[2:plen_at]), bytes(data[plen_at + 1 : total])


def parse_request(data: bytes) -> Request | Need:
    """VER CMD RSV ATYP DST.ADDR DST.PORT (§4)."""
    if len(data) < 4:
        return Need(4 - len(data))
    if data[0] != VERSION:
        raise Socks5Error(GENERAL_FAILURE, f"request of version {data[0]}")
    got = parse_address(data, 3)
    if isinstance(got, Need):
        return got
    host, port, end = got
    _check_exact(data, end)
    if data[1] not in (CONNECT, BIND, UDP_ASSOCIATE):
        raise Socks5Error(COMMAND_NOT_SUPPORTED, f"unknown command {data[1]}")
    return Request(data[1], host, port, data[3])


def parse_address(data: bytes, offset: int) -> tuple[str, int, int] | Need:
    """ATYP ADDR PORT at `offset` (§5): (host, port, the offset after it), or Need."""
    if len(data) < offset + 2:
        return Need(offset + 2 - len(data))
    atyp = data[offset]
    if atyp == ATYP_DOMAIN:
        start, length = offset + 2, data[offset + 1]
    elif atyp in _ADDRESS_LENGTH:
        start, length = offset + 1, _ADDRESS_LENGTH[atyp]
    else:
        raise Socks5Error(ADDRESS_TYPE_NOT_SUPPORTED, f"address type {atyp}")
    end = start + length + 2
    if len(data) < end:
        return Need(end - len(data))
    raw = bytes(data[start : start + length])
    (port,) = struct.unpack_from("!H", data, start + length)
    if atyp == ATYP_DOMAIN:
        return _domain(raw), port, end
    return str(ipaddress.ip_address(raw)), port, end


def _domain(raw: bytes) -> str:
    """A domain name as sent (§5: no terminating NUL), printable ASCII only."""
    if not raw or any(byte <= 0x20 or byte >= 0x7F for byte in raw):
        raise Socks5Error(HOST_UNREACHABLE, "not a host name")
    return raw.decode("ascii")


def _check_exact(data: bytes, total: int) -> None:
    if len(data) != total:
        raise Socks5Error(GENERAL_FAILURE, "bytes after the message")


def encode_address(host: str, port: int) -> bytes:
    """ATYP ADDR PORT (§5) for an address or a domain name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("ascii")
        if not 0 < len(name) < 256:
            raise ValueError(f"domain name of {len(name)} bytes") from None
        return bytes([ATYP_DOMAIN, len(name)]) + name + struct.pack("!H", port)
    atyp = ATYP_IPV4 if address.version == 4 else ATYP_IPV6
    return bytes([atyp]) + address.packed + struct.pack("!H", port)


def encode_greeting(methods: tuple[int, ...]) -> bytes:
    return bytes([VERSION, len(methods), *methods])


def encode_method(method: int) -> bytes:
    """The server's choice (§3)."""
    return bytes([VERSION, method])


def encode_auth_status(status: int) -> bytes:
    """The answer to a user/password sub-negotiation (RFC 1929 §2)."""
    return bytes([USER_PASSWORD_VERSION, status])


def encode_request(command: int, host: str, port: int) -> bytes:
    return bytes([VERSION, command, 0]) + encode_address(host, port)


def encode_reply(code: int, host: str = "0.0.0.0", port: int = 0) -> bytes:
    """VER REP RSV ATYP BND.ADDR BND.PORT (§6)."""
    return bytes([VERSION, code, 0]) + encode_address(host, port)


def parse_udp_datagram(data: bytes) -> UdpDatagram:
    """RSV(2) FRAG ATYP DST.ADDR DST.PORT DATA (§7), a whole datagram."""
    if len(data) < 4 or data[0] or data[1]:
        raise Socks5Error(GENERAL_FAILURE, "not a SOCKS5 UDP datagram")
    got = parse_address(data, 3)
    if isinstance(got, Need):
        raise Socks5Error(GENERAL_FAILURE, "truncated UDP header")
    host, port, end = got
    return UdpDatagram(data[2], host, port, data[3], bytes(data[end:]))


def encode_udp_datagram(host: str, port: int, payload: bytes) -> bytes:
    """A datagram for the client, unfragmented (§7: FRAG 0)."""
    return b"\0\0\0" + encode_address(host, port) + payload
