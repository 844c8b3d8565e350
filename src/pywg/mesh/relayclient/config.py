"""What a node needs to use its home relay: who it is, where the relay is, its timings."""

from __future__ import annotations

from dataclasses import dataclass

from nacl.signing import SigningKey

from ...constants import KEY_SIZE, MAX_RELAY_INDEX
from ..relayproto import KEEPALIVE_INTERVAL, REFRESH_INTERVAL
from ..tls import PIN_SIZE


class RelayClientError(Exception):
    """A relay that cannot be used this way now; str() says why."""


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """The node: its WireGuard public key and its control key (signs associations, hellos)."""

    wireguard_key: bytes
    control: SigningKey

    def __post_init__(self) -> None:
        if len(self.wireguard_key) != KEY_SIZE:
            raise ValueError("a WireGuard public key is 32 bytes")

    def __repr__(self) -> str:  # the control key is a secret
        return f"NodeIdentity({self.wireguard_key.hex()[:16]}…)"


@dataclass(frozen=True, slots=True)
class RelayServer:
    """A home relay as the relay map names it.

    `number` is the tunnel's relay number (1..15: peers behind it sit at
    ``[100::ID]:number``, `pywg.relayed`); `key` its Ed25519 relay key;
    `host` its address or name (TCP connect, SNI, the upgrade's Host);
    `pin`, when given, the SHA-256 of the only certificate taken
    (`pywg.mesh.tls`); without it the relay's signed OK authenticates it.
    """

    number: int
    key: bytes
    host: str
    udp_port: int = 3478
    tcp_port: int = 443
    pin: bytes | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.number <= MAX_RELAY_INDEX:
            raise ValueError(f"a relay number is 1..{MAX_RELAY_INDEX}")
        if len(self.key) != KEY_SIZE:
            raise ValueError("a relay key is 32 bytes")
        if self.pin is not None and len(self.pin) != PIN_SIZE:
            raise ValueError("a certificate pin is a SHA-256 (32 bytes)")


@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds. `udp_timeout`: an association unanswered this long fails (UDP is given up
    for TCP); `udp_retry`: how often a node on TCP tries UDP again; `backoff_*`: TCP
    reconnects, doubling from min to max; `connect_timeout`: one TCP set-up, all steps."""

    udp_timeout: float = 5.0
    udp_retry: float = 60.0
    refresh: float = REFRESH_INTERVAL  # docs/relay.md: the association's refresh
    keepalive: float = KEEPALIVE_INTERVAL  # docs/relay.md: a PING when nothing was sent
    backoff_min: float = 1.0
    backoff_max: float = 30.0
    connect_timeout: float = 10.0
