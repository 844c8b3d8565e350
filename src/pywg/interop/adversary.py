"""pywg's adversarial peer: a WireGuard initiator that sends what honest peers never do.

Theory of operation
-------------------
The adversary holds a static key that the implementation under test (the
*target*) knows as a peer, and talks to it over a :class:`Transport` (a UDP
socket in a lab host, or an in-memory :class:`pywg.Device` in unit tests).
Unlike :class:`pywg.Device` it keeps no protocol state machine of its own:
every message is crafted explicitly, so a scenario chooses each field the
protocol constrains — the TAI64N timestamp, the ephemeral key, the sender
index, mac1/mac2, the transport counter, the packet's inner addresses — and
then watches what the target answers.

- Handshakes follow whitepaper §5.4.2–§5.4.5 step by step
  (:func:`craft_initiation`, :meth:`CraftedInitiation.consume_response`) on
  pywg's primitives (:mod:`pywg.crypto`). The ``es`` step takes the shared
  secret as computed by the caller, so the same code builds an honest
  initiation and one with a low-order ephemeral key whose DH result is all
  zeros (whitepaper §5.4: such a result must be rejected).
- A :class:`Session` seals transport messages with any counter (§5.4.6) and
  opens the target's without a replay window of its own, so duplicates the
  target sends are seen, not hidden.
- The liveness probe is an ICMP/ICMPv6 echo through a session: the target
  decrypts the request, its kernel answers, and the target seals the reply
  (:func:`echo_request`, :func:`parse_echo`).
- :class:`Flooder` sends precomputed datagrams from a thread, to put a target
  under load (§5.3).

Nothing here prints or logs a secret: the reprs show indices and public keys.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol, TypedDict, Unpack

from .. import crypto
from ..constants import (
    AEAD_TAG_SIZE,
    CONSTRUCTION,
    COOKIE_NONCE_SIZE,
    COOKIE_SIZE,
    DEFAULT_MTU,
    IDENTIFIER,
    INITIATION_MAC1_OFFSET,
    INITIATION_MAC2_OFFSET,
    KEY_SIZE,
    MAC_SIZE,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_RESPONSE,
    RESPONSE_MAC1_OFFSET,
    RESPONSE_SIZE,
    TAI64N_NSEC_ROUND,
    TIMESTAMP_SIZE,
    TRANSPORT_HEADER_SIZE,
)
from ..cookie import cookie_key, mac1_key
from ..exceptions import DecryptionError, RemoteProtocolError
from ..keys import PrivateKey, PublicKey
from ..lab.hosts import Closing
from ..messages import (
    CookieReply,
    Initiation,
    Response,
    TransportHeader,
    message_type,
    pad,
    parse_cookie_reply,
    parse_response,
    parse_transport_header,
    serialize_cookie_reply,
    serialize_initiation,
    serialize_response,
    serialize_transport_header,
)
from ..noise import DhKeyPair
from .packets import (
    Echo,
    checksum,
    echo_reply_for,
    echo_request,
    parse_echo,
)

__all__ = [
    "LOW_ORDER_POINTS",
    "Adversary",
    "CraftedInitiation",
    "Echo",
    "EchoOptions",
    "EchoReply",
    "Received",
    "SentEcho",
    "Session",
    "Transport",
    "UdpTransport",
    "checksum",
    "cookie_reply",
    "craft_initiation",
    "echo_reply_for",
    "echo_request",
    "forged_response",
    "mac1",
    "mac2",
    "open_cookie_reply",
    "parse_echo",
    "tai64n_add",
    "with_macs",
]

_ZERO_KEY: Final = bytes(KEY_SIZE)
_le32 = struct.Struct("<I")
_U64_LIMIT: Final = 1 << 64

# Curve25519 points of small order (1, 2, 4, 8) and non-canonical encodings of
# them: X25519 of a clamped scalar (a multiple of 8) with any of these is the
# all-zero value, which whitepaper §5.4 (DH) requires a responder to reject.
# Public facts about the curve (Bernstein, "Curve25519: new Diffie-Hellman
# speed records", and its web page's list of points to reject); the unit tests
# check each yields zero.
LOW_ORDER_POINTS: Final[tuple[bytes, ...]] = (
    bytes(32),  # u = 0, order 2 (and the neutral element's image)
    b"\x01" + bytes(31),  # u = 1, order 4
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),  # order 8
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),  # order 8
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # p - 1
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # p (= 0)
    # p + 1 (= 1)
    bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
)


# ---------------------------------------------------------------------- MACs and cookies


def mac1(message: bytes, responder_public: bytes, offset: int) -> bytes:
    """mac1 = MAC(HASH(LABEL_MAC1 ‖ Spub_r), msg[0:offset]) (whitepaper §5.4.4)."""
    return crypto.mac(mac1_key(responder_public), message[:offset])


def mac2(message: bytes, cookie: bytes, offset: int) -> bytes:
    """mac2 = MAC(cookie, msg[0:offset]) (whitepaper §5.4.4)."""
    return crypto.mac(cookie, message[:offset])


def with_macs(
    message: bytes,
    responder_public: bytes,
    mac1_offset: int,
    *,
    cookie: bytes | None = None,
) -> bytes:
    """`message` with mac1 (and mac2 from `cookie`, zeros without one) filled in (§5.4.4)."""
    body = message[:mac1_offset]
    with_mac1 = body + mac1(body, responder_public, mac1_offset)
    second = bytes(MAC_SIZE) if cookie is None else mac2(with_mac1, cookie, len(with_mac1))
    return with_mac1 + second + message[mac1_offset + 2 * MAC_SIZE :]


def open_cookie_reply(reply: bytes, replier_public: bytes, sent_mac1: bytes) -> bytes:
    """The cookie inside a cookie reply (whitepaper §5.4.7).

    XAEAD(HASH(LABEL_COOKIE ‖ Spub_m), nonce, cookie, AD = the mac1 we sent).
    Raises RemoteProtocolError if it is not a 64-byte type-3 message or does
    not decrypt.
    """
    parsed = parse_cookie_reply(reply)
    key = cookie_key(replier_public)
    try:
        return crypto.xaead_decrypt(key, parsed.nonce, parsed.encrypted_cookie, sent_mac1)
    except DecryptionError as exc:
        raise RemoteProtocolError("cookie reply does not decrypt") from exc


def cookie_reply(
    receiver_index: int,
    cookie: bytes,
    answered_mac1: bytes,
    replier_public: bytes,
    rng: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """A well-formed cookie reply (§5.4.7), as the holder of `replier_public` would send it."""
    nonce = rng(COOKIE_NONCE_SIZE)
    sealed = crypto.xaead_encrypt(cookie_key(replier_public), nonce, cookie, answered_mac1)
    return serialize_cookie_reply(CookieReply(receiver_index, nonce, sealed))


def forged_response(
    sender_index: int,
    receiver_index: int,
    responder_public: bytes,
    rng: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """A 92-byte response with random contents but a valid mac1 for `responder_public`.

    It passes the DoS check (§5.4.4), so a target must look at its receiver
    index before refusing it.
    """
    body = Response(sender_index, receiver_index, crypto.dh_public(rng(32)), rng(AEAD_TAG_SIZE))
    message = with_macs(serialize_response(body), responder_public, RESPONSE_MAC1_OFFSET)
    assert len(message) == RESPONSE_SIZE
    return message


def _index_at(data: bytes, offset: int) -> int:
    index: int = _le32.unpack_from(data, offset)[0]
    return index


def tai64n_add(stamp: bytes, nanoseconds: int) -> bytes:
    """A TAI64N timestamp moved by `nanoseconds` (whitepaper §5.1; may be negative)."""
    seconds, nanos = struct.unpack(">QI", stamp)
    total = seconds * 1_000_000_000 + nanos + nanoseconds
    seconds, nanos = divmod(total, 1_000_000_000)
    return struct.pack(">QI", seconds, nanos)


# ---------------------------------------------------------------------- sessions


@dataclass(slots=True, eq=False, repr=False)
class Session:
    """One transport session as the adversary holds it (whitepaper §5.4.5–§5.4.6).

    `seal` takes any counter the caller chooses; `open` decrypts without a
    replay window, so a duplicate from the target is visible. (The core's
    transport sessions refuse both, as an honest peer must.)
    """

    send_key: bytes
    receive_key: bytes
    local_index: int  # the index the target sends to (ours)
    remote_index: int  # the index we send to (the target's)
    initiator: bool = field(kw_only=True)
    created: float = field(default=0.0, kw_only=True)
    label: str = field(default="", kw_only=True)
    next_counter: int = field(default=0, init=False)

    def seal(self, packet: bytes, counter: int | None = None, *, mtu: int = DEFAULT_MTU) -> bytes:
        """A transport message (§5.4.6) carrying `packet` padded as the core pads it.

        Without `counter` the next unused one is taken; with it, exactly that
        counter (any 64-bit value), and later automatic counters go above it.
        """
        if counter is None:
            counter = self.next_counter
        if not 0 <= counter < _U64_LIMIT:
            raise ValueError("a transport counter is an unsigned 64-bit integer")
        self.next_counter = max(self.next_counter, counter + 1)
        header = serialize_transport_header(self.remote_index, counter)
        return header + crypto.aead_encrypt(self.send_key, counter, pad(packet, mtu), b"")

    def keepalive(self, counter: int | None = None) -> bytes:
        """An empty transport message (§6.5); the first one confirms a responder's session."""
        return self.seal(b"", counter)

    def open(self, datagram: bytes) -> tuple[int, bytes] | None:
        """(counter, padded plaintext) of a transport message to this session, else None."""
        header = _transport_header(datagram)
        if header is None or header.receiver != self.local_index:
            return None
        try:
            plain = crypto.aead_decrypt(
                self.receive_key, header.counter, datagram[TRANSPORT_HEADER_SIZE:], b""
            )
        except DecryptionError:
            return None
        return header.counter, plain

    def __repr__(self) -> str:
        return (
            f"<Session {self.label or '?'} local={self.local_index:#010x} "
            f"remote={self.remote_index:#010x} next_counter={self.next_counter}>"
        )


