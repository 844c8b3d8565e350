"""Fuzz pywg.Device.receive_datagram (and the IP paths of send_packet / the inner packet).

Two Devices, A (initiator) and B, complete a handshake and exchange data on
virtual time; every datagram they sent is kept (initiation, response,
transport both ways, and a cookie reply B sent while under load). Each input
then advances the clock by 0-255 ms and does one of:

0. raw bytes as a datagram;
1. a datagram with a valid type header and about the right size;
2. one of the recorded datagrams with bytes flipped and its length changed
   (an unchanged one is an exact replay: just as invalid);
3. an arbitrary plaintext sealed with the sender's real session key
   (authentic, so it reaches the inner-packet checks);
4. an arbitrary IP packet into the other device's send_packet, its
   datagrams delivered (the TUN -> UDP -> TUN path).

delivered to A or B, from the peer's address or a stranger's. Oracle:
``receive_datagram`` never raises; for modes 0-2 nothing is written to the
TUN, no event is produced, the only datagram that may come out is a cookie
reply, and the session state of both devices (the snapshot of
tests/core/test_fuzz_device.py) is unchanged. For modes 3-4 the packet written to
the TUN is exactly what an independent reading of the IP header predicts:
the packet cut to its total length if the header is well formed and (4) the
destination routes to the peer and the source is allowed for the sender.

The pair is rebuilt after 60 s of virtual time (so keys never expire or
rekey on the way) from a fixed seed: runs are reproducible.

    python3 fuzz/fuzz_device.py -atheris_runs=200000
"""

from __future__ import annotations

import ipaddress
import random
import sys
from itertools import zip_longest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Reader, add_source_path, run

add_source_path()
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers.device_pair import session_snapshot  # noqa: E402
from pywg import Device, PresharedKey, PrivateKey  # noqa: E402

Addr = tuple[str, int]
A_ADDR: Addr = ("198.18.0.1", 51820)
B_ADDR: Addr = ("198.18.0.2", 51820)
STRANGERS: tuple[Addr, ...] = (("198.18.0.9", 4444), ("fd18::9", 1))
A_TUNNEL = ("198.19.0.1", "fd19::1")
B_TUNNEL = ("198.19.0.2", "fd19::2")
OTHER_TUNNEL = ("198.19.0.3", "fd19::3", "10.0.0.1", "::1")
LOAD_THRESHOLD = 8  # handshake messages per second before B is under load
LIFETIME = 60.0  # seconds of virtual time before the pair is rebuilt
SIZES = {1: 148, 2: 92, 3: 64, 4: 32}


def ip_fields(packet: bytes) -> tuple[bytes, bytes, int] | None:
    """(source, destination, total length) by RFC 791 / RFC 8200, None if malformed."""
    if not packet:
        return None
    if packet[0] >> 4 == 4 and len(packet) >= 20:
        total = int.from_bytes(packet[2:4], "big")
        return (packet[12:16], packet[16:20], total) if 20 <= total <= len(packet) else None
    if packet[0] >> 4 == 6 and len(packet) >= 40:
        total = 40 + int.from_bytes(packet[4:6], "big")
        return (packet[8:24], packet[24:40], total) if total <= len(packet) else None
    return None


def _packed(addresses: tuple[str, ...]) -> set[bytes]:
    return {ipaddress.ip_address(a).packed for a in addresses}


