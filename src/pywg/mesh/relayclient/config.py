"""What a node needs to use its home relay: who it is, where the relay is, its timings."""

from __future__ import annotations

from dataclasses import dataclass

from nacl.signing import SigningKey

from ...constants import KEY_SIZE
from ..relayproto import KEEPALIVE_INTERVAL, REFRESH_INTERVAL


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
class Timing:
    """Seconds. `udp_timeout`: an association unanswered this long fails (UDP is given up
    for TCP); `udp_retry`: how often a node on TCP tries UDP again; `backoff_*`: TCP
    reconnects, doubling from min to max; `connect_timeout`: one TCP set-up, all steps."""

    udp_timeout: float = 5.0
    udp_retry: float = 10.0
    refresh: float = REFRESH_INTERVAL  # docs/relay.md: the association's refresh
    keepalive: float = KEEPALIVE_INTERVAL  # docs/relay.md: a PING when nothing was sent
    backoff_min: float = 1.0
    backoff_max: float = 30.0
    connect_timeout: float = 10.0
