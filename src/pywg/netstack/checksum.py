"""The Internet checksum (RFC 1071) and the pseudo-headers of TCP, UDP and ICMPv6.

The one's complement sum of 16-bit words equals the whole buffer read as one big-endian
integer modulo 0xFFFF (2**16 is 1 modulo 0xFFFF), so the sum is one `int.from_bytes` and
one modulo, both done in C by the interpreter, rather than a Python loop over words.
"""

from __future__ import annotations

import functools

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


@functools.lru_cache(maxsize=1024)
def _addresses_sum(src: bytes, dst: bytes) -> int:
    return ones_sum(src + dst)


def pseudo_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """The sum of the IPv4 (RFC 793 §3.1) or IPv6 (RFC 8200 §8.1) pseudo-header.

    Both are the addresses, the protocol and the upper-layer length as 16-bit words (a
    32-bit length is two words), so one form serves both; the addresses' sum is cached
    since a connection sends and receives between the same two all its life.
    """
    return _addresses_sum(src, dst) + proto + (length >> 16) + (length & 0xFFFF)
