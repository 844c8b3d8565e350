"""The sans-IO WireGuard device: datagrams and IP packets in, datagrams and IP packets out.

Theory of operation
-------------------
A `Device` is one WireGuard interface: our static key pair, a set of peers
and the cryptokey-routing table mapping allowed IPs to peers (whitepaper §3).
It performs no I/O and reads no clock. The caller feeds it

- `receive_datagram(data, addr, now)`: anything that arrived on the UDP socket;
- `send_packet(packet, now)`: an IP packet read from the TUN device;
- `handle_timer(now)`: when `get_timer()`'s deadline has passed;

and pulls what it produced with `datagrams_to_send()`, `packets_to_write()`
and `next_event()`.

Incoming datagrams are dispatched by type (§5.4): handshake initiations are
checked for mac1 (and, under load, mac2 and a per-source rate limit), then
consumed; responses complete our pending handshake; cookie replies are stored
for the next retry; transport messages are routed by receiver index to a
session, opened, checked against the replay window and against the peer's
allowed IPs (cryptokey routing: the inner source must belong to the peer).
Anything malformed or unauthenticated is dropped and counted in `dropped`,
never raised, and never changes a session.

Outgoing packets are routed by destination to a peer; without a usable
session they are staged (bounded) and a handshake starts. Timers follow §6,
see `pywg.timers`. The only clock-like input besides `now` is the injectable
`wall_clock`, used for TAI64N timestamps (which must increase across
restarts, so they cannot come from a monotonic clock).
"""

from __future__ import annotations

import enum
import os
import struct
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, assert_never

from .allowedips import AllowedIPs, Prefix, PrefixList, parse_prefix
from .backend import BACKEND
from .constants import (
    DEFAULT_MTU,
    INITIATION_MAC1_OFFSET,
    INITIATION_MAC2_OFFSET,
    INITIATION_MIN_INTERVAL,
    MAX_TIMER_HANDSHAKES,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION,
    MESSAGE_RESPONSE,
    MESSAGE_TRANSPORT,
    REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME,
    REKEY_ON_RECEIVE_AGE,
    REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER_MAX,
    RESPONSE_MAC1_OFFSET,
    RESPONSE_MAC2_OFFSET,
    SENDER_INDEX_OFFSET,
    TAI64N_NSEC_ROUND,
    TRANSPORT_HEADER_SIZE,
    TRANSPORT_MIN_SIZE,
    UNDER_LOAD_AFTER_TIME,
    UNDER_LOAD_THRESHOLD,
    UNDER_LOAD_WINDOW,
    ZERO_KEY_MATERIAL_AFTER,
)
from .cookie import CookieChecker, source_bytes
from .crypto import tai64n
from .endpoint import AddressLike, Endpoint, normalize_endpoint
from .events import (
    EndpointChanged,
    Event,
    HandshakeCompleted,
    HandshakeTimedOut,
    SessionsExpired,
)
from .exceptions import LocalProtocolError, RemoteProtocolError
from .handshake import consume_initiation, consume_response, create_initiation, create_response
from .indextable import IndexTable
from .keys import (
    PresharedKey,
    PrivateKey,
    PublicKey,
    as_preshared_key,
    as_private_key,
    as_public_key,
)
from .messages import (
    message_type,
    pad,
    parse_cookie_reply,
    parse_initiation,
    parse_response,
)
from .noise import DhKeyPair
from .peer import Peer, PendingHandshake
from .ratelimiter import RateLimiter
from .redact import quote
from .session import Session
from .timers import Timer

if TYPE_CHECKING or BACKEND != "native":
    RoutingTable = AllowedIPs
else:  # the same API and answers, kept in C (pywg._fast.routes)
    from ._fast.routes import NativeAllowedIPs as RoutingTable

_UNSET: Final = object()
_transport_header = struct.Struct("<IIQ")
_le32 = struct.Struct("<I")


class _Traffic(enum.IntEnum):
    """What `Device.record_traffic` replays into the timers; at equal times, lower runs first."""

    DATA_SENT = 0  # `sent_at`: data went out
    AUTHENTICATED_RECEIVED = 1  # `received_at`: an authenticated transport message came in
    DATA_RECEIVED = 2  # `data_received_at`: one that carried data came in