def _transport_header(datagram: bytes) -> TransportHeader | None:
    """The header of a transport message (§5.4.6), None for anything else."""
    try:
        return parse_transport_header(datagram)
    except RemoteProtocolError:
        return None


# ---------------------------------------------------------------------- handshake


@dataclass(slots=True)
class _InitiatorState:
    """Ci, Hi after message 1 and the ephemeral private key: what reading message 2 needs."""

    chaining_key: bytes = field(repr=False)
    hash: bytes = field(repr=False)
    ephemeral_private: bytes | None = field(repr=False)  # None: a low-order point was sent
    static: DhKeyPair = field(repr=False)


@dataclass(frozen=True, slots=True)
class CraftedInitiation:
    """An initiation the adversary built (148 bytes, MACs filled) and what it needs later."""

    message: bytes
    sender_index: int
    timestamp: bytes
    responder_public: bytes
    low_order: bool  # the ephemeral key is a low-order point, es the all-zero value
    _state: _InitiatorState = field(repr=False)

    @property
    def mac1(self) -> bytes:
        return self.message[INITIATION_MAC1_OFFSET:INITIATION_MAC2_OFFSET]

    def with_cookie(self, cookie: bytes) -> bytes:
        """This message with mac2 = MAC(cookie, msg[0:132]) (§5.4.4)."""
        mac = mac2(self.message, cookie, INITIATION_MAC2_OFFSET)
        return self.message[:INITIATION_MAC2_OFFSET] + mac

    def consume_response(
        self, response: bytes, *, preshared_key: bytes | None = None, now: float = 0.0
    ) -> Session:
        """Read message 2 as the initiator (whitepaper §5.4.3, §5.4.5); the new session.

        Raises RemoteProtocolError if it is not a response to this initiation
        or does not authenticate. A low-order initiation's response is read
        with ee = 0, as a responder that skipped the zero check would derive.
        """
        msg = parse_response(response)
        if msg.receiver != self.sender_index:
            raise RemoteProtocolError("response to another initiation")
        if msg.mac1 != mac1(response, self._state.static.public, RESPONSE_MAC1_OFFSET):
            raise RemoteProtocolError("response mac1 is wrong")
        ephemeral = msg.ephemeral
        st = self._state
        c, h = st.chaining_key, st.hash
        c = crypto.kdf1(c, ephemeral)  # Cr := KDF1(Cr, Epub_r)
        h = crypto.hash_(h, ephemeral)  # Hr := HASH(Hr ‖ msg.ephemeral)
        if st.ephemeral_private is None:
            ee = _ZERO_KEY  # what X25519(low-order point, anything) gives
        else:
            ee = crypto.dh(st.ephemeral_private, ephemeral)
        c = crypto.kdf1(c, ee)  # Cr := KDF1(Cr, DH(Epriv_i, Epub_r)) (ee)
        c = crypto.kdf1(c, crypto.dh(st.static.private, ephemeral))  # se
        c, tau, kappa = crypto.kdf3(c, preshared_key or _ZERO_KEY)  # (Cr, τ, κ) := KDF3(Cr, Q)
        h = crypto.hash_(h, tau)
        try:
            empty = crypto.aead_decrypt(kappa, 0, msg.encrypted_nothing, h)  # AEAD(κ, 0, ε, Hr)
        except DecryptionError as exc:
            raise RemoteProtocolError("response does not authenticate") from exc
        if empty:
            raise RemoteProtocolError("response payload is not empty")
        send_key, receive_key = crypto.kdf2(c, b"")  # §5.4.5: (T_send, T_recv) := KDF2(Ci, ε)
        return Session(
            send_key, receive_key, self.sender_index, msg.sender, initiator=True, created=now
        )

    def __repr__(self) -> str:
        kind = "low-order" if self.low_order else "honest"
        return f"<CraftedInitiation {kind} sender={self.sender_index:#010x}>"


