"""STUN Binding (RFC 8489), sans-IO: the request, the answer, and telling STUN apart.

A node behind a NAT learns the address and port its NAT maps its WireGuard
socket to by sending a Binding request *from that socket* to a STUN server,
which answers with the source it saw (XOR-MAPPED-ADDRESS, §14.2). The same
socket carries WireGuard, so every datagram must be told apart:

- a STUN message starts with two zero bits and carries the magic cookie
  0x2112A442 at bytes 4-7 (§5); its length field counts the attributes and
  is a multiple of 4;
- a WireGuard message starts with its type (1-4) and three zero bytes
  (whitepaper §5.4). A Binding response (type 0x0101) has 0x01 in byte 1, a
  request (0x0001) 0x00 in byte 0, so neither can pass for WireGuard.

Only what endpoint discovery needs is here: Binding requests without
authentication, and the mapped address from a success response (XOR-MAPPED-
ADDRESS, or the old MAPPED-ADDRESS of RFC 3489 servers). FINGERPRINT (§14.7)
is added to requests so that servers that multiplex protocols can tell ours
apart too, and checked on responses that carry one.
"""

from __future__ import annotations

import binascii
import ipaddress
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

MAGIC_COOKIE: Final = 0x2112A442
HEADER_SIZE: Final = 20
TRANSACTION_ID_SIZE: Final = 12
BINDING_REQUEST: Final = 0x0001
BINDING_SUCCESS: Final = 0x0101
BINDING_ERROR: Final = 0x0111
ATTR_MAPPED_ADDRESS: Final = 0x0001
ATTR_XOR_MAPPED_ADDRESS: Final = 0x0020
ATTR_SOFTWARE: Final = 0x8022
ATTR_FINGERPRINT: Final = 0x8028
FINGERPRINT_XOR: Final = 0x5354554E  # "STUN", §14.7
FAMILY_IPV4, FAMILY_IPV6 = 0x01, 0x02
SOFTWARE: Final = b"pywg"

Address = tuple[str, int]


class StunError(ValueError):
    """A datagram that is not a well-formed STUN message of the kind expected."""


def is_stun(data: bytes | bytearray | memoryview) -> bool:
    """Whether a datagram is a STUN message (§5): never true for a WireGuard one."""
    if len(data) < HEADER_SIZE or data[0] & 0xC0:
        return False
    length = int.from_bytes(data[2:4], "big")
    cookie = int.from_bytes(data[4:8], "big")
    return cookie == MAGIC_COOKIE and length % 4 == 0 and len(data) == HEADER_SIZE + length


def new_transaction_id() -> bytes:
    """96 random bits (§6): a response is matched to its request by them."""
    return os.urandom(TRANSACTION_ID_SIZE)