def _inner_addresses(packet: bytes) -> tuple[bytes, bytes, int] | None:
    """(source, destination, total length) of an IPv4/IPv6 packet, or None if malformed."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4:
        if len(packet) < 20:
            return None
        total = (packet[2] << 8) | packet[3]
        if total < 20 or total > len(packet):
            return None
        return packet[12:16], packet[16:20], total
    if version == 6:
        if len(packet) < 40:
            return None
        total = 40 + ((packet[4] << 8) | packet[5])
        if total > len(packet):
            return None
        return packet[8:24], packet[24:40], total
    return None


class Device:
    """One WireGuard interface, sans-IO. See the module docstring."""

    def __init__(
        self,
        private_key: PrivateKey | str | bytes | None = None,
        listen_port: int = 0,
        *,
        mtu: int = DEFAULT_MTU,
        rng: Callable[[int], bytes] = os.urandom,
        wall_clock: Callable[[], float] = time.time,
        under_load_threshold: int = UNDER_LOAD_THRESHOLD,
    ) -> None:
        self._rng = rng
        self._wall_clock = wall_clock
        self.listen_port = listen_port
        self.mtu = mtu
        self.fwmark = 0
        self.under_load_threshold = under_load_threshold
        self._peers: dict[PublicKey, Peer] = {}
        self._peers_by_raw: dict[bytes, Peer] = {}
        self._allowed: AllowedIPs[Peer] = RoutingTable()
        self._indices: IndexTable[tuple[Peer, Session | None]] = IndexTable(rng)
        self._ratelimiter = RateLimiter()
        self._datagrams: list[tuple[bytes, Endpoint]] = []
        self._packets: list[bytes] = []
        self._events: deque[Event] = deque()
        self._last_timestamp = bytes(12)
        self._load_window_start = float("-inf")
        self._load_count = 0
        self._under_load_until = float("-inf")
        self.dropped: Counter[str] = Counter()
        self._timers_changed = True
        self._authenticated = False  # the datagram being received set a peer's endpoint
        self._next_deadline: float | None = None
        # a rotated-away identity still answered until its deadline: (static, checker, until)
        self._retired: tuple[DhKeyPair, CookieChecker, float] | None = None
        self.set_private_key(private_key)

    # ------------------------------------------------------------------ config
    @property
    def private_key(self) -> PrivateKey | None:
        """Our static private key, or None before one is set (a fresh daemon has none)."""
        return self._private_key

    @property
    def public_key(self) -> PublicKey | None:
        return self._public_key

    def set_private_key(self, private_key: PrivateKey | str | bytes | None) -> None:
        """Change our identity; every session and handshake in progress is dropped.

        None removes the identity (as `private_key=` with zeros does over the
        UAPI): the device then drops every handshake message and only stages
        outgoing packets until a key is set.
        """
        self._set_identity(private_key)
        self._retired = None
        for peer in self._peers.values():
            self._zero_peer(peer)

    def _set_identity(self, private_key: PrivateKey | str | bytes | None) -> None:
        self._timers_changed = True
        self._private_key: PrivateKey | None = None
        self._public_key: PublicKey | None = None
        self._static: DhKeyPair | None = None
        self._cookie_checker: CookieChecker | None = None
        if private_key is not None:
            key = as_private_key(private_key)
            self._private_key, self._public_key = key, key.public_key
            self._static = DhKeyPair(bytes(key), bytes(key.public_key))
            self._cookie_checker = CookieChecker(bytes(key.public_key), self._rng)

    def rotate_private_key(self, private_key: PrivateKey | str | bytes, grace_until: float) -> None:
        """Take a new identity, keeping every session (transport keys do not depend on the
        static keys, whitepaper §5.4.4), and until `grace_until` (the caller's clock) still
        answer handshake messages addressed to the old one: peers that have not learnt the
        new key yet go on handshaking with the old (`retired_public_key`). New handshakes
        start with the new key. LocalProtocolError without a current key, or if the new
        key is a peer's."""
        if self._static is None or self._cookie_checker is None:
            raise LocalProtocolError("no identity to rotate (set a private key)")
        key = as_private_key(private_key)
        if key.public_key in self._peers:
            raise LocalProtocolError("a device cannot be its own peer")
        if key.public_key == self._public_key:
            return
        retired = (self._static, self._cookie_checker, grace_until)
        self._set_identity(key)
        self._retired = retired

    @property
    def retired_public_key(self) -> PublicKey | None:
        """The identity rotated away from, while it is still answered (None: none)."""
        return PublicKey(self._retired[0].public) if self._retired is not None else None

    def change_peer_key(
        self, public_key: PublicKey | str | bytes, new_key: PublicKey | str | bytes
    ) -> Peer:
        """Give a peer a new public key in place (the peer rotated its key): its sessions,
        pending handshake, endpoint, allowed IPs, timers and counters stay, so traffic
        flows on (transport keys do not depend on the static keys, whitepaper §5.4.4).
        LocalProtocolError if there is no such peer or the new key is taken."""
        peer = self.peer(public_key)
        new = as_public_key(new_key)
        if new == peer.public_key:
            return peer
        if new in self._peers:
            raise LocalProtocolError("peer exists already")
        if new == self.public_key:
            raise LocalProtocolError("a device cannot be its own peer")
        del self._peers[peer.public_key]
        del self._peers_by_raw[bytes(peer.public_key)]
        peer.rekey(new)
        self._peers[new] = peer
        self._peers_by_raw[bytes(new)] = peer
        return peer

    @property
    def peers(self) -> dict[PublicKey, Peer]:
        """The peers by public key (a copy; change them through the Device)."""
        return dict(self._peers)

    def has_peer(self, public_key: PublicKey) -> bool:
        """Whether `public_key` is a peer (without copying the table, as `peers` does)."""
        return public_key in self._peers

    def peer(self, public_key: PublicKey | str | bytes) -> Peer:
        try:
            return self._peers[as_public_key(public_key)]
        except KeyError:
            raise LocalProtocolError("no such peer") from None

    def add_peer(
        self,
        public_key: PublicKey | str | bytes,
        allowed_ips: Iterable[str | Prefix] | PrefixList = (),
        endpoint: AddressLike | None = None,
        preshared_key: PresharedKey | str | bytes | None = None,
        persistent_keepalive: int | None = None,
    ) -> Peer:
        """Add a peer (whitepaper §3). Raises LocalProtocolError if it exists already."""
        self._timers_changed = True
        pub = as_public_key(public_key)
        if pub in self._peers:
            raise LocalProtocolError("peer exists already")
        if pub == self.public_key:
            raise LocalProtocolError("a device cannot be its own peer")
        networks = _prefixes(allowed_ips)  # all valid before any change
        ep = normalize_endpoint(endpoint) if endpoint is not None else None
        keepalive = _keepalive(persistent_keepalive)
        peer = Peer(
            pub,
            preshared_key=as_preshared_key(preshared_key),
            endpoint=ep,
            persistent_keepalive=keepalive,
        )
        self._peers[pub] = peer
        self._peers_by_raw[bytes(pub)] = peer
        self._allowed.insert_many(networks, peer)
        return peer

    def update_peer(
        self,
        public_key: PublicKey | str | bytes,
        *,
        endpoint: object = _UNSET,
        preshared_key: object = _UNSET,
        persistent_keepalive: object = _UNSET,
        allowed_ips: Iterable[str | Prefix] | PrefixList | None = None,
        replace_allowed_ips: bool = False,
        remove_allowed_ips: Iterable[str | Prefix] | PrefixList = (),
        now: float | None = None,
    ) -> Peer:
        """Change a peer's configuration; arguments not given stay as they are.

        With `now`, changes that call for traffic act at once: a new endpoint
        for a peer with staged packets starts a handshake without waiting for
        the retry timer, and turning on persistent keepalive sends one
        (as the cross-platform UAPI specifies).
        """
        self._timers_changed = True
        peer = self.peer(public_key)
        add = _prefixes(allowed_ips or ())
        remove = _prefixes(remove_allowed_ips)
        new_ep = peer.endpoint
        if endpoint is not _UNSET:
            new_ep = None if endpoint is None else normalize_endpoint(endpoint)  # type: ignore[arg-type]
        new_psk = peer.preshared_key
        if preshared_key is not _UNSET:
            new_psk = as_preshared_key(preshared_key)  # type: ignore[arg-type]
        old_keepalive = peer.persistent_keepalive
        new_keepalive = old_keepalive
        if persistent_keepalive is not _UNSET:
            new_keepalive = _keepalive(persistent_keepalive)  # type: ignore[arg-type]
        # validated: apply
        endpoint_changed = new_ep != peer.endpoint
        peer.endpoint = new_ep
        peer.preshared_key = new_psk
        peer.timers.persistent_keepalive_interval = new_keepalive
        if new_keepalive == 0:
            peer.timers.stop(Timer.PERSISTENT_KEEPALIVE)
        if replace_allowed_ips:
            self._allowed.remove_by_value(peer)
        self._allowed.remove_many(remove, peer)
        self._allowed.insert_many(add, peer)
        if now is not None and new_ep is not None:
            if endpoint_changed and peer.staged:
                peer.last_sent_handshake = float("-inf")  # don't wait out REKEY_TIMEOUT
                self._send_staged(peer, now)
            if old_keepalive == 0 and new_keepalive > 0:
                self._send_keepalive(peer, now)
        return peer

    def remove_peer(self, public_key: PublicKey | str | bytes) -> None:
        self._timers_changed = True
        peer = self.peer(public_key)
        self._zero_peer(peer)
        peer.timers.stop_all()
        peer.staged.clear()
        self._allowed.remove_by_value(peer)
        del self._peers[peer.public_key]
        del self._peers_by_raw[bytes(peer.public_key)]

    def allowed_ips(self, public_key: PublicKey | str | bytes) -> list[str]:
        return [str(prefix) for prefix in self._allowed.prefixes_of(self.peer(public_key))]

    def allowed_ip_records(self, public_key: PublicKey | str | bytes) -> PrefixList:
        """`allowed_ips`, packed (for the UAPI's get answer): in the order they were assigned."""
        return self._allowed.records_of(self.peer(public_key))

    @property
    def routing_version(self) -> int:
        """Changes whenever any peer's allowed IPs change (for mirrors of the table)."""
        return self._allowed.version

    @property
    def routing_table(self) -> AllowedIPs[Peer]:
        """The table itself, read-only (for a mirror that copies it whole)."""
        return self._allowed

    def route_prefixes(self) -> list[tuple[Prefix, Peer]]:
        """`routes` as `Prefix`es: the fast form for mirroring the table."""
        return list(self._allowed.prefixes())

    def routes(self) -> list[tuple[str, Peer]]:
        """Every allowed-IPs prefix with its peer."""
        return [(str(network), peer) for network, peer in self._allowed.items()]

    def route(self, address: str | bytes) -> Peer | None:
        """The peer that cryptokey routing picks for a destination address."""
        return self._allowed.lookup(address)

    # ------------------------------------------------------------------ outputs
    def datagrams_to_send(self) -> list[tuple[bytes, Endpoint]]:
        out, self._datagrams = self._datagrams, []
        return out

    def packets_to_write(self) -> list[bytes]:
        out, self._packets = self._packets, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest timer deadline of any peer, or None (absolute, caller's clock)."""
        if self._timers_changed:  # only Device methods change timers: recompute lazily
            best: float | None = self._retired[2] if self._retired is not None else None
            for peer in self._peers.values():
                d = peer.timers.next_deadline()
                if d is not None and (best is None or d < best):
                    best = d
            self._next_deadline = best
            self._timers_changed = False
        return self._next_deadline

    @property
    def index_table_size(self) -> int:
        return len(self._indices)

    # ------------------------------------------------------------------ inputs
    def send_packet(self, packet: bytes, now: float) -> None:
        """An IP packet from the TUN: route it to a peer, encrypt or stage it."""
        self._timers_changed = True
        packet = bytes(packet)
        addrs = _inner_addresses(packet)
        if addrs is None:
            self.dropped["tun_malformed"] += 1
            return
        peer = self._allowed.lookup_packed(addrs[1])
        if peer is None:
            self.dropped["tun_no_route"] += 1
            return
        peer.stage(packet[: addrs[2]])
        self._send_staged(peer, now)

    def receive_datagram(self, data: bytes, addr: AddressLike, now: float) -> bool:
        """Anything from the UDP socket. Bad input is dropped and counted, never raised.

        True when the datagram authenticated as a peer's and so set its endpoint (§2.1):
        the one case in which the shell may learn from it where replies leave from."""
        self._timers_changed = True
        self._authenticated = False
        source = normalize_endpoint(addr)
        data = bytes(data)
        mtype = message_type(data)
        try:
            if mtype == MESSAGE_TRANSPORT:
                self._receive_transport(data, source, now)
            elif mtype == MESSAGE_INITIATION:
                self._receive_initiation(data, source, now)
            elif mtype == MESSAGE_RESPONSE:
                self._receive_response(data, source, now)
            elif mtype == MESSAGE_COOKIE_REPLY:
                self._receive_cookie_reply(data, now)
            else:
                self.dropped["unknown_type"] += 1
        except RemoteProtocolError:
            self.dropped["invalid_" + _TYPE_NAMES.get(mtype, "message")] += 1
        return self._authenticated

    def handle_timer(self, now: float) -> None:
        """Run every peer timer whose deadline is at or before now (whitepaper §6)."""
        self._timers_changed = True
        if self._retired is not None and now >= self._retired[2]:
            self._retired = None  # the grace after a rotation is over
        for peer in list(self._peers.values()):
            for timer in peer.timers.due(now):
                if peer.public_key not in self._peers:
                    break
                self._timer_expired(peer, timer, now)

    def record_traffic(
        self,
        public_key: PublicKey | str | bytes,
        now: float,
        *,
        sent_at: float | None = None,
        received_at: float | None = None,
        data_received_at: float | None = None,
        rx_bytes: int = 0,
        tx_bytes: int = 0,
        endpoint: AddressLike | None = None,
    ) -> None:
        """Transport traffic a native data plane handled for a peer since the last call.

        The plane seals and opens established sessions' packets itself; the
        core still runs the timers (§6) and key freshness. `sent_at` is when
        data was last sent, `received_at` when an authenticated transport
        message last arrived, `data_received_at` when the last one carrying
        data did (all on the caller's clock), `endpoint` where it came from if
        the plane saw the peer roam. The timer hooks run in time order, so a
        reply after a send cancels the retry as it would packet by packet.
        """
        self._timers_changed = True
        peer = self.peer(public_key)
        peer.rx_bytes += rx_bytes
        peer.tx_bytes += tx_bytes
        if endpoint is not None:
            self._set_endpoint(peer, normalize_endpoint(endpoint))
        timers = peer.timers
        happened: list[tuple[float, _Traffic]] = []
        if sent_at is not None:
            happened.append((sent_at, _Traffic.DATA_SENT))
        if received_at is not None:
            happened.append((received_at, _Traffic.AUTHENTICATED_RECEIVED))
        if data_received_at is not None:
            happened.append((data_received_at, _Traffic.DATA_RECEIVED))
        for at, kind in sorted(happened):
            timers.any_authenticated_packet_traversal(at)
            if kind is _Traffic.DATA_SENT:
                timers.any_authenticated_packet_sent()
                timers.data_sent(at, self._jitter())
            elif kind is _Traffic.AUTHENTICATED_RECEIVED:
                timers.any_authenticated_packet_received()
            else:
                timers.data_received(at)
        if sent_at is not None:
            self._keep_key_fresh_sending(peer, now)
        if received_at is not None:
            self._keep_key_fresh_receiving(peer, now)

    # ------------------------------------------------------------------ load
    def cookie_secret(self, now: float) -> bytes | None:
        """The cookie secret Rm as of `now` (rotated when due), None without a private key.

        For a data plane that answers handshakes under load itself (§5.3);
        it is a secret like the keys.
        """
        checker = self._cookie_checker
        return checker.secret(now) if checker is not None else None

    def under_load(self, now: float) -> bool:
        return now < self._under_load_until

    def _note_handshake_message(self, now: float) -> bool:
        """Count a handshake message; return whether the device is under load (§5.3)."""
        if now - self._load_window_start >= UNDER_LOAD_WINDOW:
            self._load_window_start = now
            self._load_count = 0
        self._load_count += 1
        if self._load_count > self.under_load_threshold:
            self._under_load_until = now + UNDER_LOAD_AFTER_TIME
        return self.under_load(now)

    def _addressed_to(
        self, data: bytes, mac1_offset: int, now: float
    ) -> tuple[DhKeyPair, CookieChecker] | None:
        """Our identity a handshake message is addressed to, by its mac1 (§5.4.4): the
        current one, or the one rotated away from while its grace lasts; None: neither."""
        if self._static is None or self._cookie_checker is None:
            self.dropped["no_private_key"] += 1
            return None
        if self._cookie_checker.check_mac1(data, mac1_offset):
            return self._static, self._cookie_checker
        retired = self._retired
        if retired is not None and now < retired[2] and retired[1].check_mac1(data, mac1_offset):
            return retired[0], retired[1]
        self.dropped["bad_mac1"] += 1
        return None

    def _admit_handshake(
        self, data: bytes, mac1_offset: int, mac2_offset: int, source: Endpoint, now: float
    ) -> DhKeyPair | None:
        """mac1 always; under load also mac2 (else a cookie reply) and the rate limit. The
        static key pair of ours it is addressed to, if admitted."""
        if len(data) < mac2_offset + 16:
            raise RemoteProtocolError("short handshake message")
        identity = self._addressed_to(data, mac1_offset, now)
        if identity is None:
            return None
        static, checker = identity
        if not self._note_handshake_message(now):
            return static
        src = source_bytes(source)
        if not checker.check_mac2(data, mac2_offset, src, now):
            (sender,) = _le32.unpack_from(data, SENDER_INDEX_OFFSET)
            reply = checker.create_reply(data, mac1_offset, sender, src, now)
            self._datagrams.append((reply, source))
            self.dropped["cookie_reply_sent"] += 1
            return None
        if not self._ratelimiter.allow(src[:-2], now):
            self.dropped["rate_limited"] += 1
            return None
        return static

    # ------------------------------------------------------------------ handshake
    def _timestamp(self) -> bytes:
        """TAI64N of the wall clock, strictly increasing for this device (§5.1)."""
        stamp = tai64n(self._wall_clock())
        if stamp <= self._last_timestamp:
            seconds, nanos = struct.unpack(">QI", self._last_timestamp)
            nanos += TAI64N_NSEC_ROUND
            if nanos >= 1_000_000_000:
                seconds, nanos = seconds + 1, 0
            stamp = struct.pack(">QI", seconds, nanos)
        self._last_timestamp = stamp
        return stamp

    def _jitter(self) -> float:
        """Random 0–333 ms added to REKEY_TIMEOUT so peers do not retry in lockstep."""
        return int.from_bytes(self._rng(2), "little") / 65536 * REKEY_TIMEOUT_JITTER_MAX

    def _send_handshake_initiation(self, peer: Peer, now: float, *, is_retry: bool) -> None:
        """Send message 1 unless one went out less than REKEY_TIMEOUT ago (§6.4)."""
        if not is_retry:
            peer.timers.handshake_attempts = 0
        if peer.endpoint is None:
            return
        if now - peer.last_sent_handshake < REKEY_TIMEOUT:
            if is_retry:
                # a response we sent meanwhile (our initiation and the peer's crossed)
                # counts as a handshake sent: retry once the limit allows, or a staged
                # packet could wait for ever on two sessions neither side may use yet
                when = peer.last_sent_handshake + REKEY_TIMEOUT + self._jitter()
                peer.timers.arm(Timer.RETRANSMIT_HANDSHAKE, when)
            return
        if self._static is None:
            return
        peer.last_sent_handshake = now
        self._clear_handshake(peer)
        index = self._indices.allocate((peer, None))
        created = create_initiation(
            self._static, bytes(peer.public_key), index, self._timestamp(), rng=self._rng
        )
        peer.handshake = PendingHandshake(created.state, index)
        message = peer.cookies.add_macs(created.message, INITIATION_MAC1_OFFSET, now)
        peer.timers.any_authenticated_packet_traversal(now)
        peer.timers.any_authenticated_packet_sent()
        self._emit(peer, message)
        peer.timers.handshake_initiated(now, self._jitter())

    def _receive_initiation(self, data: bytes, source: Endpoint, now: float) -> None:
        static = self._admit_handshake(
            data, INITIATION_MAC1_OFFSET, INITIATION_MAC2_OFFSET, source, now
        )
        if static is None:
            return
        consumed = consume_initiation(static, parse_initiation(data))
        peer = self._peers_by_raw.get(consumed.remote_static)
        if peer is None:
            self.dropped["unknown_peer"] += 1
            return
        if consumed.timestamp <= peer.latest_timestamp:  # §5.1: replayed initiation
            self.dropped["stale_timestamp"] += 1
            return
        if now - peer.last_initiation_consumption < INITIATION_MIN_INTERVAL:
            self.dropped["initiation_flood"] += 1
            return
        # authenticated: commit
        peer.latest_timestamp = consumed.timestamp
        peer.last_initiation_consumption = now
        self._set_endpoint(peer, source)
        peer.timers.any_authenticated_packet_traversal(now)
        peer.timers.any_authenticated_packet_received()
        self._clear_handshake(peer)
        index = self._indices.allocate((peer, None))
        psk = bytes(peer.preshared_key) if peer.preshared_key else None
        response, send, receive = create_response(consumed, index, psk, rng=self._rng)
        assert send.k is not None and receive.k is not None
        session = Session(
            send.k, receive.k, index, consumed.sender_index, is_initiator=False, created=now
        )
        self._indices.replace(index, (peer, session))
        # responder: the new session waits in `next` until the initiator confirms it
        self._drop_session(peer.next)
        self._drop_session(peer.previous)
        peer.next, peer.previous = session, None
        peer.last_sent_handshake = now
        message = peer.cookies.add_macs(response, RESPONSE_MAC1_OFFSET, now)
        peer.timers.session_derived(now)
        peer.timers.any_authenticated_packet_traversal(now)
        peer.timers.any_authenticated_packet_sent()
        self._emit(peer, message)

    def _receive_response(self, data: bytes, source: Endpoint, now: float) -> None:
        if (
            self._admit_handshake(data, RESPONSE_MAC1_OFFSET, RESPONSE_MAC2_OFFSET, source, now)
            is None
        ):
            return
        msg = parse_response(data)
        entry = self._indices.get(msg.receiver)
        if entry is None or entry[1] is not None:
            self.dropped["unknown_index"] += 1
            return
        peer = entry[0]
        pending = peer.handshake
        if pending is None or pending.local_index != msg.receiver:
            self.dropped["unknown_index"] += 1
            return
        psk = bytes(peer.preshared_key) if peer.preshared_key else None
        send, receive = consume_response(pending.state, msg, psk)  # raises if forged
        assert send.k is not None and receive.k is not None
        session = Session(
            send.k, receive.k, pending.local_index, msg.sender, is_initiator=True, created=now
        )
        self._indices.replace(pending.local_index, (peer, session))
        peer.handshake = None
        # initiator: the new session is current at once (BeginSymmetricSession)
        if peer.next is not None:
            self._drop_session(peer.current)
            self._drop_session(peer.previous)
            peer.previous, peer.next = peer.next, None
        else:
            self._drop_session(peer.previous)
            peer.previous = peer.current
        peer.current = session
        self._set_endpoint(peer, source)
        peer.timers.any_authenticated_packet_traversal(now)
        peer.timers.any_authenticated_packet_received()
        peer.timers.session_derived(now)
        self._handshake_complete(peer, now, initiator=True)
        self._send_keepalive(peer, now)  # confirms the session; flushes staged packets

    def _receive_cookie_reply(self, data: bytes, now: float) -> None:
        reply = parse_cookie_reply(data)
        entry = self._indices.get(reply.receiver)
        if entry is None:
            self.dropped["unknown_index"] += 1
            return
        if not entry[0].cookies.consume_reply(reply, now):
            self.dropped["invalid_cookie_reply"] += 1

    def _handshake_complete(self, peer: Peer, now: float, *, initiator: bool) -> None:
        peer.timers.handshake_complete()
        peer.last_handshake_now = now
        peer.last_handshake_time = self._wall_clock()
        self._events.append(HandshakeCompleted(peer.public_key, initiator, now))

    def _clear_handshake(self, peer: Peer) -> None:
        if peer.handshake is not None:
            self._indices.remove(peer.handshake.local_index)
            peer.handshake = None

    # ------------------------------------------------------------------ transport
    def _receive_transport(self, data: bytes, source: Endpoint, now: float) -> None:
        if len(data) < TRANSPORT_MIN_SIZE:
            raise RemoteProtocolError("short transport message")
        _, receiver, counter = _transport_header.unpack_from(data, 0)
        entry = self._indices.get(receiver)
        if entry is None:
            self.dropped["unknown_index"] += 1
            return
        peer, session = entry
        if session is None:  # the index names a handshake, not a session
            self.dropped["unknown_index"] += 1
            return
        if session.expired(now):
            self.dropped["expired_keypair"] += 1
            return
        plain = session.open(counter, data[TRANSPORT_HEADER_SIZE:])
        if plain is None:
            self.dropped["transport_rejected"] += 1  # bad tag or replayed counter
            return
        # authenticated (§5.4.6)
        self._set_endpoint(peer, source)
        if session is peer.next:  # the initiator confirmed our session: rotate
            self._drop_session(peer.previous)
            peer.previous, peer.current, peer.next = peer.current, session, None
            self._handshake_complete(peer, now, initiator=False)
            self._send_staged(peer, now)
        self._keep_key_fresh_receiving(peer, now)
        peer.timers.any_authenticated_packet_traversal(now)
        peer.timers.any_authenticated_packet_received()
        peer.rx_bytes += len(data)
        if not plain:
            return  # keepalive
        addrs = _inner_addresses(plain)
        if addrs is None:
            self.dropped["inner_malformed"] += 1
            return
        if self._allowed.lookup_packed(addrs[0]) is not peer:  # cryptokey routing, §3
            self.dropped["inner_source_not_allowed"] += 1
            return
        self._packets.append(plain[: addrs[2]])
        peer.timers.data_received(now)

    def _send_staged(self, peer: Peer, now: float) -> None:
        session = peer.current
        if session is None or not session.can_send(now) or peer.endpoint is None:
            self._send_handshake_initiation(peer, now, is_retry=False)
            return
        while peer.staged:
            if not session.can_send(now):
                self._send_handshake_initiation(peer, now, is_retry=False)
                return
            packet = peer.staged.popleft()
            self._emit(peer, session.seal(pad(packet, self.mtu)))
            peer.timers.any_authenticated_packet_traversal(now)
            peer.timers.any_authenticated_packet_sent()
            if packet:
                peer.timers.data_sent(now, self._jitter())
        self._keep_key_fresh_sending(peer, now)

    def _send_keepalive(self, peer: Peer, now: float) -> None:
        if not peer.staged:
            peer.staged.append(b"")
        self._send_staged(peer, now)

    def _keep_key_fresh_sending(self, peer: Peer, now: float) -> None:
        """Initiator rekeys after REKEY_AFTER_TIME or REKEY_AFTER_MESSAGES (§6.2)."""
        session = peer.current
        if (
            session is not None
            and session.is_initiator
            and (
                session.send_counter > REKEY_AFTER_MESSAGES or session.age(now) >= REKEY_AFTER_TIME
            )
        ):
            self._send_handshake_initiation(peer, now, is_retry=False)

    def _keep_key_fresh_receiving(self, peer: Peer, now: float) -> None:
        """Initiator receiving on a key older than 165 s rekeys once (§6.2)."""
        session = peer.current
        if peer.timers.sent_last_minute_handshake or session is None:
            return
        if session.is_initiator and session.age(now) >= REKEY_ON_RECEIVE_AGE:
            peer.timers.sent_last_minute_handshake = True
            self._send_handshake_initiation(peer, now, is_retry=False)

    # ------------------------------------------------------------------ timers
    def _timer_expired(self, peer: Peer, timer: Timer, now: float) -> None:
        """Run the handler of the timer that expired (whitepaper §6)."""
        match timer:
            case Timer.RETRANSMIT_HANDSHAKE:
                self._expired_retransmit_handshake(peer, now)
            case Timer.SEND_KEEPALIVE:
                self._expired_send_keepalive(peer, now)
            case Timer.NEW_HANDSHAKE:
                self._expired_new_handshake(peer, now)
            case Timer.ZERO_KEY_MATERIAL:
                self._expired_zero_key_material(peer)
            case Timer.PERSISTENT_KEEPALIVE:
                self._expired_persistent_keepalive(peer, now)
            case _:
                assert_never(timer)

    def _expired_retransmit_handshake(self, peer: Peer, now: float) -> None:
        """Retry the initiation; give up once the retries exceed MAX_TIMER_HANDSHAKES (§6.4)."""
        timers = peer.timers
        if timers.handshake_attempts <= MAX_TIMER_HANDSHAKES:
            timers.handshake_attempts += 1
            self._send_handshake_initiation(peer, now, is_retry=True)
            return
        # REKEY_ATTEMPT_TIME (90 s) without a response: drop what waits for the session
        timers.stop(Timer.SEND_KEEPALIVE)
        peer.staged.clear()
        if not timers.pending(Timer.ZERO_KEY_MATERIAL):
            timers.arm(Timer.ZERO_KEY_MATERIAL, now + ZERO_KEY_MATERIAL_AFTER)
        self._clear_handshake(peer)
        self._events.append(HandshakeTimedOut(peer.public_key))

    def _expired_send_keepalive(self, peer: Peer, now: float) -> None:
        """Data came in and nothing went back: a keepalive says we got it (§6.5)."""
        self._send_keepalive(peer, now)
        peer.timers.keepalive_sent(now)

    def _expired_new_handshake(self, peer: Peer, now: float) -> None:
        """Our data got no answer: the session may be dead on the other side (§6.5)."""
        self._send_handshake_initiation(peer, now, is_retry=False)

    def _expired_zero_key_material(self, peer: Peer) -> None:
        """No new session for 540 s: erase the keys (§6.3)."""
        self._zero_peer(peer)
        self._events.append(SessionsExpired(peer.public_key))

    def _expired_persistent_keepalive(self, peer: Peer, now: float) -> None:
        """Keep NAT and firewall state alive (wg(8) PersistentKeepalive)."""
        if peer.timers.persistent_keepalive_interval > 0:
            self._send_keepalive(peer, now)

    # ------------------------------------------------------------------ helpers
    def _emit(self, peer: Peer, message: bytes) -> None:
        assert peer.endpoint is not None
        peer.tx_bytes += len(message)
        self._datagrams.append((message, peer.endpoint))

    def _set_endpoint(self, peer: Peer, source: Endpoint) -> None:
        """Roaming (§2.1): the endpoint follows the latest authenticated packet."""
        self._authenticated = True
        if peer.endpoint != source:
            peer.endpoint = source
            self._events.append(EndpointChanged(peer.public_key, source))

    def _drop_session(self, session: Session | None) -> None:
        if session is not None:
            self._indices.remove(session.local_index)
            session.zero()

    def _zero_peer(self, peer: Peer) -> None:
        """Forget every session and handshake of the peer (§6.3, after 540 s)."""
        for session in peer.sessions():
            self._drop_session(session)
        peer.previous = peer.current = peer.next = None
        self._clear_handshake(peer)

    def __repr__(self) -> str:
        return f"<Device {self.public_key} port={self.listen_port} peers={len(self._peers)}>"


_TYPE_NAMES = {1: "initiation", 2: "response", 3: "cookie_reply", 4: "transport"}


def _keepalive(value: int | None) -> int:
    if value is None:
        return 0
    if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise LocalProtocolError("persistent keepalive must be 0-65535 seconds")
    return value


def _prefixes(networks: Iterable[str | Prefix] | PrefixList) -> PrefixList:
    """Allowed-IPs entries, packed; a `PrefixList` is taken as it is (already valid)."""
    if isinstance(networks, PrefixList):
        return networks
    return PrefixList([_prefix(network) for network in networks])


def _prefix(network: str | Prefix) -> Prefix:
    """An allowed-IPs entry as a `Prefix`; text must be exactly `addr[/len]`."""
    try:
        if isinstance(network, str) and network != network.strip():
            raise LocalProtocolError("surrounding whitespace")
        return parse_prefix(network)
    except LocalProtocolError:
        raise LocalProtocolError(f"bad allowed IP {quote(str(network))}") from None