def craft_initiation(
    static: DhKeyPair,
    responder_public: bytes,
    sender_index: int,
    timestamp: bytes,
    *,
    ephemeral: DhKeyPair | None = None,
    low_order_point: bytes | None = None,
    cookie: bytes | None = None,
    rng: Callable[[int], bytes] = os.urandom,
) -> CraftedInitiation:
    """Message 1 by the steps of whitepaper §5.4.2, MACs included (§5.4.4).

    Honest by default: a fresh (or the given) ephemeral key pair and
    es = DH(Epriv_i, Spub_r). With `low_order_point`, that point is sent as
    the ephemeral public key and es is the all-zero value X25519 yields for
    it, so the message authenticates at a responder that does not reject an
    all-zero DH result (§5.4: it must). `timestamp` is any 12 bytes (TAI64N,
    §5.1); `cookie` fills mac2.
    """
    if len(timestamp) != TIMESTAMP_SIZE:
        raise ValueError("a TAI64N timestamp is 12 bytes")
    if low_order_point is not None:
        if ephemeral is not None:
            raise ValueError("either an ephemeral key pair or a low-order point")
        e_public, e_private, es = low_order_point, None, _ZERO_KEY
    else:
        if ephemeral is None:
            ephemeral = DhKeyPair.from_private(rng(KEY_SIZE))
        e_public, e_private = ephemeral.public, ephemeral.private
        es = crypto.dh(ephemeral.private, responder_public)
    c = crypto.hash_(CONSTRUCTION)  # Ci := HASH(CONSTRUCTION)
    h = crypto.hash_(c, IDENTIFIER)  # Hi := HASH(Ci ‖ IDENTIFIER)
    h = crypto.hash_(h, responder_public)  # Hi := HASH(Hi ‖ Spub_r)
    c = crypto.kdf1(c, e_public)  # Ci := KDF1(Ci, Epub_i)
    h = crypto.hash_(h, e_public)  # Hi := HASH(Hi ‖ msg.ephemeral)
    c, kappa = crypto.kdf2(c, es)  # (Ci, κ) := KDF2(Ci, DH(Epriv_i, Spub_r))
    encrypted_static = crypto.aead_encrypt(kappa, 0, static.public, h)
    h = crypto.hash_(h, encrypted_static)
    c, kappa = crypto.kdf2(c, crypto.dh(static.private, responder_public))  # ss
    encrypted_timestamp = crypto.aead_encrypt(kappa, 0, timestamp, h)
    h = crypto.hash_(h, encrypted_timestamp)
    body = serialize_initiation(
        Initiation(sender_index, e_public, encrypted_static, encrypted_timestamp)
    )
    message = with_macs(body, responder_public, INITIATION_MAC1_OFFSET, cookie=cookie)
    state = _InitiatorState(c, h, e_private, static)
    return CraftedInitiation(
        message, sender_index, timestamp, responder_public, low_order_point is not None, state
    )


