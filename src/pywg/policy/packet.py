"""An IP packet's headers as the packet filter reads them (sans-IO).

The Python twin of the parser in ``src/pywg/_fast/filter.c``: the same
fields, the same bounds, the same verdict on what is malformed, so that the
pure-Python filter (`pywg.policy.model`) and the C one decide alike
(tests/native/test_filter_model.py holds them to it). ``None`` means
malformed: truncated headers, lengths that disagree, an IPv6 header chain
longer than `MAX_EXT` or with two Fragment headers, a TCP fragment at offset
8 bytes (RFC 1858 §4).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_EXT", "Headers", "parse"]

MAX_EXT = 8  # IPv6 extension headers walked (PYWG_FILTER_MAX_EXT in filter.h)
TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
_EXTENSIONS = (0, 43, 60, 51, 44)  # hop-by-hop, routing, destination options, AH, fragment
FRAGMENT = 44
AH = 51


@dataclass
class Headers:
    family: int = 0
    proto: int = 0
    src: bytes = b""
    dst: bytes = b""
    later_fragment: bool = False
    first_fragment: bool = False
    frag_id: int = 0
    sport: int = 0
    dport: int = 0
    tcp_flags: int = 0
    icmp_type: int = -1
    icmp_id: int = 0
    transport: bytes = b""  # the transport header and what follows

    def is_icmp_error(self) -> bool:
        """Whether it quotes the packet that caused it (RFC 792; RFC 4443 §2.4)."""
        if self.icmp_type < 0:
            return False
        return self.icmp_type in ((3, 11, 12) if self.family == 4 else (1, 2, 3, 4))

    def is_icmp(self) -> bool:
        return self.proto == (ICMP if self.family == 4 else ICMPV6)


def _transport(data: bytes, start: int, end: int, h: Headers) -> Headers | None:
    size = end - start
    h.transport = data[start:end]
    if h.proto == TCP:
        if size < 20:
            return None
        h.sport, h.dport = _be16(data, start), _be16(data, start + 2)
        h.tcp_flags = data[start + 13]
    elif h.proto == UDP:
        if size < 8:
            return None
        h.sport, h.dport = _be16(data, start), _be16(data, start + 2)
    elif h.is_icmp():
        if size < 8:
            return None
        h.icmp_type, h.icmp_id = data[start], _be16(data, start + 4)
    return h


def _be16(data: bytes, at: int) -> int:
    return data[at] << 8 | data[at + 1]


def _ipv4(data: bytes) -> Headers | None:
    if len(data) < 20:
        return None
    ihl, total = (data[0] & 15) * 4, _be16(data, 2)
    if ihl < 20 or total < ihl or total > len(data):
        return None
    h = Headers(4, data[9], data[12:16], data[16:20])
    frag = _be16(data, 6)
    offset = frag & 0x1FFF
    h.frag_id = _be16(data, 4) | h.proto << 16
    if offset:
        h.later_fragment = True
        return None if h.proto == TCP and offset == 1 else h
    h.first_fragment = bool(frag & 0x2000)
    return _transport(data, ihl, total, h)


def _ipv6(data: bytes) -> Headers | None:
    if len(data) < 40:
        return None
    total = 40 + _be16(data, 4)
    if total > len(data):
        return None
    h = Headers(6, 0, data[8:24], data[24:40])
    nxt, off, fragment_seen = data[6], 40, False
    for i in range(MAX_EXT + 1):
        if nxt not in _EXTENSIONS:
            break
        if i >= MAX_EXT or off + 8 > total:
            return None
        if nxt == FRAGMENT:  # RFC 8200 §4.5
            if fragment_seen:
                return None
            fragment_seen = True
            fo = _be16(data, off + 2)
            h.frag_id = int.from_bytes(data[off + 4 : off + 8], "big")
            nxt, off = data[off], off + 8
            if fo >> 3:
                h.proto, h.later_fragment = nxt, True
                return None if nxt == TCP and fo >> 3 == 1 else h
            h.first_fragment = bool(fo & 1)
            continue
        length = (data[off + 1] + 2) * 4 if nxt == AH else (data[off + 1] + 1) * 8
        nxt, off = data[off], off + length
        if off > total:
            return None
    h.proto = nxt
    return _transport(data, off, total, h)


def quoted(outer: Headers) -> Headers | None:
    """The packet ICMP error `outer` quotes, as far as its flow: one this node sent
    (its source is the error's destination), with 8 transport bytes at least; IPv6
    with no extension headers. As ``parse_quoted`` in filter.c."""
    t = outer.transport[8:]
    if outer.family == 4:
        if len(t) < 20 or t[0] >> 4 != 4 or _be16(t, 6) & 0x1FFF:
            return None
        off, q = (t[0] & 15) * 4, Headers(4, t[9], t[12:16], t[16:20])
    else:
        if len(t) < 40 or t[0] >> 4 != 6:
            return None
        off, q = 40, Headers(6, t[6], t[8:24], t[24:40])
    if off < 20 or off + 8 > len(t) or q.src != outer.dst:
        return None
    if q.proto in (TCP, UDP):
        q.sport, q.dport = _be16(t, off), _be16(t, off + 2)
    elif q.is_icmp():
        q.icmp_type, q.icmp_id = t[off], _be16(t, off + 4)
    return q


def parse(data: bytes) -> Headers | None:
    """The headers of IP packet `data`, or ``None`` if it is malformed."""
    if data and data[0] >> 4 == 4:
        return _ipv4(data)
    if data and data[0] >> 4 == 6:
        return _ipv6(data)
    return None
