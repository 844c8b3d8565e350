"""The relay's bounds (docs/relay.md, "Limits and values"), in one value tests can shrink."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..relayproto import ASSOCIATION_TTL, IDLE_TIMEOUT, KEEPALIVE_INTERVAL


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """A TCP connection's outgoing queue: at most `datagrams` frames and `octets` bytes."""

    datagrams: int
    octets: int


NODE_QUEUE: Final = QueueLimits(256, 512 * 1024)
LINK_QUEUE: Final = QueueLimits(4096, 8 << 20)  # a relay link carries many nodes' traffic


@dataclass(frozen=True, slots=True)
class Limits:
    handshake_deadline: float = 5.0  # TCP accept -> OK
    max_preauth_total: int = 512  # connections between accept and OK
    max_preauth_per_source: int = 16  # ... from one IPv4 address or IPv6 /64
    source_rate: float = 20.0  # per second and source: TCP connections; UDP control messages
    source_burst: float = 5.0
    signature_rate: float = 2000.0  # Ed25519 checks of UDP associations per second, in all
    association_ttl: float = ASSOCIATION_TTL
    keepalive_interval: float = KEEPALIVE_INTERVAL
    idle_timeout: float = IDLE_TIMEOUT
    node_queue: QueueLimits = NODE_QUEUE
    link_queue: QueueLimits = LINK_QUEUE
    write_high_water: int = 64 * 1024  # bytes a TCP transport buffers before it pauses us
    stall_timeout: float = 5.0  # a TCP connection paused this long is closed
    close_linger: float = 2.0  # a closing connection's last bytes get this long, then abort
    sweep_interval: float = 1.0  # expiry, stalls, idle connections, membership changes
    redial_min: float = 1.0  # seconds before dialing a relay again, doubling ...
    redial_max: float = 30.0  # ... up to this