class Lab:
    """A and B after a handshake and one packet each way, and what they sent."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed).randbytes
        self.now = 0.0
        ka, kb = PrivateKey.generate(rng), PrivateKey.generate(rng)
        psk = PresharedKey.generate(rng)

        def wall() -> float:
            return 1_700_000_000.0 + self.now

        self.a = Device(ka, 51820, rng=rng, wall_clock=wall)
        self.b = Device(kb, 51820, rng=rng, wall_clock=wall, under_load_threshold=LOAD_THRESHOLD)
        self.a.add_peer(
            kb.public_key,
            [f"{a}/{32 if '.' in a else 128}" for a in B_TUNNEL],
            endpoint=B_ADDR,
            preshared_key=psk,
        )
        self.b.add_peer(
            ka.public_key,
            [f"{a}/{32 if '.' in a else 128}" for a in A_TUNNEL],
            endpoint=A_ADDR,
            preshared_key=psk,
        )
        self.recorded: list[bytes] = []
        self.a.send_packet(ipv4(A_TUNNEL[0], B_TUNNEL[0], b"hello"), self.now)
        self.pump()
        self.b.send_packet(ipv4(B_TUNNEL[0], A_TUNNEL[0], b"back"), self.now)
        self.pump()
        assert self.b.peer(ka.public_key).current is not None, "no session"
        assert self.a.peer(kb.public_key).current is not None, "no session"
        # A cookie reply: B under load answers A's (replayed) initiation with one.
        self.b.under_load_threshold = 0
        self.now += 0.01
        self.b.receive_datagram(self.recorded[0], A_ADDR, self.now)
        self.b.under_load_threshold = LOAD_THRESHOLD
        self.pump()
        assert any(d[0] == 3 for d in self.recorded), "no cookie reply"
        self.clear()
        self.born = self.now

    def pump(self) -> None:
        for _ in range(50):
            moved = False
            for src, dst, src_addr, dst_addr in (
                (self.a, self.b, A_ADDR, B_ADDR),
                (self.b, self.a, B_ADDR, A_ADDR),
            ):
                for data, addr in src.datagrams_to_send():
                    assert addr == dst_addr, addr
                    self.recorded.append(data)
                    self.now += 0.001
                    dst.receive_datagram(data, src_addr, self.now)
                    moved = True
            if not moved:
                break
        self.clear()

    def clear(self) -> None:
        for dev in (self.a, self.b):
            dev.packets_to_write()
            while dev.next_event() is not None:
                pass


def ipv4(src: str, dst: str, payload: bytes) -> bytes:
    total = 20 + len(payload)
    header = bytes([0x45, 0, total >> 8, total & 0xFF, 0, 0, 0, 0, 64, 17, 0, 0])
    return header + ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed + payload


_lab: Lab | None = None
_generation = 0


def lab() -> Lab:
    global _lab, _generation
    if _lab is None or _lab.now - _lab.born > LIFETIME:
        _generation += 1
        _lab = Lab(seed=_generation)
    return _lab


def _address(r: Reader, v6: bool, likely: tuple[str, ...]) -> bytes:
    choice = r.u8() % 4
    if choice == 3:
        return r.take(16 if v6 else 4)
    names = (*likely, *OTHER_TUNNEL)
    fitting = [n for n in names if (":" in n) == v6]
    return ipaddress.ip_address(fitting[choice % len(fitting)]).packed


def ip_packet(r: Reader, src_likely: tuple[str, ...], dst_likely: tuple[str, ...]) -> bytes:
    """Raw bytes, or an IPv4/IPv6 header with plausible addresses and a fuzzed length."""
    kind = r.u8() % 5
    if kind == 0:
        return r.rest()
    v6 = kind >= 3
    src, dst = _address(r, v6, src_likely), _address(r, v6, dst_likely)
    fields = r.take(8)
    payload = r.take_upto(r.u16() % 1500)
    header_len = 40 if v6 else 20
    total = header_len + len(payload)
    if kind in (2, 4):  # a length field that may lie
        total = max(0, total + r.u8() % 65 - 32) if r.flag() else r.u16()
    if v6:
        plen = max(0, total - 40) & 0xFFFF
        header = bytes([0x60 | fields[0] & 15, *fields[1:4], plen >> 8, plen & 0xFF, fields[4], 64])
    else:
        total &= 0xFFFF
        ihl = 5 if fields[5] & 1 else fields[5] >> 4
        header = bytes([0x40 | ihl, fields[0], total >> 8, total & 0xFF, *fields[1:4], 0, 64])
        header += bytes([fields[4], 0, 0])
    return header + src + dst + payload


def _mutate(r: Reader, base: bytes) -> bytes:
    resize = (r.u8() + 8) % 17 - 8  # 0 keeps the length
    mask = r.rest()
    data = bytes(b ^ m for b, m in zip_longest(base, mask[: len(base)], fillvalue=0))
    return data[:resize] if resize < 0 else data + bytes(resize)


def _invalid(r: Reader, mode: int, recorded: list[bytes]) -> bytes:
    if mode == 0:
        return r.rest()
    if mode == 1:
        mtype = 1 + r.u8() % 4
        size = SIZES[mtype] + (r.u8() % 9 - 4 if r.flag() else 0)
        if mtype == 4:
            size += 16 * (r.u8() % 8) + (r.u8() % 16 if r.flag() else 0)
        body = bytes([mtype, 0, 0, 0]) + r.rest()
        return body.ljust(size, b"\0")[:size]
    return _mutate(r, recorded[r.below(len(recorded))])


def TestOneInput(data: bytes) -> None:
    r = Reader(data)
    world = lab()
    world.now += r.u8() / 1000
    now = world.now
    to_b = r.flag()
    target, other = (world.b, world.a) if to_b else (world.a, world.b)
    peer_addr = A_ADDR if to_b else B_ADDR
    other_tunnel, target_tunnel = (A_TUNNEL, B_TUNNEL) if to_b else (B_TUNNEL, A_TUNNEL)
    mode = r.u8() % 5

    if mode <= 2:
        datagram = _invalid(r, mode, world.recorded)
        source = peer_addr if r.u8() % 4 else STRANGERS[r.u8() % len(STRANGERS)]
        assert target.public_key is not None and other.public_key is not None
        before = (
            session_snapshot(target, other.public_key),
            session_snapshot(other, target.public_key),
        )
        target.receive_datagram(datagram, source, now)
        assert target.packets_to_write() == [], "a TUN packet from an invalid datagram"
        assert target.next_event() is None, "an event from an invalid datagram"
        for out, _ in target.datagrams_to_send():
            assert out[0] == 3 and len(out) == 64, f"type {out[0]} sent for invalid input"
        after = (
            session_snapshot(target, other.public_key),
            session_snapshot(other, target.public_key),
        )
        assert after == before, "session state changed by an invalid datagram"
        return

    assert target.public_key is not None
    if mode == 3:  # authentic transport message, arbitrary plaintext
        plain = ip_packet(r, other_tunnel, target_tunnel)
        session = other.peer(target.public_key).current
        assert session is not None and session.can_send(now)
        target.receive_datagram(session.seal(plain), peer_addr, now)
        fields = ip_fields(plain)
        allowed = fields is not None and fields[0] in _packed(other_tunnel)
        expected = [plain[: fields[2]]] if allowed and fields is not None else []
    else:  # the other side's TUN -> its UDP -> our TUN
        packet = ip_packet(r, other_tunnel, target_tunnel)
        other.send_packet(packet, now)
        for out, addr in other.datagrams_to_send():
            assert addr == (B_ADDR if to_b else A_ADDR)
            target.receive_datagram(out, peer_addr, now)
        fields = ip_fields(packet)
        routed = fields is not None and fields[1] in _packed(target_tunnel)
        allowed = fields is not None and fields[0] in _packed(other_tunnel)
        expected = [packet[: fields[2]]] if routed and allowed and fields is not None else []
    written = target.packets_to_write()
    assert written == expected, (written, expected)
    world.clear()
    for dev in (world.a, world.b):
        dev.datagrams_to_send()  # keepalives and the like: not part of the oracle


if __name__ == "__main__":
    run(TestOneInput)
