"""`PacketLink`: the seam between a WireGuard tunnel and a network stack in user space.

A link carries whole IP packets (IPv4 or IPv6, no link-layer header, no packet-information
prefix) in both directions, in place of a TUN device: the tunnel side encrypts what it is
given and hands over what it decrypted; the stack side (`pywg.netstack`) speaks IP. Nothing
here needs privileges, which is what makes rootless operation possible.

Both ends run on one event loop. `send` never blocks: a link that cannot take a packet drops
it, as a full TUN queue would, and TCP's retransmission recovers it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

# Called with the IP packets that arrived on a link, oldest first.
Receiver = Callable[[Sequence[bytes]], None]


class PacketLink(Protocol):
    """One end of a packet link: what a network stack sees of its tunnel."""

    @property
    def mtu(self) -> int:
        """The largest IP packet the link carries, in bytes (the tunnel's MTU)."""
        ...

    def send(self, packets: Sequence[bytes]) -> None:
        """Hand IP packets to the other end, in order; drops what does not fit."""
        ...

    def set_receiver(self, receiver: Receiver | None) -> None:
        """Deliver the packets that arrive to `receiver` (None: drop them)."""
        ...