# ---------------------------------------------------------------------- transports


class Transport(Protocol):
    """Where the adversary's datagrams go and the target's come from."""

    def send(self, data: bytes) -> None: ...

    def recv(self, timeout: float) -> bytes | None:
        """The next datagram from the target, or None after `timeout` seconds."""
        ...

    def close(self) -> None: ...


class UdpTransport:
    """A UDP socket talking to one endpoint; datagrams from anywhere else are ignored."""

    def __init__(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        self.sock = sock
        self.peer = peer
        self.ignored = 0  # datagrams from other sources

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.peer)

    def recv(self, timeout: float) -> bytes | None:
        end = time.monotonic() + max(timeout, 0.0)
        for _ in range(10_000):  # bounded: stray datagrams cannot keep us here
            left = end - time.monotonic()
            try:
                if left <= 0:
                    self.sock.setblocking(False)
                else:
                    self.sock.settimeout(left)
                data, addr = self.sock.recvfrom(65535)
            except (TimeoutError, BlockingIOError):
                return None
            if (str(ipaddress.ip_address(addr[0].split("%")[0])), addr[1]) == (
                str(ipaddress.ip_address(self.peer[0])),
                self.peer[1],
            ):
                return data
            self.ignored += 1
        return None

    def close(self) -> None:
        self.sock.close()

    def __repr__(self) -> str:
        return f"<UdpTransport to {self.peer}>"


