"""IPv4 (RFC 791) and IPv6 (RFC 8200) headers: parse what arrives, build what leaves.

Addresses stay packed (4 or 16 bytes) inside the stack. A packet that is malformed, has a
bad IPv4 header checksum, or is a fragment is refused (`parse` returns None): the stack
sets DF and sizes its TCP segments from the MTU, so it never needs reassembly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pywg.netstack.checksum import finish, ones_sum

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58
DEFAULT_TTL = 64

IPV4_HEADER = 20
IPV6_HEADER = 40
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
# IPv6 extension headers walked over to find the upper layer (RFC 8200 §4.1)
_EXTENSIONS = frozenset({0, 43, 60})
_FRAGMENT = 44
_MAX_EXTENSIONS = 8


@dataclass(slots=True)
class IPPacket:
    """One IP packet as the stack sees it: addresses packed, payload the upper layer."""

    version: int
    src: bytes
    dst: bytes
    proto: int
    ttl: int
    payload: bytes


def parse(packet: bytes) -> IPPacket | None:
    """The packet's header and upper-layer payload; None if it is not one the stack takes."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4:
        return _parse_v4(packet)
    if version == 6:
        return _parse_v6(packet)
    return None


def _parse_v4(packet: bytes) -> IPPacket | None:
    if len(packet) < IPV4_HEADER:
        return None
    vihl, _tos, total, _ident, frag, ttl, proto, _csum, src, dst = _IPV4.unpack_from(packet)
    hlen = (vihl & 0x0F) * 4
    if hlen < IPV4_HEADER or total < hlen or total > len(packet):
        return None
    if frag & 0x3FFF:  # MF set or a non-zero offset: a fragment (RFC 791 §3.1)
        return None
    if ones_sum(packet[:hlen]) != 0xFFFF:
        return None
    return IPPacket(4, src, dst, proto, ttl, packet[hlen:total])


def _parse_v6(packet: bytes) -> IPPacket | None:
    if len(packet) < IPV6_HEADER:
        return None
    _vtf, plen, nxt, hops, src, dst = _IPV6.unpack_from(packet)
    end = IPV6_HEADER + plen
    if end > len(packet):
        return None
    offset = IPV6_HEADER
    for _ in range(_MAX_EXTENSIONS):
        if nxt not in _EXTENSIONS:
            break
        if offset + 8 > end:
            return None
        nxt, size = packet[offset], (packet[offset + 1] + 1) * 8
        offset += size
    else:
        return None
    if nxt == _FRAGMENT or offset > end:
        return None
    return IPPacket(6, src, dst, nxt, hops, packet[offset:end])


def build(src: bytes, dst: bytes, proto: int, payload: bytes, ttl: int = DEFAULT_TTL) -> bytes:
    """An IP packet (the version follows the address size) around an upper-layer payload."""
    if len(src) == 4:
        header = _IPV4.pack(0x45, 0, IPV4_HEADER + len(payload), 0, 0x4000, ttl, proto, 0, src, dst)
        csum = finish(ones_sum(header))
        return header[:10] + csum.to_bytes(2, "big") + header[12:] + payload
    return _IPV6.pack(0x60000000, len(payload), proto, ttl, src, dst) + payload


def header_size(version: int) -> int:
    """The size of the fixed header this stack builds for an IP version."""
    return IPV4_HEADER if version == 4 else IPV6_HEADER
