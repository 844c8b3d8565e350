"""The home relay's protocol, sans-IO: tagged messages, frames, the HTTP upgrade, the set-up.

docs/relay.md is the specification; this module is its bytes, for the relay
(`pywg.mesh.relayserver`) and for clients alike. It opens no socket and
reads no clock; nonces come from `os.urandom`.

- *Tagged messages.* A WireGuard message's bytes 1..3 are reserved and zero
  (whitepaper §5.4); through the relay they carry a 24-bit node id: the
  destination on the way in, the source on the way out. `message_id` reads
  it from a message the relay may forward (type and size checked), `tag`
  and `untag` write it.
- *Frames* on the TCP transport: type (1 byte), payload length (4 bytes,
  big-endian), payload; `FrameDecoder` refuses a length over
  `MAX_FRAME_PAYLOAD` before buffering the payload.
- *The HTTP/1.1 upgrade* that opens the TCP transport inside TLS
  (RFC 9110 §7.8), and the 4xx answers that close anything else.
- *The set-up messages* (CHALLENGE, HELLO, PEER_HELLO, OK, CLOSE) with
  their Ed25519 signatures (RFC 8032), and the relay links' FORWARD,
  PRESENT and ABSENT payloads.

Parsing functions raise `RelayProtocolError` (a ValueError) for any input
that is not what the specification says, and nothing else; building
functions raise ValueError for arguments out of range.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, NamedTuple

from nacl.exceptions import CryptoError
from nacl.signing import SigningKey, VerifyKey

from ..constants import (
    COOKIE_REPLY_SIZE,
    INITIATION_SIZE,
    KEY_SIZE,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION,
    MESSAGE_RESPONSE,
    MESSAGE_TRANSPORT,
    RESPONSE_SIZE,
    TRANSPORT_MIN_SIZE,
)
from .tls import der_pin
from .wire import SIGNATURE_SIZE

PROTOCOL_VERSION: Final = 1
NODE_ID_SIZE: Final = 3  # the reserved bytes 1..3 of a WireGuard message
MAX_NODE_ID: Final = (1 << 24) - 1  # ids are 1..MAX_NODE_ID; 0 is never an id
MAX_DATAGRAM_SIZE: Final = 65535 - 20 - 8  # the largest UDP payload over IPv4 (RFC 791, RFC 768)
FRAME_HEADER_SIZE: Final = 5
MAX_FRAME_PAYLOAD: Final = MAX_DATAGRAM_SIZE + NODE_ID_SIZE  # FORWARD: source id + message
NONCE_SIZE: Final = 32
PING_SIZE: Final = 8
MAX_PRESENCE_IDS: Final = 1024
MAX_HEAD: Final = 4096  # bytes of an HTTP request or answer head, its final CRLF CRLF included
MAX_HEADERS: Final = 32
REFRESH_INTERVAL: Final = 25.0  # seconds between a node's UDP associations
ASSOCIATION_TTL: Final = 3 * REFRESH_INTERVAL  # a UDP association without a refresh ends
KEEPALIVE_INTERVAL: Final = 25.0  # a side that sent nothing for this long sends a PING
IDLE_TIMEOUT: Final = 3 * KEEPALIVE_INTERVAL  # a TCP connection that sent nothing is closed
UPGRADE_PATH: Final = "/pywg-relay"
UPGRADE_TOKEN: Final = "pywg-relay"
HELLO_CONTEXT: Final = b"pywg relay hello v1\0"
PEER_HELLO_CONTEXT: Final = b"pywg relay peer hello v1\0"
OK_CONTEXT: Final = b"pywg relay ok v1\0"

_SIZES: Final = {  # whitepaper §5.4: handshake messages have one size each
    MESSAGE_INITIATION: INITIATION_SIZE,
    MESSAGE_RESPONSE: RESPONSE_SIZE,
    MESSAGE_COOKIE_REPLY: COOKIE_REPLY_SIZE,
}
_HEAD_END: Final = b"\r\n\r\n"
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 §5.6.2
_VERSION_RE: Final = re.compile(r"HTTP/\d\.\d")
_REASONS: Final = {
    400: "Bad Request",
    404: "Not Found",
    431: "Request Header Fields Too Large",
}


class RelayProtocolError(ValueError):
    """Input that is not what docs/relay.md says; str() says what is wrong."""


class HttpRefusal(RelayProtocolError):
    """An HTTP request the relay does not take; `status` is the answer it gets (400, 404, 431)."""

    def __init__(self, status: int, problem: str) -> None:
        super().__init__(f"HTTP {status}: {problem}")
        self.status = status


class FrameType(IntEnum):
    CHALLENGE = 0x01
    HELLO = 0x02
    PEER_HELLO = 0x03
    OK = 0x04
    CLOSE = 0x05
    DATAGRAM = 0x06
    PING = 0x07
    PONG = 0x08
    FORWARD = 0x09
    PRESENT = 0x0A
    ABSENT = 0x0B


class CloseReason(IntEnum):
    REFUSED = 1  # not a member, not a known relay, a bad signature: not said which
    VERSION = 2
    MALFORMED = 3
    REPLACED = 4


# -- node ids and tagged messages ------------------------------------------------------------


def encode_id(node_id: int) -> bytes:
    """A node id as it travels: 3 bytes, big-endian; ValueError unless 1..MAX_NODE_ID."""
    if not 1 <= node_id <= MAX_NODE_ID:
        raise ValueError(f"a node id is 1..{MAX_NODE_ID}, not {node_id}")
    return node_id.to_bytes(NODE_ID_SIZE, "big")


def message_id(message: bytes | bytearray | memoryview) -> int:
    """The node id in bytes 1..3 of a message the relay forwards, or 0 if it forwards none.

    Forwarded: type 1, 2, 3 of exactly 148, 92, 64 bytes, type 4 of
    32..MAX_DATAGRAM_SIZE bytes (whitepaper §5.4), with an id that is not 0.
    """
    size = len(message)
    if size < TRANSPORT_MIN_SIZE:
        return 0
    kind = message[0]
    if kind == MESSAGE_TRANSPORT:
        if size > MAX_DATAGRAM_SIZE:
            return 0
    elif _SIZES.get(kind) != size:
        return 0
    return (message[1] << 16) | (message[2] << 8) | message[3]


def with_id(message: bytes | bytearray | memoryview, id_bytes: bytes) -> bytes:
    """`message` with bytes 1..3 replaced by `id_bytes` (3 bytes; unchecked: the relay's path)."""
    return b"".join((message[:1], id_bytes, message[4:]))


def tag(message: bytes | bytearray | memoryview, node_id: int) -> bytes:
    """A WireGuard message with `node_id` in its reserved bytes; ValueError unless it is an
    untagged message of a type and size the relay forwards, and the id is in range."""
    tagged = with_id(message, encode_id(node_id))
    if len(message) < NODE_ID_SIZE + 1 or any(message[1:4]) or message_id(tagged) == 0:
        raise ValueError("not an untagged WireGuard message of a forwarded type and size")
    return tagged


def untag(message: bytes | bytearray | memoryview) -> tuple[int, bytes]:
    """(source id, the message with bytes 1..3 zero, as WireGuard wants it).

    RelayProtocolError unless it is a message the relay forwards, tagged.
    """
    node_id = message_id(message)
    if node_id == 0:
        raise RelayProtocolError("not a tagged WireGuard message of a forwarded type and size")
    return node_id, with_id(message, bytes(NODE_ID_SIZE))


# -- frames ----------------------------------------------------------------------------------


class Frame(NamedTuple):
    kind: int  # a FrameType, or an unknown type (skipped once authenticated)
    payload: bytes


_FRAME_HEADER: Final = struct.Struct("!BI")  # type, payload length


def frame_header(kind: int, length: int) -> bytes:
    """The 5 bytes before a payload of `length` bytes."""
    if not 0 <= kind <= 0xFF or not 0 <= length <= MAX_FRAME_PAYLOAD:
        raise ValueError(f"frame type {kind} or length {length} out of range")
    return _FRAME_HEADER.pack(kind, length)


def encode_frame(kind: int, payload: bytes | bytearray | memoryview = b"") -> bytes:
    return frame_header(kind, len(payload)) + bytes(payload)


class FrameDecoder:
    """Frames from a byte stream, fed as it arrives.

    A length over `max_payload` raises RelayProtocolError as soon as its
    header is in, before any of the payload is kept, and so does every
    later `feed`: the stream cannot be resynchronised. Between calls at
    most one incomplete frame is kept (at most FRAME_HEADER_SIZE +
    max_payload bytes).
    """

    def __init__(self, max_payload: int = MAX_FRAME_PAYLOAD) -> None:
        self._buffer = bytearray()
        self._max = max_payload
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes kept for a frame not complete yet."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Every frame completed by `data`, in order."""
        if self._failed:
            raise RelayProtocolError("the frame stream failed before")
        buffer = self._buffer
        if buffer:
            buffer += data
        source = buffer if buffer else data  # a read of whole frames is parsed where it is
        frames: list[Frame] = []
        position, size, oversized = 0, len(source), 0
        with memoryview(source) as view:
            while size - position >= FRAME_HEADER_SIZE:
                kind, length = _FRAME_HEADER.unpack_from(view, position)
                if length > self._max:
                    oversized = length
                    break
                end = position + FRAME_HEADER_SIZE + length
                if end > size:
                    break
                frames.append(Frame(kind, bytes(view[position + FRAME_HEADER_SIZE : end])))
                position = end
            if source is not buffer and not oversized:
                buffer += view[position:]  # the incomplete frame at the end, if any
        if oversized:
            self._failed = True
            buffer.clear()
            raise RelayProtocolError(f"a frame of {oversized} bytes (at most {self._max})")
        if source is buffer and position:
            del buffer[:position]
        return frames


# -- the HTTP upgrade ------------------------------------------------------------------------


def upgrade_request(host: str) -> bytes:
    """The client's request (`host`: the relay's name or address, as in the Host header)."""
    if not host or not host.isascii() or any(c in host for c in " \t\r\n"):
        raise ValueError("a Host header value is ASCII without white space")
    return (
        f"GET {UPGRADE_PATH} HTTP/1.1\r\nHost: {host}\r\n"
        f"Upgrade: {UPGRADE_TOKEN}\r\nConnection: Upgrade\r\n\r\n"
    ).encode("ascii")


def upgrade_response() -> bytes:
    """The relay's 101 answer (RFC 9110 §15.2.2); the CHALLENGE frame follows it."""
    return (
        f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: {UPGRADE_TOKEN}\r\n"
        "Connection: Upgrade\r\n\r\n"
    ).encode("ascii")


def error_response(status: int) -> bytes:
    """A plain-text 4xx answer that closes the connection, as a web server's."""
    reason = _REASONS.get(status, "Bad Request")
    body = reason.lower().encode("ascii") + b"\n"
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def split_head(buffer: bytes | bytearray) -> tuple[bytes, bytes] | None:
    """(the head, the bytes after it) once the head is complete, else None.

    The head excludes its final empty line. HttpRefusal(431) once more than
    MAX_HEAD bytes came without the end of a head.
    """
    end = bytes(buffer[: MAX_HEAD + len(_HEAD_END)]).find(_HEAD_END)
    if end < 0 or end + len(_HEAD_END) > MAX_HEAD:
        if len(buffer) >= MAX_HEAD:
            raise HttpRefusal(431, "the head is too long")
        return None
    return bytes(buffer[:end]), bytes(buffer[end + len(_HEAD_END) :])


def _head_lines(head: bytes) -> list[str]:
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise HttpRefusal(400, "the head is not ASCII") from None
    lines = text.split("\r\n")
    if any("\r" in line or "\n" in line for line in lines):
        raise HttpRefusal(400, "a line does not end in CRLF")
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpRefusal(431, "too many header lines")
    return lines


def _headers(lines: list[str]) -> dict[str, list[str]]:
    """Header name (lower case) -> its values in order (RFC 9112 §5)."""
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN_RE.fullmatch(name):  # obs-fold too (§5.2)
            raise HttpRefusal(400, "a malformed header line")
        headers.setdefault(name.lower(), []).append(value.strip(" \t"))
    return headers


def _tokens(headers: dict[str, list[str]], name: str) -> set[str]:
    """The comma-separated tokens of every `name` header, lower case (RFC 9110 §5.6.1)."""
    return {
        token.strip(" \t").lower() for value in headers.get(name, ()) for token in value.split(",")
    }


def parse_upgrade_request(head: bytes) -> str:
    """The Host of the relay's upgrade request; HttpRefusal(status) for anything else."""
    lines = _head_lines(head)
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN_RE.fullmatch(parts[0]) or not parts[1]:
        raise HttpRefusal(400, "a malformed request line")
    method, target, version = parts
    if version != "HTTP/1.1":
        raise HttpRefusal(400, "not HTTP/1.1")
    headers = _headers(lines[1:])
    hosts = headers.get("host", [])
    if len(hosts) != 1:  # RFC 9112 §3.2
        raise HttpRefusal(400, "not exactly one Host header")
    if method != "GET" or target != UPGRADE_PATH:
        raise HttpRefusal(404, "not the relay's path")
    if UPGRADE_TOKEN not in _tokens(headers, "upgrade"):
        raise HttpRefusal(404, "no upgrade to the relay protocol")
    if "upgrade" not in _tokens(headers, "connection"):
        raise HttpRefusal(404, "no Connection: Upgrade")
    return hosts[0]


def parse_upgrade_response(head: bytes) -> None:
    """RelayProtocolError unless the head is the relay's 101 answer."""
    try:
        lines = _head_lines(head)
        parts = lines[0].split(" ", 2)
        headers = _headers(lines[1:])
    except HttpRefusal as exc:
        raise RelayProtocolError(f"a malformed answer: {exc}") from None
    if len(parts) < 2 or not _VERSION_RE.fullmatch(parts[0]):
        raise RelayProtocolError("the answer is not HTTP")
    if parts[1] != "101":
        raise RelayProtocolError(f"the relay answered {parts[1][:3]!r}, not 101")
    if UPGRADE_TOKEN not in _tokens(headers, "upgrade"):
        raise RelayProtocolError("the 101 answer does not upgrade to the relay protocol")
    if "upgrade" not in _tokens(headers, "connection"):
        raise RelayProtocolError("the 101 answer has no Connection: Upgrade")


# -- the set-up messages ---------------------------------------------------------------------


# SHA-256 of the relay's TLS certificate (DER): the channel binding the hellos sign
# (tls-server-end-point, RFC 5929 §4, always with SHA-256); the same as its pin.
certificate_binding = der_pin


def _verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(public_key).verify(message, signature)
    except (CryptoError, ValueError, TypeError):
        return False
    return True


def _exact(payload: bytes, size: int, what: str) -> None:
    if len(payload) != size:
        raise RelayProtocolError(f"{what} is {size} bytes, not {len(payload)}")


@dataclass(frozen=True, slots=True)
class Challenge:
    """CHALLENGE: the relay's first frame; `nonce` is used for one connection only."""

    version: int
    relay_key: bytes  # Ed25519 public
    nonce: bytes

    SIZE = 1 + KEY_SIZE + NONCE_SIZE

    @classmethod
    def new(cls, relay_key: bytes) -> Challenge:
        return cls(PROTOCOL_VERSION, relay_key, os.urandom(NONCE_SIZE))

    def encode(self) -> bytes:
        return bytes([self.version]) + self.relay_key + self.nonce

    @classmethod
    def parse(cls, payload: bytes) -> Challenge:
        _exact(payload, cls.SIZE, "a CHALLENGE")
        return cls(payload[0], payload[1 : 1 + KEY_SIZE], payload[1 + KEY_SIZE :])


@dataclass(frozen=True, slots=True)
class Hello:
    """HELLO (a node: `key` is its WireGuard key, signed by its control key) or PEER_HELLO
    (a relay: `key` is its relay key, which signs)."""

    version: int
    key: bytes
    signature: bytes

    SIZE = 1 + KEY_SIZE + SIGNATURE_SIZE

    def encode(self) -> bytes:
        return bytes([self.version]) + self.key + self.signature

    @classmethod
    def parse(cls, payload: bytes) -> Hello:
        _exact(payload, cls.SIZE, "a HELLO")
        return cls(payload[0], payload[1 : 1 + KEY_SIZE], payload[1 + KEY_SIZE :])

    def verify_node(self, control_key: bytes, challenge: Challenge, binding: bytes) -> bool:
        """Whether the node's control key (`control_key`) signed this for `challenge`."""
        signed = _hello_part(HELLO_CONTEXT, challenge, binding, self.key)
        return _verify(control_key, signed, self.signature)

    def verify_peer(self, challenge: Challenge, binding: bytes) -> bool:
        """Whether the relay key in this PEER_HELLO signed it for `challenge`."""
        signed = _hello_part(PEER_HELLO_CONTEXT, challenge, binding, self.key)
        return _verify(self.key, signed, self.signature)


def _hello_part(context: bytes, challenge: Challenge, binding: bytes, key: bytes) -> bytes:
    return context + challenge.relay_key + challenge.nonce + binding + key


def node_hello(
    wireguard_key: bytes, control: SigningKey, challenge: Challenge, binding: bytes
) -> Hello:
    """A node's HELLO for `challenge`, as seen through a certificate of `binding`."""
    if len(wireguard_key) != KEY_SIZE:
        raise ValueError("a WireGuard public key is 32 bytes")
    signed = _hello_part(HELLO_CONTEXT, challenge, binding, wireguard_key)
    return Hello(PROTOCOL_VERSION, wireguard_key, control.sign(signed).signature)


def peer_hello(relay: SigningKey, challenge: Challenge, binding: bytes) -> Hello:
    """A relay's PEER_HELLO for `challenge`, signed with its relay key."""
    key = bytes(relay.verify_key)
    signed = _hello_part(PEER_HELLO_CONTEXT, challenge, binding, key)
    return Hello(PROTOCOL_VERSION, key, relay.sign(signed).signature)


@dataclass(frozen=True, slots=True)
class Ok:
    """OK: the relay's acceptance of one hello, signed; `node_id` 0 on a relay link."""

    node_id: int
    signature: bytes

    SIZE = NODE_ID_SIZE + SIGNATURE_SIZE

    @classmethod
    def sign(cls, relay: SigningKey, hello: Hello, node_id: int) -> Ok:
        signed = _ok_part(hello.signature, node_id)
        return cls(node_id, relay.sign(signed).signature)

    def encode(self) -> bytes:
        return self.node_id.to_bytes(NODE_ID_SIZE, "big") + self.signature

    @classmethod
    def parse(cls, payload: bytes) -> Ok:
        _exact(payload, cls.SIZE, "an OK")
        return cls(int.from_bytes(payload[:NODE_ID_SIZE], "big"), payload[NODE_ID_SIZE:])

    def verify(self, relay_key: bytes, hello: Hello) -> bool:
        """Whether the relay of `relay_key` accepted `hello` with this."""
        return _verify(relay_key, _ok_part(hello.signature, self.node_id), self.signature)


def _ok_part(hello_signature: bytes, node_id: int) -> bytes:
    if not 0 <= node_id <= MAX_NODE_ID:
        raise ValueError(f"a node id is 0..{MAX_NODE_ID} in an OK")
    return OK_CONTEXT + hello_signature + node_id.to_bytes(NODE_ID_SIZE, "big")


def parse_close(payload: bytes) -> int:
    """The reason in a CLOSE (a CloseReason, or a number a later version added)."""
    _exact(payload, 1, "a CLOSE")
    return payload[0]


def parse_ping(payload: bytes) -> bytes:
    """The 8 bytes of a PING or PONG."""
    _exact(payload, PING_SIZE, "a PING")
    return payload


# -- relay links -----------------------------------------------------------------------------


def forward_payload(source_id: bytes, message: bytes | bytearray | memoryview) -> bytes:
    """FORWARD: the sender's id (3 bytes), then the message tagged with its destination."""
    return source_id + bytes(message)


def parse_forward(payload: bytes) -> tuple[int, int, memoryview]:
    """(source id, destination id, the message) of a FORWARD."""
    message = memoryview(payload)[NODE_ID_SIZE:]
    source = int.from_bytes(payload[:NODE_ID_SIZE], "big")
    destination = message_id(message)
    if source == 0 or destination == 0:
        raise RelayProtocolError("a FORWARD without a source id or a forwarded message")
    return source, destination, message


def presence_payloads(ids: list[int]) -> list[bytes]:
    """PRESENT or ABSENT payloads naming `ids`, at most MAX_PRESENCE_IDS each."""
    return [
        b"".join(encode_id(i) for i in ids[start : start + MAX_PRESENCE_IDS])
        for start in range(0, len(ids), MAX_PRESENCE_IDS)
    ]


def parse_presence(payload: bytes) -> list[int]:
    """The node ids of a PRESENT or ABSENT."""
    count, rest = divmod(len(payload), NODE_ID_SIZE)
    if rest or not 1 <= count <= MAX_PRESENCE_IDS:
        raise RelayProtocolError(f"a presence list of {len(payload)} bytes")
    ids = [
        int.from_bytes(payload[i : i + NODE_ID_SIZE], "big")
        for i in range(0, len(payload), NODE_ID_SIZE)
    ]
    if 0 in ids:
        raise RelayProtocolError("node id 0 in a presence list")
    return ids