# ---------------------------------------------------------------------- the adversary


@dataclass(frozen=True, slots=True)
class Received:
    """One datagram from the target and when it arrived (adversary clock)."""

    at: float
    data: bytes

    @property
    def type(self) -> int:
        """The message type (1–4), 0 for anything else (:func:`pywg.messages.message_type`)."""
        return message_type(self.data)


@dataclass(frozen=True, slots=True)
class SentEcho:
    """An echo request the adversary sent through a session."""

    datagram: bytes
    packet: bytes
    counter: int
    ident: int
    seq: int
    session: Session


ECHO_TIMEOUT: Final = 3.0


class EchoOptions(TypedDict, total=False):
    """How :meth:`Adversary.make_echo` builds an echo request; every field is optional.

    `counter`: the transport counter (default: the session's next);
    `version`: 4 or 6 (default 4); `source`: the inner source address
    (default: the adversary's tunnel address of `version`); `destination`
    (default: the target's, of the source's family); `total_length`: the IP
    packet's length (default: as long as the payload makes it).
    """

    counter: int | None
    version: int
    source: str | None
    destination: str | None
    total_length: int | None


class Adversary(Closing):
    """The adversarial peer (see the module docstring).

    `static` is the adversary's private key (the target has its public key
    as a peer), `target_public` the target's static public key. `tunnel4`/
    `tunnel6` are the adversary's allowed IPs on the target, `target4`/
    `target6` the target's tunnel addresses (the echo destinations). Clocks
    and randomness are injectable, so unit tests run it against an
    in-memory Device.
    """

    def __init__(
        self,
        transport: Transport,
        static: PrivateKey,
        target_public: PublicKey,
        *,
        tunnel4: str,
        tunnel6: str,
        target4: str,
        target6: str,
        mtu: int = DEFAULT_MTU,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.transport = transport
        self.static = DhKeyPair(bytes(static), bytes(static.public_key))
        self.target_public = bytes(target_public)
        self.tunnel4, self.tunnel6 = tunnel4, tunnel6
        self.target4, self.target6 = target4, target6
        self.mtu = mtu
        self.clock, self.sleep, self.wall_clock, self.rng = clock, sleep, wall_clock, rng
        self.sessions: dict[int, Session] = {}  # by our (local) index
        self.log: list[Received] = []  # everything received, in order
        self.inbox: list[Received] = []  # received but not yet claimed by a wait
        self.last_timestamp = bytes(TIMESTAMP_SIZE)
        self.ident = int.from_bytes(rng(2), "little")
        self._seq = 0

    # -- plumbing ---------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.transport.send(data)

    def _receive(self, timeout: float) -> Received | None:
        data = self.transport.recv(timeout)
        if data is None:
            return None
        got = Received(self.clock(), data)
        self.log.append(got)
        return got

    def drain(self) -> list[Received]:
        """Everything already waiting (inbox and transport), claimed and returned."""
        out, self.inbox = self.inbox, []
        for _ in range(10_000):
            got = self._receive(0.0)
            if got is None:
                break
            out.append(got)
        return out

    def collect(self, window: float) -> list[Received]:
        """Every datagram arriving within `window` seconds (plus the unclaimed inbox)."""
        out, self.inbox = self.inbox, []
        end = self.clock() + window
        for _ in range(100_000):
            left = end - self.clock()
            if left <= 0:
                break
            got = self._receive(left)
            if got is not None:
                out.append(got)
        return out

    def wait_for(self, match: Callable[[Received], bool], timeout: float) -> Received | None:
        """The first datagram (inbox first) for which `match` holds, within `timeout` s.

        Datagrams that do not match stay in the inbox for later waits.
        """
        for i, got in enumerate(self.inbox):
            if match(got):
                del self.inbox[i]
                return got
        end = self.clock() + timeout
        for _ in range(100_000):
            left = end - self.clock()
            if left <= 0:
                return None
            new = self._receive(left)
            if new is None:
                continue
            if match(new):
                return new
            self.inbox.append(new)
        return None

    def close(self) -> None:
        self.transport.close()

    def __repr__(self) -> str:
        return f"<Adversary {PublicKey(self.static.public)} sessions={len(self.sessions)}>"

    # -- handshakes -------------------------------------------------------------

    def new_index(self) -> int:
        """A fresh random 32-bit sender index not used by one of our sessions."""
        for _ in range(100):
            index = int.from_bytes(self.rng(4), "little")
            if index not in self.sessions:
                return index
        raise RuntimeError("no free index")  # pragma: no cover - 2^-3200

    def timestamp(self) -> bytes:
        """TAI64N of the wall clock (§5.1), later than any this adversary made before."""
        stamp = crypto.tai64n(self.wall_clock())
        if stamp <= self.last_timestamp:
            stamp = tai64n_add(self.last_timestamp, TAI64N_NSEC_ROUND)
        self.last_timestamp = stamp
        return stamp

    def initiation(
        self,
        timestamp: bytes | None = None,
        *,
        low_order_point: bytes | None = None,
        cookie: bytes | None = None,
        sender_index: int | None = None,
        static: DhKeyPair | None = None,
    ) -> CraftedInitiation:
        """A new initiation to the target (fresh ephemeral and index unless told otherwise)."""
        if timestamp is None:
            timestamp = self.timestamp()
        else:
            self.last_timestamp = max(self.last_timestamp, timestamp)
        return craft_initiation(
            static or self.static,
            self.target_public,
            self.new_index() if sender_index is None else sender_index,
            timestamp,
            low_order_point=low_order_point,
            cookie=cookie,
            rng=self.rng,
        )

    def await_answer(self, crafted: CraftedInitiation, timeout: float) -> Received | None:
        """The response or cookie reply addressed to `crafted`'s sender index, if any comes."""

        def answers(got: Received) -> bool:
            if got.type == MESSAGE_RESPONSE and len(got.data) >= 12:
                return _index_at(got.data, 8) == crafted.sender_index
            if got.type == MESSAGE_COOKIE_REPLY and len(got.data) >= 8:
                return _index_at(got.data, 4) == crafted.sender_index
            return False

        return self.wait_for(answers, timeout)

    def complete(self, crafted: CraftedInitiation, response: bytes, *, label: str = "") -> Session:
        """Read the response, keep the session and confirm it with a keepalive (§5.4.5, §6.5)."""
        session = crafted.consume_response(response, now=self.clock())
        session.label = label
        self.sessions[session.local_index] = session
        self.send(session.keepalive())
        return session

    def handshake(
        self, *, timestamp: bytes | None = None, timeout: float = 10.0, label: str = ""
    ) -> tuple[CraftedInitiation, Session]:
        """An honest handshake: initiation, response, confirming keepalive.

        An unanswered initiation is retried (a new one, later timestamp)
        every 2 s until `timeout`. Raises TimeoutError when none is answered.
        """
        end = self.clock() + timeout
        for _ in range(max(1, int(timeout / 2) + 1)):
            crafted = self.initiation(timestamp)
            timestamp = None  # a retry needs a later one
            self.send(crafted.message)
            got = self.await_answer(crafted, min(2.0, max(0.1, end - self.clock())))
            if got is not None and got.type == MESSAGE_RESPONSE:
                return crafted, self.complete(crafted, got.data, label=label)
            if self.clock() >= end:
                break
            self.sleep(0.05)  # implementations take at most 50 initiations/s per peer
        raise TimeoutError(f"no response to an initiation within {timeout:g} s")

    # -- transport --------------------------------------------------------------

    def open_any(self, data: bytes) -> tuple[Session, int, bytes] | None:
        """(session, counter, plaintext) if a transport message opens under one of ours."""
        header = _transport_header(data)
        session = None if header is None else self.sessions.get(header.receiver)
        if session is None:
            return None
        opened = session.open(data)
        return None if opened is None else (session, *opened)

    def make_echo(self, session: Session, **options: Unpack[EchoOptions]) -> SentEcho:
        """Seal an echo request (see :class:`EchoOptions`) through `session` without sending it."""
        version = options.get("version", 4)
        source = options.get("source") or (self.tunnel6 if version == 6 else self.tunnel4)
        destination = options.get("destination") or (
            self.target6 if ":" in source else self.target4
        )
        counter = options.get("counter")
        self._seq = (self._seq + 1) & 0xFFFF
        payload = b"pywg-adversary-%d" % self._seq
        packet = echo_request(
            source,
            destination,
            self.ident,
            self._seq,
            payload,
            total_length=options.get("total_length"),
        )
        used = session.next_counter if counter is None else counter
        datagram = session.seal(packet, counter, mtu=self.mtu)
        return SentEcho(datagram, packet, used, self.ident, self._seq, session)

    def send_echo(self, session: Session, **options: Unpack[EchoOptions]) -> SentEcho:
        """Seal an echo request through `session` and send it (nothing is awaited)."""
        sent = self.make_echo(session, **options)
        self.send(sent.datagram)
        return sent

    def await_echo(self, sent: SentEcho, timeout: float = ECHO_TIMEOUT) -> EchoReply | None:
        """The echo reply to `sent` (under any of our sessions), or None within `timeout`."""
        found: list[EchoReply] = []

        def is_reply(got: Received) -> bool:
            opened = self.open_any(got.data)
            if opened is None:
                return False
            session, counter, plain = opened
            echo = parse_echo(plain)
            if echo is None or echo.is_request or echo.ident != sent.ident or echo.seq != sent.seq:
                return False
            found.append(EchoReply(echo, plain, session, counter, got.data))
            return True

        self.wait_for(is_reply, timeout)
        return found[0] if found else None

    def echo(
        self,
        session: Session,
        *,
        timeout: float = ECHO_TIMEOUT,
        **options: Unpack[EchoOptions],
    ) -> EchoReply | None:
        """One echo round trip through `session`: the reply, or None within `timeout`."""
        return self.await_echo(self.send_echo(session, **options), timeout)

    def echo_replies_to(self, sent: SentEcho, received: Sequence[Received]) -> int:
        """How many of `received` are echo replies to `sent` (for "no second reply" checks)."""
        count = 0
        for got in received:
            opened = self.open_any(got.data)
            if opened is None:
                continue
            echo = parse_echo(opened[2])
            if echo is not None and not echo.is_request:
                count += echo.ident == sent.ident and echo.seq == sent.seq
        return count


@dataclass(frozen=True, slots=True)
class EchoReply:
    """An echo reply the target sealed, with the session and counter it came under."""

    echo: Echo
    plaintext: bytes  # the whole padded plaintext
    session: Session
    counter: int
    datagram: bytes


assert COOKIE_SIZE == MAC_SIZE  # a cookie is a 16-byte MAC (§5.4.7)
