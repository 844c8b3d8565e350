"""TCP segments on the wire (RFC 9293 §3.1): header, options, checksum.

Options understood: MSS (RFC 9293 §3.2), window scale (RFC 7323 §2), SACK-permitted and
SACK blocks (RFC 2018). Others are skipped by their length; a malformed option list ends
the parse of options without refusing the segment (as the RFC's robustness rule asks).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pywg.netstack.checksum import finish, ones_sum, pseudo_sum, verify
from pywg.netstack.ip import PROTO_TCP

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20

HEADER = 20
_HEADER = struct.Struct("!HHIIBBHHH")
_CHECKSUM = struct.Struct("!H")
_OPT_END, _OPT_NOP, _OPT_MSS, _OPT_WSCALE, _OPT_SACK_OK, _OPT_SACK = 0, 1, 2, 3, 4, 5
MAX_WSCALE = 14  # RFC 7323 §2.3
MAX_SACK_BLOCKS = 3


@dataclass(slots=True)
class Segment:
    """A parsed TCP segment: sequence numbers as on the wire (32-bit)."""

    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes
    mss: int | None = None
    wscale: int | None = None
    sack_ok: bool = False
    sack: tuple[tuple[int, int], ...] = ()


def parse(src: bytes, dst: bytes, data: bytes, checksum: bool = True) -> Segment | None:
    """The segment in `data` (checksum checked against the pseudo-header unless `checksum` is
    False: a link that authenticated it, `pywg.packetlink`); None if malformed."""
    if len(data) < HEADER:
        return None
    sport, dport, seq, ack, off, flags, window, _csum, _urg = _HEADER.unpack_from(data)
    hlen = (off >> 4) * 4
    if hlen < HEADER or hlen > len(data):
        return None
    if checksum and not verify(pseudo_sum(src, dst, PROTO_TCP, len(data)), ones_sum(data)):
        return None
    segment = Segment(sport, dport, seq, ack, flags & 0x3F, window, data[hlen:])
    if hlen > HEADER:
        _parse_options(segment, data[HEADER:hlen])
    return segment


def _parse_options(segment: Segment, options: bytes) -> None:
    i, end = 0, len(options)
    while i < end:
        kind = options[i]
        if kind == _OPT_END:
            return
        if kind == _OPT_NOP:
            i += 1
            continue
        if i + 1 >= end or options[i + 1] < 2 or i + options[i + 1] > end:
            return
        size = options[i + 1]
        body = options[i + 2 : i + size]
        if kind == _OPT_MSS and size == 4:
            segment.mss = int.from_bytes(body, "big")
        elif kind == _OPT_WSCALE and size == 3:
            segment.wscale = min(body[0], MAX_WSCALE)
        elif kind == _OPT_SACK_OK and size == 2:
            segment.sack_ok = True
        elif kind == _OPT_SACK and (size - 2) % 8 == 0:
            segment.sack = tuple(
                (int.from_bytes(body[j : j + 4], "big"), int.from_bytes(body[j + 4 : j + 8], "big"))
                for j in range(0, size - 2, 8)
            )
        i += size


def syn_options(mss: int, wscale: int | None, sack_ok: bool) -> bytes:
    """The options of a SYN or SYN-ACK, padded to a multiple of 4 bytes."""
    out = struct.pack("!BBH", _OPT_MSS, 4, mss)
    if wscale is not None:
        out += struct.pack("!BBBB", _OPT_NOP, _OPT_WSCALE, 3, wscale)
    if sack_ok:
        out += struct.pack("!BBBB", _OPT_NOP, _OPT_NOP, _OPT_SACK_OK, 2)
    return out


def sack_option(blocks: list[tuple[int, int]]) -> bytes:
    """A SACK option (RFC 2018 §3) for up to three blocks of wire sequence numbers."""
    blocks = blocks[:MAX_SACK_BLOCKS]
    if not blocks:
        return b""
    head = struct.pack("!BBBB", _OPT_NOP, _OPT_NOP, _OPT_SACK, 2 + 8 * len(blocks))
    return head + b"".join(struct.pack("!II", left, right) for left, right in blocks)


def build(
    src: bytes,
    dst: bytes,
    fields: tuple[int, int, int, int, int, int],
    options: bytes,
    payload: bytes,
    checksum: bool = True,
) -> bytes:
    """A TCP segment with its checksum: `fields` = (sport, dport, seq, ack, flags, window).
    Without `checksum` the field is left zero (a super-packet for a link that segments it
    and checksums each segment, `pywg.packetlink`)."""
    sport, dport, seq, ack, flags, window = fields
    off = (HEADER + len(options)) // 4 << 4
    segment = bytearray(_HEADER.pack(sport, dport, seq, ack, off, flags, window, 0, 0))
    segment += options
    segment += payload
    if checksum:
        csum = finish(pseudo_sum(src, dst, PROTO_TCP, len(segment)), ones_sum(segment))
        _CHECKSUM.pack_into(segment, 16, csum)
    return bytes(segment)
