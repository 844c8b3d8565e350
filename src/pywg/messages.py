"""Wire formats of the four message types (whitepaper §5.4.2–§5.4.7).

Every integer is little-endian; the type is one byte followed by three zero
bytes. The field offsets (mac1, mac2, indices) are in pywg.constants.
parse_* functions accept any bytes-like input and raise
RemoteProtocolError on anything that is not exactly well-formed; serialize_*
functions produce the exact wire bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .constants import (
    AEAD_TAG_SIZE,
    COOKIE_REPLY_SIZE,
    INITIATION_SIZE,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION,
    MESSAGE_RESPONSE,
    MESSAGE_TRANSPORT,
    PADDING_MULTIPLE,
    RESPONSE_SIZE,
    TRANSPORT_HEADER_SIZE,
    TRANSPORT_MIN_SIZE,
)
from .exceptions import RemoteProtocolError

_INITIATION = struct.Struct("<I I 32s 48s 28s 16s 16s")
_RESPONSE = struct.Struct("<I I I 32s 16s 16s 16s")
_COOKIE_REPLY = struct.Struct("<I I 24s 32s")
_TRANSPORT_HEADER = struct.Struct("<I I Q")
_HEADER_WORD = struct.Struct("<I")


def message_type(data: bytes | bytearray | memoryview) -> int:
    """The type of a datagram (1–4), or 0 when the 4-byte header is not valid."""
    if len(data) < 4:
        return 0
    (word,) = _HEADER_WORD.unpack_from(data, 0)
    if word > 0xFF:  # the three reserved bytes must be zero
        return 0
    return word if MESSAGE_INITIATION <= word <= MESSAGE_TRANSPORT else 0


@dataclass(frozen=True, slots=True)
class Initiation:
    """Message 1, 148 bytes (whitepaper §5.4.2)."""

    sender: int
    ephemeral: bytes  # 32
    encrypted_static: bytes  # 32 + 16
    encrypted_timestamp: bytes  # 12 + 16
    mac1: bytes = bytes(16)
    mac2: bytes = bytes(16)


@dataclass(frozen=True, slots=True)
class Response:
    """Message 2, 92 bytes (whitepaper §5.4.3)."""

    sender: int
    receiver: int
    ephemeral: bytes  # 32
    encrypted_nothing: bytes  # 0 + 16
    mac1: bytes = bytes(16)
    mac2: bytes = bytes(16)


@dataclass(frozen=True, slots=True)
class CookieReply:
    """Message 3, 64 bytes (whitepaper §5.4.7)."""

    receiver: int
    nonce: bytes  # 24
    encrypted_cookie: bytes  # 16 + 16


@dataclass(frozen=True, slots=True)
class TransportHeader:
    """The 16-byte header of message 4; the ciphertext follows it (whitepaper §5.4.6)."""

    receiver: int
    counter: int


def _check_type_and_size(data: bytes | bytearray | memoryview, mtype: int, size: int) -> None:
    if len(data) != size:
        raise RemoteProtocolError(f"message type {mtype}: {len(data)} bytes, expected {size}")
    if message_type(data) != mtype:
        raise RemoteProtocolError(f"not a message of type {mtype}")


def parse_initiation(data: bytes | bytearray | memoryview) -> Initiation:
    _check_type_and_size(data, MESSAGE_INITIATION, INITIATION_SIZE)
    _, sender, eph, static, ts, mac1, mac2 = _INITIATION.unpack(bytes(data))
    return Initiation(sender, eph, static, ts, mac1, mac2)


def serialize_initiation(msg: Initiation) -> bytes:
    return _INITIATION.pack(
        MESSAGE_INITIATION,
        msg.sender,
        _exact(msg.ephemeral, 32),
        _exact(msg.encrypted_static, 48),
        _exact(msg.encrypted_timestamp, 28),
        _exact(msg.mac1, 16),
        _exact(msg.mac2, 16),
    )


def parse_response(data: bytes | bytearray | memoryview) -> Response:
    _check_type_and_size(data, MESSAGE_RESPONSE, RESPONSE_SIZE)
    _, sender, receiver, eph, empty, mac1, mac2 = _RESPONSE.unpack(bytes(data))
    return Response(sender, receiver, eph, empty, mac1, mac2)


def serialize_response(msg: Response) -> bytes:
    return _RESPONSE.pack(
        MESSAGE_RESPONSE,
        msg.sender,
        msg.receiver,
        _exact(msg.ephemeral, 32),
        _exact(msg.encrypted_nothing, 16),
        _exact(msg.mac1, 16),
        _exact(msg.mac2, 16),
    )


def parse_cookie_reply(data: bytes | bytearray | memoryview) -> CookieReply:
    _check_type_and_size(data, MESSAGE_COOKIE_REPLY, COOKIE_REPLY_SIZE)
    _, receiver, nonce, cookie = _COOKIE_REPLY.unpack(bytes(data))
    return CookieReply(receiver, nonce, cookie)


def serialize_cookie_reply(msg: CookieReply) -> bytes:
    return _COOKIE_REPLY.pack(
        MESSAGE_COOKIE_REPLY, msg.receiver, _exact(msg.nonce, 24), _exact(msg.encrypted_cookie, 32)
    )


def parse_transport_header(data: bytes | bytearray | memoryview) -> TransportHeader:
    """Header of a transport message; the whole message must be ≥ 32 bytes.

    The encrypted payload is a padded packet plus a 16-byte tag; its length
    is a multiple of 16 for every conforming sender, but the receiver does
    not require that (Linux and wireguard-go accept any length ≥ 16).
    """
    if len(data) < TRANSPORT_MIN_SIZE:
        raise RemoteProtocolError(f"transport message too short: {len(data)} bytes")
    mtype, receiver, counter = _TRANSPORT_HEADER.unpack_from(data, 0)
    if mtype != MESSAGE_TRANSPORT:
        raise RemoteProtocolError("not a transport message")
    return TransportHeader(receiver, counter)


def serialize_transport_header(receiver: int, counter: int) -> bytes:
    return _TRANSPORT_HEADER.pack(MESSAGE_TRANSPORT, receiver, counter)


def _round_up(length: int) -> int:
    return -(-length // PADDING_MULTIPLE) * PADDING_MULTIPLE


def padded_length(length: int, mtu: int) -> int:
    """Length of a plaintext zero-padded to a multiple of 16, not beyond the MTU (§5.4.6).

    As Linux (send.c calculate_skb_padding) and wireguard-go (calculatePaddingSize):
    a packet longer than the MTU pads its last MTU-sized unit; an unknown MTU
    (0) pads to a multiple of 16 without a cap. A zero-length packet stays empty.
    """
    if mtu <= 0:
        return _round_up(length)
    last_unit = length % mtu if length > mtu else length
    return length - last_unit + min(_round_up(last_unit), mtu)


def pad(packet: bytes, mtu: int) -> bytes:
    target = padded_length(len(packet), mtu)
    return packet + bytes(target - len(packet)) if target > len(packet) else packet


def transport_size(plaintext_length: int) -> int:
    """Wire size of a transport message carrying this many (already padded) bytes."""
    return TRANSPORT_HEADER_SIZE + plaintext_length + AEAD_TAG_SIZE


def _exact(value: bytes, size: int) -> bytes:
    if len(value) != size:
        raise ValueError(f"field must be {size} bytes, got {len(value)}")
    return value
