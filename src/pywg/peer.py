"""A peer's state: identity, endpoint, handshake in progress, sessions, staged packets.

The Device owns the protocol logic; a Peer is the record it keeps per peer
(whitepaper §3: the peer's static public key, optional PSK, endpoint and
allowed IPs). Nothing here is printed with secrets: repr shows the public key.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .constants import MAX_STAGED_PACKETS, TIMESTAMP_SIZE
from .cookie import CookieGenerator
from .endpoint import Endpoint
from .keys import PresharedKey, PublicKey
from .noise import HandshakeState
from .session import Session
from .timers import PeerTimers


@dataclass(slots=True)
class PendingHandshake:
    """An initiation we sent and await the response to (whitepaper §5.4.2)."""

    state: HandshakeState
    local_index: int

    def __repr__(self) -> str:
        return f"<PendingHandshake index={self.local_index:#010x}>"


class Peer:
    __slots__ = (
        "cookies",
        "current",
        "endpoint",
        "handshake",
        "last_handshake_now",
        "last_handshake_time",
        "last_initiation_consumption",
        "last_sent_handshake",
        "latest_timestamp",
        "next",
        "preshared_key",
        "previous",
        "public_key",
        "rx_bytes",
        "staged",
        "staged_dropped",
        "timers",
        "tx_bytes",
    )

    def __init__(
        self,
        public_key: PublicKey,
        *,
        preshared_key: PresharedKey | None = None,
        endpoint: Endpoint | None = None,
        persistent_keepalive: int = 0,
    ) -> None:
        self.public_key = public_key
        self.preshared_key = preshared_key
        self.endpoint = endpoint
        self.cookies = CookieGenerator(bytes(public_key))
        self.handshake: PendingHandshake | None = None
        # responder-side replay and flood protection (whitepaper §5.1, §5.4.2)
        self.latest_timestamp = bytes(TIMESTAMP_SIZE)
        self.last_initiation_consumption = float("-inf")
        self.last_sent_handshake = float("-inf")
        # sessions (whitepaper §6.1, "previous/current/next")
        self.previous: Session | None = None
        self.current: Session | None = None
        self.next: Session | None = None
        self.staged: deque[bytes] = deque()
        self.staged_dropped = 0
        self.timers = PeerTimers()
        self.timers.persistent_keepalive_interval = persistent_keepalive
        # statistics, as `wg show` reports them
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.last_handshake_time: float | None = None  # wall-clock seconds (UAPI)
        self.last_handshake_now: float | None = None  # on the caller's clock

    @property
    def persistent_keepalive(self) -> int:
        return self.timers.persistent_keepalive_interval

    def rekey(self, public_key: PublicKey) -> None:
        """The peer's new static key (it rotated it): the macs of what we send it follow
        (§5.4.4, keyed by its public key); a cookie it gave is bound to its old key's
        messages, so it goes. Sessions stay. Only `Device.change_peer_key` calls this."""
        self.public_key = public_key
        self.cookies = CookieGenerator(bytes(public_key))

    def sessions(self) -> list[Session]:
        return [k for k in (self.previous, self.current, self.next) if k is not None]

    def stage(self, packet: bytes) -> None:
        """Queue a packet until a session exists; bounded, the oldest goes first."""
        if len(self.staged) >= MAX_STAGED_PACKETS:
            self.staged.popleft()
            self.staged_dropped += 1
        self.staged.append(packet)

    def __repr__(self) -> str:
        return f"<Peer {self.public_key} endpoint={self.endpoint}>"
