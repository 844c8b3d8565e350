"""In-memory `PacketLink` pairs, with loss, reordering and duplicates: two user-space
stacks (`pywg.netstack`) back to back in one process, for tests and benchmarks.

`link_pair()` gives two ends; what one sends the other receives on a later turn of the
event loop. Faults are `pywg.lab.relay.Faults` applied per direction with a seeded
random generator, as the lab's UDP relay applies them: a lost packet is dropped; a held
one is delivered after `hold_delay` (so later packets pass it); a duplicated one is sent
twice, the copy held.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from pywg.lab.relay import Faults
from pywg.packetlink import Receiver


class MemoryLink:
    """One end of an in-memory link."""

    def __init__(self, mtu: int, seed: int) -> None:
        self._mtu = mtu
        self.peer: MemoryLink | None = None
        self.receiver: Receiver | None = None
        self.faults = Faults()
        self.hold_delay = 0.002
        self.rng = random.Random(seed)
        self.sent = 0
        self.lost = 0
        self.oversize = 0
        self.tap: list[bytes] | None = None  # when set, every packet sent is recorded here

    @property
    def mtu(self) -> int:
        return self._mtu

    def set_receiver(self, receiver: Receiver | None) -> None:
        self.receiver = receiver

    def send(self, packets: Sequence[bytes]) -> None:
        loop = asyncio.get_running_loop()
        now: list[bytes] = []
        faults, rng = self.faults, self.rng
        for packet in packets:
            self.sent += 1
            if self.tap is not None:
                self.tap.append(bytes(packet))
            if len(packet) > self._mtu:
                self.oversize += 1
                continue
            if faults.loss and rng.random() < faults.loss:
                self.lost += 1
                continue
            copies = 2 if faults.dup and rng.random() < faults.dup else 1
            for copy in range(copies):
                if copy or (faults.hold and rng.random() < faults.hold):
                    loop.call_later(self.hold_delay * (1 + rng.random()), self._deliver, [packet])
                else:
                    now.append(packet)
        if now:
            loop.call_soon(self._deliver, now)

    def _deliver(self, packets: list[bytes]) -> None:
        peer = self.peer
        if peer is not None and peer.receiver is not None:
            peer.receiver(packets)


def link_pair(mtu: int = 1420, seed: int = 1) -> tuple[MemoryLink, MemoryLink]:
    """Two connected ends."""
    a, b = MemoryLink(mtu, seed), MemoryLink(mtu, seed + 1)
    a.peer, b.peer = b, a
    return a, b
