"""ICMP echo packets (IPv4 and IPv6) for the adversarial peer's liveness probes.

The adversary proves a session works by sealing an echo request from its
tunnel address to the target's, and opening the echo reply the target's
kernel sends back through the implementation. Checksums per RFC 1071 (and
RFC 8200 §8.1's pseudo-header for ICMPv6).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's complement sum."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


_ICMP4_ECHO_REQUEST, _ICMP4_ECHO_REPLY = 8, 0
_ICMP6_ECHO_REQUEST, _ICMP6_ECHO_REPLY = 128, 129
_PROTO_ICMP, _PROTO_ICMPV6 = 1, 58
IPV4_ECHO_OVERHEAD: Final = 20 + 8  # IPv4 header + ICMP echo header
IPV6_ECHO_OVERHEAD: Final = 40 + 8


def _icmp6_pseudo_header(src: bytes, dst: bytes, length: int) -> bytes:
    """RFC 8200 §8.1: source, destination, upper-layer length, 3 zero bytes, next header."""
    return src + dst + struct.pack("!I3xB", length, _PROTO_ICMPV6)


def _ip_packet(
    src: str, dst: str, icmp_type: int, ident: int, seq: int, payload: bytes, ttl: int
) -> bytes:
    source, destination = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if source.version != destination.version:
        raise ValueError("source and destination of different IP versions")
    if source.version == 4:
        icmp = struct.pack("!BBHHH", icmp_type, 0, 0, ident, seq) + payload
        icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
        total = 20 + len(icmp)
        header = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            total,
            seq,  # IP identification
            0,
            ttl,
            _PROTO_ICMP,
            0,
            source.packed,
            destination.packed,
        )
        header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
        return header + icmp
    icmp = struct.pack("!BBHHH", icmp_type, 0, 0, ident, seq) + payload
    pseudo = _icmp6_pseudo_header(source.packed, destination.packed, len(icmp))
    icmp = icmp[:2] + struct.pack("!H", checksum(pseudo + icmp)) + icmp[4:]
    header = struct.pack("!IHBB", 6 << 28, len(icmp), _PROTO_ICMPV6, ttl)
    return header + source.packed + destination.packed + icmp


def echo_request(
    src: str,
    dst: str,
    ident: int,
    seq: int,
    payload: bytes = b"",
    *,
    total_length: int | None = None,
    ttl: int = 64,
) -> bytes:
    """An IPv4 ICMP or IPv6 ICMPv6 echo request with correct checksums.

    With `total_length`, the payload is a pattern making the IP packet
    exactly that long (at least 28 bytes for IPv4, 48 for IPv6).
    """
    if total_length is not None:
        overhead = IPV6_ECHO_OVERHEAD if ":" in src else IPV4_ECHO_OVERHEAD
        if total_length < overhead:
            raise ValueError(f"an echo request is at least {overhead} bytes")
        payload = bytes((seq + i * 7 + 1) & 0xFF or 0x5A for i in range(total_length - overhead))
    kind = _ICMP6_ECHO_REQUEST if ":" in src else _ICMP4_ECHO_REQUEST
    return _ip_packet(src, dst, kind, ident & 0xFFFF, seq & 0xFFFF, payload, ttl)


@dataclass(frozen=True, slots=True)
class Echo:
    """An ICMP(v6) echo request or reply, as parsed from an IP packet."""

    version: int
    source: str
    destination: str
    is_request: bool
    ident: int
    seq: int
    payload: bytes
    total_length: int  # the IP packet's own length (the rest of a plaintext is padding)


def parse_echo(packet: bytes) -> Echo | None:
    """The echo request/reply in an IP packet (with valid checksums), else None.

    Bytes after the IP packet's own length (transport padding) are ignored.
    """
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4:
        if len(packet) < 28 or packet[0] != 0x45 or packet[9] != _PROTO_ICMP:
            return None
        total = struct.unpack_from("!H", packet, 2)[0]
        if total < 28 or total > len(packet) or checksum(packet[:20]) != 0:
            return None
        icmp = packet[20:total]
        if checksum(icmp) != 0:
            return None
        src, dst = packet[12:16], packet[16:20]
        kinds = {_ICMP4_ECHO_REQUEST: True, _ICMP4_ECHO_REPLY: False}
    elif version == 6:
        if len(packet) < 48 or packet[6] != _PROTO_ICMPV6:
            return None
        total = 40 + struct.unpack_from("!H", packet, 4)[0]
        if total < 48 or total > len(packet):
            return None
        src, dst = packet[8:24], packet[24:40]
        icmp = packet[40:total]
        if checksum(_icmp6_pseudo_header(src, dst, len(icmp)) + icmp) != 0:
            return None
        kinds = {_ICMP6_ECHO_REQUEST: True, _ICMP6_ECHO_REPLY: False}
    else:
        return None
    if icmp[0] not in kinds or icmp[1] != 0:
        return None
    ident, seq = struct.unpack_from("!HH", icmp, 4)
    return Echo(
        version,
        str(ipaddress.ip_address(src)),
        str(ipaddress.ip_address(dst)),
        kinds[icmp[0]],
        ident,
        seq,
        bytes(icmp[8:]),
        total,
    )


def echo_reply_for(packet: bytes) -> bytes | None:
    """The reply a host's kernel gives to an echo request (for in-memory targets)."""
    echo = parse_echo(packet)
    if echo is None or not echo.is_request:
        return None
    kind = _ICMP6_ECHO_REPLY if echo.version == 6 else _ICMP4_ECHO_REPLY
    return _ip_packet(echo.destination, echo.source, kind, echo.ident, echo.seq, echo.payload, 64)
