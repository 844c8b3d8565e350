"""The Internet checksum (RFC 1071) and the pseudo-headers of TCP, UDP and ICMPv6.

The one's complement sum of 16-bit words equals the whole buffer read as one big-endian
integer modulo 0xFFFF (2**16 is 1 modulo 0xFFFF), so the sum is one `int.from_bytes` and
one modulo, both done in C by the interpreter, rather than a Python loop over words.
"""

from __future__ import annotations

import struct

_MOD = 0xFFFF


def ones_sum(data: bytes | bytearray | memoryview) -> int:
    """The one's complement sum of `data` as 16-bit big-endian words (RFC 1071 §1)."""
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8  # an odd last byte is padded with a zero byte on the right
    folded = value % _MOD
    return _MOD if folded == 0 and value else folded


def finish(*sums: int) -> int:
    """The checksum field for the given partial sums: their folded sum, complemented."""
    total = sum(sums)
    while total > _MOD:
        total = (total & _MOD) + (total >> 16)
    return ~total & _MOD


def verify(*sums: int) -> bool:
    """True when the partial sums (checksum field included) add up to all ones."""
    total = sum(sums)
    while total > _MOD:
        total = (total & _MOD) + (total >> 16)
    return total == _MOD


def pseudo_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """The sum of the IPv4 (RFC 793 §3.1) or IPv6 (RFC 8200 §8.1) pseudo-header."""
    if len(src) == 4:
        return ones_sum(src + dst + struct.pack("!BBH", 0, proto, length))
    return ones_sum(src + dst + struct.pack("!IxxxB", length, proto))
