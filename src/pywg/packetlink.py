"""`PacketLink`: the seam between a WireGuard tunnel and a network stack in user space.

A link carries whole IP packets (IPv4 or IPv6, no link-layer header, no packet-information
prefix) in both directions, in place of a TUN device: the tunnel side encrypts what it is
given and hands over what it decrypted; the stack side (`pywg.netstack`) speaks IP. Nothing
here needs privileges, which is what makes rootless operation possible.

Both ends run on one event loop. `send` never blocks: a link that cannot take a packet drops
it, as a full TUN queue would, and TCP's retransmission recovers it.

Two optional attributes tell a stack what a link does beyond that (read with `getattr`,
absent meaning no), as a NIC's offload features do:

- `tso_max` (int): the link cuts TCP packets longer than its MTU, up to `tso_max` bytes,
  into segments of MTU - IP header - TCP header (options included) payload bytes each,
  with their own sequence numbers, lengths and checksums (TCP segmentation offload); a
  stack may hand it such super-packets when its segments are that size.
- `authenticated` (bool): every packet the link delivers was authenticated end to end (a
  tunnel's AEAD), so transport checksums need not be verified (the kernel's WireGuard marks
  decrypted packets CHECKSUM_UNNECESSARY alike); such a link may also deliver TCP segments
  longer than its MTU, coalesced from consecutive ones of a flow (receive offload), whose
  checksum fields hold only the pseudo-header sum.
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
