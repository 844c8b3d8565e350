"""UDP datagrams (RFC 768, and RFC 8200 §8.1 for IPv6): parse and build, with checksums."""

from __future__ import annotations

import struct

from pywg.netstack.checksum import finish, ones_sum, pseudo_sum, verify
from pywg.netstack.ip import PROTO_UDP

HEADER = 8
_HEADER = struct.Struct("!HHHH")


def parse(src: bytes, dst: bytes, data: bytes) -> tuple[int, int, bytes] | None:
    """(source port, destination port, payload), or None if malformed or the checksum fails."""
    if len(data) < HEADER:
        return None
    sport, dport, length, csum = _HEADER.unpack_from(data)
    if length < HEADER or length > len(data):
        return None
    data = data[:length]
    if csum == 0:
        if len(src) == 16:  # mandatory over IPv6 (RFC 8200 §8.1)
            return None
    elif not verify(pseudo_sum(src, dst, PROTO_UDP, length), ones_sum(data)):
        return None
    return sport, dport, data[HEADER:]


def build(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP datagram with its checksum (0 is sent as 0xFFFF: RFC 768)."""
    length = HEADER + len(payload)
    header = _HEADER.pack(sport, dport, length, 0)
    csum = finish(pseudo_sum(src, dst, PROTO_UDP, length), ones_sum(header), ones_sum(payload))
    return _HEADER.pack(sport, dport, length, csum or 0xFFFF) + payload
