"""ICMP (RFC 792) and ICMPv6 (RFC 4443) echo: the only ICMP the stack speaks.

An echo request to one of our addresses gets its reply; an echo reply is matched to a
`ping` by its identifier and sequence number. Everything else is ignored.
"""

from __future__ import annotations

import struct

from pywg.netstack.checksum import finish, ones_sum, pseudo_sum, verify
from pywg.netstack.ip import PROTO_ICMPV6

ECHO_REQUEST_V4, ECHO_REPLY_V4 = 8, 0
ECHO_REQUEST_V6, ECHO_REPLY_V6 = 128, 129
_HEADER = struct.Struct("!BBHHH")


def parse_echo(src: bytes, dst: bytes, data: bytes) -> tuple[int, int, int, bytes] | None:
    """(type, identifier, sequence, payload) of an echo message; None for anything else."""
    if len(data) < _HEADER.size:
        return None
    kind, code, _csum, ident, seq = _HEADER.unpack_from(data)
    if len(src) == 4:
        if kind not in (ECHO_REQUEST_V4, ECHO_REPLY_V4) or not verify(ones_sum(data)):
            return None
    elif kind not in (ECHO_REQUEST_V6, ECHO_REPLY_V6) or not verify(
        pseudo_sum(src, dst, PROTO_ICMPV6, len(data)), ones_sum(data)
    ):
        return None
    if code != 0:
        return None
    return kind, ident, seq, data[_HEADER.size :]


def build_echo(src: bytes, dst: bytes, kind: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An echo request or reply; ICMPv6 covers the pseudo-header (RFC 4443 §2.3)."""
    body = _HEADER.pack(kind, 0, 0, ident, seq) + payload
    pseudo = pseudo_sum(src, dst, PROTO_ICMPV6, len(body)) if len(src) == 16 else 0
    csum = finish(pseudo, ones_sum(body))
    return body[:2] + csum.to_bytes(2, "big") + body[4:]


def reply_kind(request: int) -> int | None:
    """The reply type for an echo request type, None if `request` is not a request."""
    return {ECHO_REQUEST_V4: ECHO_REPLY_V4, ECHO_REQUEST_V6: ECHO_REPLY_V6}.get(request)


def request_kind(version: int) -> int:
    """The echo request type of an IP version."""
    return ECHO_REQUEST_V4 if version == 4 else ECHO_REQUEST_V6
