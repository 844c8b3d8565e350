"""`pywg demo --in-memory`: two sans-IO Devices talk through an in-process wire.

`pywg demo --in-memory` shows the protocol end to end without root, TUN or
sockets: a handshake, a few packets each way, a rekey on virtual time, and the
pure-Python core's throughput on this machine. Plain `pywg demo` runs a real
tunnel between two namespaces instead, see `pywg.cmd.demo`.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

from pywg.device import Device
from pywg.events import HandshakeCompleted
from pywg.keys import PrivateKey

A_ADDR = ("198.18.0.1", 51820)
B_ADDR = ("198.18.0.2", 51820)


def _udp_packet(src: str, dst: str, payload: bytes) -> bytes:
    total = 20 + len(payload)
    header = bytes([0x45, 0, total >> 8, total & 0xFF, 0, 0, 0, 0, 64, 17, 0, 0])
    return header + ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + payload


class _Wire:
    """Moves every datagram a device produces to the other one, at virtual time `now`."""

    def __init__(self, a: Device, b: Device) -> None:
        self.devices = {A_ADDR: a, B_ADDR: b}
        self.addr_of = {id(a): A_ADDR, id(b): B_ADDR}
        self.delivered: dict[tuple[str, int], list[bytes]] = {A_ADDR: [], B_ADDR: []}

    def pump(self, now: float) -> None:
        moved = True
        while moved:
            moved = False
            for addr, dev in self.devices.items():
                for data, dst in dev.datagrams_to_send():
                    self.devices[dst].receive_datagram(data, addr, now)
                    moved = True
                self.delivered[addr].extend(dev.packets_to_write())


def run(out: Callable[[str], None] = print, seconds: float = 2.0) -> int:
    now = 0.0

    def clock() -> float:
        return 1_700_000_000.0 + now

    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    a = Device(ka, A_ADDR[1], wall_clock=clock)
    b = Device(kb, B_ADDR[1], wall_clock=clock)
    a.add_peer(kb.public_key, ["198.19.0.2/32"], endpoint=B_ADDR)
    b.add_peer(ka.public_key, ["198.19.0.1/32"], endpoint=A_ADDR)
    wire = _Wire(a, b)
    out(f"device A {ka.public_key}  tunnel 198.19.0.1  underlay {A_ADDR[0]}")
    out(f"device B {kb.public_key}  tunnel 198.19.0.2  underlay {B_ADDR[0]}")

    a.send_packet(_udp_packet("198.19.0.1", "198.19.0.2", b"hello from A"), now)
    wire.pump(now)
    for dev, name in ((a, "A"), (b, "B")):
        while (ev := dev.next_event()) is not None:
            if isinstance(ev, HandshakeCompleted):
                role = "initiator" if ev.initiator else "responder"
                out(f"{name}: handshake completed with {ev.public_key} as {role}")
    b.send_packet(_udp_packet("198.19.0.2", "198.19.0.1", b"hello from B"), now)
    wire.pump(now)
    for addr, name in ((B_ADDR, "B"), (A_ADDR, "A")):
        for pkt in wire.delivered[addr]:
            out(f"{name} received {len(pkt)}-byte packet: {pkt[20:]!r}")

    # virtual time: 130 s of one packet a second crosses the 120 s rekey
    for _ in range(130):
        now += 1.0
        a.handle_timer(now)
        b.handle_timer(now)
        a.send_packet(_udp_packet("198.19.0.1", "198.19.0.2", b"tick"), now)
        wire.pump(now)
    rekeyed = [e for e in iter(a.next_event, None) if isinstance(e, HandshakeCompleted)]
    out(
        f"after {now:.0f} s of virtual time: {len(rekeyed)} rekey(s), "
        f"{len(wire.delivered[B_ADDR])} packets delivered to B, nothing dropped: "
        f"{not a.dropped and not b.dropped}"
    )

    payload = bytes(1400)
    packet = _udp_packet("198.19.0.1", "198.19.0.2", payload)
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            a.send_packet(packet, now)
        wire.pump(now)
        count += 100
    elapsed = time.perf_counter() - start
    got = len(wire.delivered[B_ADDR])
    out(
        f"pure-Python core, one thread: {count / elapsed:,.0f} packets/s of 1420 bytes "
        f"= {count * len(packet) * 8 / elapsed / 1e6:,.0f} Mbit/s (encrypt + decrypt)"
    )
    return 0 if got >= count else 1