def _attribute(kind: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("!HH", kind, len(value)) + value + bytes(pad)


def _fingerprint(message_so_far: bytes) -> int:
    return (binascii.crc32(message_so_far) & 0xFFFFFFFF) ^ FINGERPRINT_XOR


def build_message(
    kind: int, transaction_id: bytes, attributes: Sequence[tuple[int, bytes]] = ()
) -> bytes:
    """A STUN message (§5) of `kind` with `attributes`, SOFTWARE and FINGERPRINT last."""
    if len(transaction_id) != TRANSACTION_ID_SIZE:
        raise ValueError("a transaction ID is 12 bytes")
    body = b"".join(_attribute(a, v) for a, v in attributes) + _attribute(ATTR_SOFTWARE, SOFTWARE)
    # FINGERPRINT covers the message up to it, with the length already counting it (§14.7)
    length = len(body) + 8
    head = struct.pack("!HHI", kind, length, MAGIC_COOKIE) + transaction_id
    crc = _fingerprint(head + body)
    return head + body + _attribute(ATTR_FINGERPRINT, struct.pack("!I", crc))


def binding_request(transaction_id: bytes, attributes: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """A Binding request (§6) with SOFTWARE and FINGERPRINT (and `attributes` first)."""
    return build_message(BINDING_REQUEST, transaction_id, attributes)


def binding_success(
    transaction_id: bytes, mapped: Address, attributes: Sequence[tuple[int, bytes]] = ()
) -> bytes:
    """A Binding success response (§6.3.3): where the request came from, as XOR-MAPPED-ADDRESS."""
    xor = (ATTR_XOR_MAPPED_ADDRESS, encode_xor_address(mapped, transaction_id))
    return build_message(BINDING_SUCCESS, transaction_id, [xor, *attributes])


def encode_xor_address(address: Address, transaction_id: bytes) -> bytes:
    """The value of an XOR-MAPPED-ADDRESS attribute (§14.2)."""
    ip = ipaddress.ip_address(address[0])
    port = address[1] ^ (MAGIC_COOKIE >> 16)
    key = struct.pack("!I", MAGIC_COOKIE) + transaction_id
    raw = ip.packed
    xored = bytes(a ^ b for a, b in zip(raw, key, strict=False))
    family = FAMILY_IPV4 if ip.version == 4 else FAMILY_IPV6
    return struct.pack("!BBH", 0, family, port) + xored


def _decode_address(value: bytes, transaction_id: bytes | None) -> Address:
    if len(value) < 4:
        raise StunError("address attribute too short")
    family, port = value[1], int.from_bytes(value[2:4], "big")
    size = {FAMILY_IPV4: 4, FAMILY_IPV6: 16}.get(family)
    if size is None or len(value) != 4 + size:
        raise StunError(f"bad address family {family} or length {len(value)}")
    raw = value[4:]
    if transaction_id is not None:  # XOR-MAPPED-ADDRESS
        key = struct.pack("!I", MAGIC_COOKIE) + transaction_id
        raw = bytes(a ^ b for a, b in zip(raw, key, strict=False))
        port ^= MAGIC_COOKIE >> 16
    return str(ipaddress.ip_address(raw)), port


@dataclass(frozen=True, slots=True)
class StunMessage:
    kind: int  # BINDING_REQUEST, BINDING_SUCCESS, ...
    transaction_id: bytes
    attributes: dict[int, bytes]  # the first of each type (§14: later ones are ignored)
    size: int = 0  # of the whole message, in bytes


def parse_message(data: bytes) -> StunMessage:
    """Any STUN message, its attributes checked for framing and FINGERPRINT; StunError if bad."""
    if not is_stun(data):
        raise StunError("not a STUN message")
    kind = int.from_bytes(data[0:2], "big")
    attributes: dict[int, bytes] = {}
    offset = HEADER_SIZE
    while offset + 4 <= len(data):
        attr, length = struct.unpack_from("!HH", data, offset)
        value = bytes(data[offset + 4 : offset + 4 + length])
        if len(value) != length:
            raise StunError("attribute runs past the message")
        if attr == ATTR_FINGERPRINT:
            if length != 4 or offset + 8 != len(data):
                raise StunError("FINGERPRINT must be the last attribute")
            if int.from_bytes(value, "big") != _fingerprint(bytes(data[:offset])):
                raise StunError("FINGERPRINT does not match")
        attributes.setdefault(attr, value)
        offset += 4 + length + (-length) % 4
    return StunMessage(kind, bytes(data[8:20]), attributes, len(data))


@dataclass(frozen=True, slots=True)
class BindingResponse:
    transaction_id: bytes
    mapped: Address  # where the server saw the request come from
    attributes: dict[int, bytes] = field(default_factory=dict)


def parse_binding_response(data: bytes) -> BindingResponse:
    """The mapped address of a Binding success response; StunError for anything else."""
    message = parse_message(data)
    if message.kind != BINDING_SUCCESS:
        raise StunError(f"STUN message type {message.kind:#06x}, not a Binding success response")
    tid, attrs = message.transaction_id, message.attributes
    if ATTR_XOR_MAPPED_ADDRESS in attrs:
        found = _decode_address(attrs[ATTR_XOR_MAPPED_ADDRESS], tid)
    elif ATTR_MAPPED_ADDRESS in attrs:
        found = _decode_address(attrs[ATTR_MAPPED_ADDRESS], None)
    else:
        raise StunError("no (XOR-)MAPPED-ADDRESS in the response")
    return BindingResponse(tid, found, attrs)
