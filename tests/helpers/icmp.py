"""ICMPv4 echo packets built and answered by hand, for tests of a tunnel with no TUN.

A `PacketLink` carries raw IP packets: these make an echo request with valid
checksums (a kernel on the far side checks them), recognise a reply, and turn
a request into its reply (RFC 792).
"""

from __future__ import annotations

import ipaddress
import struct

ICMP = 1
ECHO_REQUEST = 8
ECHO_REPLY = 0


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(src: str, dst: str, proto: int, payload: bytes, ttl: int = 64) -> bytes:
    header = bytearray(
        struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, ttl, proto, 0,
                    ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    )  # fmt: skip
    struct.pack_into("!H", header, 10, checksum(bytes(header)))
    return bytes(header) + payload


def icmp(kind: int, ident: int, seq: int, data: bytes) -> bytes:
    body = bytearray(struct.pack("!BBHHH", kind, 0, 0, ident, seq) + data)
    struct.pack_into("!H", body, 2, checksum(bytes(body)))
    return bytes(body)


def echo_request(src: str, dst: str, ident: int, seq: int, data: bytes = b"pywg") -> bytes:
    return ipv4(src, dst, ICMP, icmp(ECHO_REQUEST, ident, seq, data))


def parse_echo(packet: bytes) -> tuple[int, str, str, int, int, bytes] | None:
    """(type, source, destination, identifier, sequence, data) of an ICMPv4 echo, or None."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != ICMP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    kind, _, _, ident, seq = struct.unpack_from("!BBHHH", packet, ihl)
    if kind not in (ECHO_REQUEST, ECHO_REPLY):
        return None
    src = str(ipaddress.IPv4Address(packet[12:16]))
    dst = str(ipaddress.IPv4Address(packet[16:20]))
    return kind, src, dst, ident, seq, packet[ihl + 8 :]


def echo_reply_to(packet: bytes, own: str) -> bytes | None:
    """The reply to an echo request addressed to `own`, or None for anything else."""
    echo = parse_echo(packet)
    if echo is None or echo[0] != ECHO_REQUEST or echo[2] != own:
        return None
    _, src, dst, ident, seq, data = echo
    return ipv4(dst, src, ICMP, icmp(ECHO_REPLY, ident, seq, data))
