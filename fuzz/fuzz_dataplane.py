"""Fuzz the C data plane's packet paths through cffi (pywg._fast.lib).

Targets, picked by the first byte of the input:

0. ``pywg_lpm_lookup_packet``: a table of up to 8 fuzzed prefixes (inserted,
   some removed again), then fuzzed IPv4/IPv6 headers looked up by source and
   destination. Oracle: a brute-force longest-prefix match over the same
   prefixes, -1 for a header the function must refuse (lpm.h), and
   ``pywg_lpm_validate`` == 0.
1. ``pywg_tso_split``: a TCP super-packet (IPv4 with options or IPv6, any
   TCP header length, flags, payload) or raw bytes, mutated, behind a
   struct pywg_vnet_hdr of fuzzed fields, into a fuzzed number of slots of
   a fuzzed stride. Oracle: a well-formed packet that fits is never refused;
   every segment has a valid IPv4 header checksum and length (IPv6 payload
   length), a valid TCP checksum, the right sequence number and flags (FIN
   and PSH on the last only, CWR on the first only), and the payloads put
   together are the original one.
2. ``pywg_csum_finish``: fuzzed csum_start / csum_offset on fuzzed bytes.
   Oracle: an independent RFC 1071 computation.
3. ``pywg_gro_run``: a batch of TCP segments of a few flows (in order, out of
   order, short, pushed, with other flags, mutated) and junk. Oracle: the
   frames split back (in Python) give the same packets, up to the fields
   GRO may rewrite (IPv4 length, id and checksum, IPv6 length, TCP checksum
   and PSH); a coalesced frame has a correct virtio_net_hdr, IPv4 checksum
   and pseudo-header sum in the TCP checksum field.
4. ``pywg_kp_open`` on a keypair linked into a NativePlane: authentic and
   forged messages at fuzzed counters. Oracle: the pure-Python reference (a
   Session with a PureReplayWindow fed the same messages): same verdict
   (plaintext, -1 forged/short, -2 replayed/outside the window), same bytes.

Buffers handed to C are exactly as long as the C may use, so that
AddressSanitizer (tests/native/test_sanitizers.py; fuzz/sanitize.py to run it by
hand) sees any access past them. Atheris instruments Python only: the
coverage that guides this harness is the harness's own branches on the C
results, not the C code's.

    python3 fuzz/fuzz_dataplane.py -atheris_runs=200000
    python3 fuzz/sanitize.py run -- python3 fuzz/fuzz_dataplane.py -atheris_runs=50000
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Reader, add_source_path, run

add_source_path()

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305  # noqa: E402

from pywg import _fast  # noqa: E402
from pywg.constants import REJECT_AFTER_MESSAGES  # noqa: E402
from pywg.crypto import nonce  # noqa: E402
from pywg.replay import PureReplayWindow  # noqa: E402

ffi: Any = _fast.ffi
lib: Any = _fast.lib

VNET = 10
TX_STRIDE = 16 + 16384 + 16 + 16  # plane.c: a TX slot (HEADER + 16 KiB + padding + tag)
# The RX path hands GRO decrypted packets of at most RX_SLOT (65536) - 32 bytes.
# (pywg_gro_add overflows its bin on a longer IPv6 packet: see fuzz/README.md.)
GRO_MAX_PACKET = 65536 - 32
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG, TCP_ECE, TCP_CWR = (
    1,
    2,
    4,
    8,
    16,
    32,
    64,
    128,
)


def _buffer(data: bytes) -> Any:
    """An exactly sized C copy of data (at least 1 byte: cffi has no empty arrays)."""
    buf = ffi.new("uint8_t[]", max(len(data), 1))
    ffi.memmove(buf, data, len(data))
    return buf


# ----------------------------------------------------------------- checksums


def sum16(data: bytes, total: int = 0) -> int:
    if len(data) % 2:
        data += b"\0"
    return total + int(sum(struct.unpack(f"!{len(data) // 2}H", data)))


def fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def pseudo_sum(packet: bytes, v4: bool, tcp_len: int) -> int:
    addresses = packet[12:20] if v4 else packet[8:40]
    return sum16(addresses) + 6 + tcp_len


# ----------------------------------------------------------------- packets


def tcp_packet(
    r: Reader, v6: bool, seq: int, payload: bytes, flags: int, sport: int = 5201
) -> bytes:
    """A TCP/IP packet with fuzzed options (IP and TCP) and the given fields."""
    tcp_options = bytes(4 * (r.u8() % 11)) if r.u8() % 4 == 0 else b""
    tcphl = 20 + len(tcp_options)
    tcp = struct.pack(
        "!HHIIBBHHH", sport, 443, seq & 0xFFFFFFFF, 777, tcphl // 4 << 4, flags, 502, 0, 0
    )
    tcp += tcp_options + payload
    if v6:
        src, dst = bytes(15) + b"\1", bytes(15) + b"\2"
        return struct.pack("!IHBB", 6 << 28, len(tcp) & 0xFFFF, 6, 64) + src + dst + tcp
    ip_options = bytes(4 * (r.u8() % 11)) if r.u8() % 4 == 0 else b""
    iphl = 20 + len(ip_options)
    total = (iphl + len(tcp)) & 0xFFFF
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | iphl // 4,
        0,
        total,
        0x1234,
        0x4000,
        64,
        6,
        0,
        b"\xc6\x13\0\1",
        b"\xc6\x13\0\2",
    )
    return header + ip_options + tcp


def pattern(n: int, seed: int) -> bytes:
    return bytes((seed + i * 7) & 0xFF for i in range(n))


def mutate(r: Reader, packet: bytes) -> bytes:
    """Now and then a few header bytes changed or the packet cut short."""
    if r.u8() % 4:
        return packet
    data = bytearray(packet)
    for _ in range(1 + r.u8() % 3):
        if data:
            data[r.u8() % min(len(data), 80)] ^= r.u8() | 1
    if r.u8() % 4 == 0:
        del data[r.u16() % (len(data) + 1) :]
    return bytes(data)


# ----------------------------------------------------------------- 0. lpm


def _lpm(r: Reader) -> None:
    table = lib.pywg_lpm_new()
    assert table != ffi.NULL
    try:
        lib.pywg_lpm_set_hash_lengths(table, (0, 1, 4, 129)[r.u8() % 4])
        stored: dict[tuple[int, int, int], int] = {}  # (family, masked address, cidr) -> value
        for _ in range(r.u8() % 9):
            v6 = r.flag()
            width = 128 if v6 else 32
            raw = _near(r, v6)
            cidr = r.u8() % (width + 1)
            value = r.u8() % 8
            assert lib.pywg_lpm_insert(table, 6 if v6 else 4, raw, cidr, value) == 0
            masked = int.from_bytes(raw, "big") >> (width - cidr) << (width - cidr) if cidr else 0
            stored[(6 if v6 else 4, masked, cidr)] = value
            if r.u8() % 4 == 0:  # and remove one again
                family, bits, length = next(iter(stored))
                packed = bits.to_bytes(16 if family == 6 else 4, "big")
                assert lib.pywg_lpm_remove(table, family, packed, length) == 1
                del stored[(family, bits, length)]
        assert lib.pywg_lpm_validate(table) == 0
        assert lib.pywg_lpm_count(table) == len(stored)
        for _ in range(1 + r.u8() % 4):
            packet = _header(r)
            buf = _buffer(packet)
            for which in (0, 1):
                got = lib.pywg_lpm_lookup_packet(table, buf, len(packet), which)
                assert got == _expected_lookup(stored, packet, which), (packet.hex(), which, got)
    finally:
        lib.pywg_lpm_free(table)


def _near(r: Reader, v6: bool) -> bytes:
    """An address in a small neighbourhood (so prefixes and packets meet), or any."""
    if r.flag():
        return r.take(16 if v6 else 4)
    base = ipaddress.ip_address("fd19::" if v6 else "198.19.0.0").packed
    return base[:-1] + bytes([r.u8() % 8])


def _header(r: Reader) -> bytes:
    kind = r.u8() % 4
    if kind == 0:
        return r.take_upto(r.u8() % 64)
    v6 = kind == 2
    header = bytearray(r.take(40 if v6 else 20))
    header[0] = (0x60 if v6 else 0x40) | (header[0] & 15)
    if kind == 3:
        header[0] = 0x40 | (r.u8() % 16)  # any IHL
    if v6:
        header[8:24], header[24:40] = _near(r, True), _near(r, True)
    else:
        header[12:16], header[16:20] = _near(r, False), _near(r, False)
    extra = r.u8() % 48
    cut = r.u8() % 8
    return (bytes(header) + bytes(extra))[: len(header) + extra - (cut if r.flag() else 0)]


def _expected_lookup(stored: dict[tuple[int, int, int], int], packet: bytes, which: int) -> int:
    if not packet:
        return -1
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 15) * 4
        if len(packet) < 20 or ihl < 20 or ihl > len(packet):
            return -1
        address, width = packet[16:20] if which else packet[12:16], 32
    elif version == 6:
        if len(packet) < 40:
            return -1
        address, width = packet[24:40] if which else packet[8:24], 128
    else:
        return -1
    bits = int.from_bytes(address, "big")
    best = -1, -1
    for (family, prefix, cidr), value in stored.items():
        if family != version or cidr <= best[0]:
            continue
        if (bits >> (width - cidr) << (width - cidr) if cidr else 0) == prefix:
            best = cidr, value
    return best[1]


# ----------------------------------------------------------------- 1. tso


def _vnet(r: Reader) -> Any:
    h = ffi.new("struct pywg_vnet_hdr *")
    h.flags, h.gso_type = r.u8(), r.u8()
    h.hdr_len, h.gso_size, h.csum_start, h.csum_offset = r.u16(), r.u16(), r.u16(), r.u16()
    return h


def _tso(r: Reader) -> None:
    v6 = r.flag()
    flags = TCP_ACK | (r.u8() & (TCP_FIN | TCP_PSH | TCP_CWR | TCP_URG | TCP_ECE))
    payload = pattern(r.u16() % 20000, r.u8())
    good = tcp_packet(r, v6, r.u32(), payload, flags)
    packet = r.rest() if r.u8() % 8 == 0 else mutate(r, good)
    h = _vnet(r)
    mss = 1 + r.u16() % 9000 if r.u8() % 4 else h.gso_size
    h.gso_size = mss
    slots = 1 + r.u8() % 64
    stride = (TX_STRIDE, 2048, 65536, 0)[r.u8() % 4]
    iphl = 40 if v6 else (good[0] & 15) * 4
    hl = iphl + (good[iphl + 12] >> 4) * 4
    if stride == 0:
        stride = hl + mss  # as tight as it gets
    slots = max(1, min(slots, (1 << 21) // max(stride, 1)))
    out = ffi.new("uint8_t[]", slots * stride)
    lens = ffi.new("size_t[]", slots)
    buf = _buffer(packet)
    n = lib.pywg_tso_split(h, buf, len(packet), out, stride, lens, slots)
    if n < 0:
        assert n == -1
        count = (-(-len(payload) // mss) if payload else 1) if mss else 0
        fits = mss > 0 and count <= slots and hl + mss <= stride
        assert not (packet == good and fits), "a well-formed super-packet that fits was refused"
        return
    assert 1 <= n <= slots
    segments = [bytes(ffi.buffer(out + i * stride, lens[i])) for i in range(n)]
    assert all(len(s) <= stride for s in segments)
    _check_segments(packet, segments, mss)


def _check_segments(packet: bytes, segments: list[bytes], mss: int) -> None:
    v4 = packet[0] >> 4 == 4
    iphl = (packet[0] & 15) * 4 if v4 else 40
    tcphl = (packet[iphl + 12] >> 4) * 4
    hl = iphl + tcphl
    seq = int.from_bytes(packet[iphl + 4 : iphl + 8], "big")
    flags = packet[iphl + 13]
    joined = b""
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        assert len(seg) == hl + min(mss, len(packet) - hl - i * mss)
        if v4:
            assert int.from_bytes(seg[2:4], "big") == len(seg), "IPv4 total length"
            assert fold(sum16(seg[:iphl])) == 0xFFFF, "IPv4 header checksum"
        else:
            assert int.from_bytes(seg[4:6], "big") == len(seg) - 40, "IPv6 payload length"
        tcp = seg[iphl:]
        assert fold(sum16(tcp, pseudo_sum(seg, v4, len(tcp)))) == 0xFFFF, "TCP checksum"
        assert int.from_bytes(tcp[4:8], "big") == (seq + i * mss) & 0xFFFFFFFF, "sequence"
        want = flags
        if not last:
            want &= ~(TCP_FIN | TCP_PSH)
        if i:
            want &= ~TCP_CWR
        assert tcp[13] == want, f"flags {tcp[13]:#x} != {want:#x} in segment {i}"
        assert tcp[:4] == packet[iphl : iphl + 4] and tcp[8:13] == packet[iphl + 8 : iphl + 13]
        assert (
            tcp[14:16] == packet[iphl + 14 : iphl + 16] and tcp[18:tcphl] == packet[iphl + 18 : hl]
        )
        joined += seg[hl:]
    assert joined == packet[hl:], "payload lost or changed"


# ----------------------------------------------------------------- 2. csum


def _csum(r: Reader) -> None:
    h = _vnet(r)
    fitting, start, offset = r.flag(), r.u8(), r.u8() % 32
    data = r.take_upto(r.u16() % 2048)
    if fitting:  # offsets that mostly fit
        h.csum_start, h.csum_offset = start % (len(data) + 1), offset
    buf = _buffer(data)
    rc = lib.pywg_csum_finish(h, buf, len(data))
    start, field = h.csum_start, h.csum_start + h.csum_offset
    after = bytes(ffi.buffer(buf, len(data)))
    if start >= len(data) or field + 2 > len(data):
        assert rc == -1 and after == data
        return
    assert rc == 0
    value = ~fold(sum16(data[start:])) & 0xFFFF
    assert after == data[:field] + value.to_bytes(2, "big") + data[field + 2 :]


# ----------------------------------------------------------------- 3. gro


@dataclass
class _Flow:
    v6: bool
    seq: int
    mss: int
    sport: int


def _segments(r: Reader) -> list[bytes]:
    flows = [
        _Flow(r.flag(), r.u32(), (536, 1000, 1368, 1448, 100)[r.u8() % 5], 5000 + i)
        for i in range(1 + r.u8() % 3)
    ]
    packets: list[bytes] = []
    for _ in range(1 + r.u8() % 24):
        if packets and r.remaining() == 0:
            break
        kind = r.u8()
        if kind % 16 == 0:  # junk
            packets.append(r.take_upto(r.u8() % 80))
            continue
        flow = flows[kind % len(flows)]
        size = flow.mss
        shape = r.u8()
        if shape % 8 == 0:
            size = r.u16() % size  # a short one (ends a run)
        elif shape % 8 == 1:
            size += 1 + r.u8()  # a longer one
        elif shape % 32 == 2:
            size = 40_000 + r.u16() % (GRO_MAX_PACKET - 40_000 - 120)  # a big one
        flags = TCP_ACK
        if shape & 0x80:
            flags |= (TCP_PSH, TCP_FIN, TCP_SYN, TCP_RST, TCP_URG, TCP_ECE, TCP_CWR, 0)[r.u8() % 8]
        seq = flow.seq if shape & 0x40 == 0 else r.u32()
        packet = tcp_packet(r, flow.v6, seq, pattern(size, r.u8()), flags, flow.sport)
        packet = mutate(r, packet)
        if len(packet) > GRO_MAX_PACKET:
            packet = packet[:GRO_MAX_PACKET]
        packets.append(packet)
        flow.seq = (seq + size) & 0xFFFFFFFF
    return packets


def _normal(packet: bytes) -> bytes:
    """The packet with the fields GRO may rewrite cleared (for TCP; others as they are)."""
    if len(packet) >= 40 and packet[0] == 0x45 and packet[9] == 6:
        iphl = 20
    elif len(packet) >= 60 and packet[0] >> 4 == 6 and packet[6] == 6:
        iphl = 40
    else:
        return packet
    data = bytearray(packet)
    if iphl == 20:
        data[2:6] = bytes(4)
        data[10:12] = bytes(2)
    else:
        data[4:6] = bytes(2)
    data[iphl + 16 : iphl + 18] = bytes(2)
    data[iphl + 13] &= ~TCP_PSH & 0xFF
    return bytes(data)


def _split_frame(frame: bytes) -> list[bytes]:
    flags, gso_type, hdr_len, gso_size, start, offset = struct.unpack_from("=BBHHHH", frame)
    packet = frame[VNET:]
    if gso_type == 0:
        assert frame[:VNET] == bytes(VNET), "a plain frame with a non-zero virtio_net_hdr"
        return [packet]
    v4 = gso_type == lib.PYWG_VNET_GSO_TCPV4
    assert gso_type in (lib.PYWG_VNET_GSO_TCPV4, lib.PYWG_VNET_GSO_TCPV6)
    iphl = 20 if v4 else 40
    assert packet[0] >> 4 == (4 if v4 else 6)
    tcphl = (packet[iphl + 12] >> 4) * 4
    assert flags == lib.PYWG_VNET_F_NEEDS_CSUM and start == iphl and offset == 16
    assert hdr_len == iphl + tcphl and gso_size > 0
    if v4:
        assert int.from_bytes(packet[2:4], "big") == len(packet), "merged IPv4 length"
        assert fold(sum16(packet[:20])) == 0xFFFF, "merged IPv4 header checksum"
    else:
        assert int.from_bytes(packet[4:6], "big") == len(packet) - 40, "merged IPv6 length"
    tcp_len = len(packet) - iphl
    field = int.from_bytes(packet[iphl + 16 : iphl + 18], "big")
    assert field == fold(pseudo_sum(packet, v4, tcp_len)), "pseudo-header sum for NEEDS_CSUM"
    payload = packet[hdr_len:]
    assert len(payload) > gso_size, "a coalesced frame of one segment"
    seq = int.from_bytes(packet[iphl + 4 : iphl + 8], "big")
    out = []
    for i in range(0, len(payload), gso_size):
        seg = bytearray(packet[:hdr_len] + payload[i : i + gso_size])
        seg[iphl + 4 : iphl + 8] = ((seq + i) & 0xFFFFFFFF).to_bytes(4, "big")
        out.append(bytes(seg))
    assert len(out) <= 64
    return out


def _gro(r: Reader) -> None:
    packets = _segments(r)
    n = len(packets)
    stride = VNET + max(1, *map(len, packets))
    pkts = ffi.new("uint8_t[]", n * stride)
    lens = ffi.new("size_t[]", n)
    for i, packet in enumerate(packets):
        ffi.memmove(pkts + i * stride + VNET, packet, len(packet))
        lens[i] = len(packet)
    max_out = n if r.u8() % 8 else r.u8() % (n + 1)
    out_stride = VNET + min(65535, sum(map(len, packets)))
    out = ffi.new("uint8_t[]", max(max_out, 1) * out_stride)
    out_lens = ffi.new("size_t[]", max(max_out, 1))
    count = lib.pywg_gro_run(pkts, stride, lens, n, out, out_stride, out_lens, max_out)
    if count < 0:
        assert count == -1 and max_out < n
        return
    assert count <= max_out
    frames = [bytes(ffi.buffer(out + i * out_stride, out_lens[i])) for i in range(count)]
    back = [segment for frame in frames for segment in _split_frame(frame)]
    assert Counter(map(_normal, back)) == Counter(map(_normal, packets)), "GRO changed the batch"


# ----------------------------------------------------------------- 4. kp_open


class _Session:
    """A keypair linked into a NativePlane, and its pure-Python reference."""

    def __init__(self) -> None:
        from pywg import Device, PrivateKey
        from pywg._fast.plane import NativePlane
        from pywg.session import Session

        self.udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.rfd, wfd = os.pipe()  # stands in for the TUN; the loops never start
        os.close(wfd)
        self.plane = NativePlane(self.rfd, self.udp, 1420, lambda reason: None)
        self.device = Device(PrivateKey.generate())
        self.peer = self.device.add_peer(PrivateKey.generate().public_key, ["198.19.0.2/32"])
        self._session_class = Session
        self.opens = 0
        self.renew()

    def renew(self) -> None:
        key = os.urandom(32)
        if self.peer.current is not None:
            self.peer.current.zero()  # frees the C twin
        self.peer.current = self._session_class(
            os.urandom(32), key, 1, 2, is_initiator=False, created=0.0
        )
        self.plane.sync(self.device)
        native: Any = self.peer.current.native
        assert native is not None
        self.handle = native.handle
        self.sealer = ChaCha20Poly1305(key)
        self.reference = self._session_class(
            os.urandom(32), key, 3, 4, is_initiator=False, created=0.0
        )
        self.reference.replay = PureReplayWindow(REJECT_AFTER_MESSAGES)
        self.opens = 0


_session: _Session | None = None


def _counter(r: Reader, greatest: int) -> int:
    kind = r.u8() % 8
    top = (1 << 64) - 1
    if kind < 4:
        return min(top, max(0, greatest + r.u16() % 20000 - 10000))
    if kind == 4:
        return min(top, max(0, greatest + r.u8() - 128))
    if kind == 5:
        return (REJECT_AFTER_MESSAGES + r.u16() % 32 - 16) % (1 << 64)
    if kind == 6:
        return (1 << 64) - 1 - r.u8()
    return r.u64()


def _kp_open(r: Reader) -> None:
    global _session
    if _session is None:
        _session = _Session()
    s = _session
    if s.opens > 2000 or s.reference.replay.greatest > 1 << 62:
        s.renew()
    for _ in range(1 + r.u8() % 8):
        counter = _counter(r, s.reference.replay.greatest)
        kind = r.u8() % 4
        if kind == 3:
            message = r.take_upto(r.u8() % 96)
        else:
            seal_counter = counter if kind else _counter(r, counter)
            message = s.sealer.encrypt(nonce(seal_counter), r.take_upto(r.u8() % 96), None)
            message = mutate(r, message) if kind == 1 else message
        replay_ok = s.reference.replay.would_accept(counter)
        expected = s.reference.open(counter, message)
        buf = _buffer(message)
        out = ffi.new("uint8_t[]", max(len(message) - 16, 1))
        got = lib.pywg_kp_open(s.handle, counter, buf, len(message), out)
        s.opens += 1
        if expected is not None:
            assert got == len(message) - 16, (got, counter)
            assert bytes(ffi.buffer(out, got)) == expected
        elif len(message) < 16:
            assert got == -1, got
        elif not replay_ok:
            assert got == -2, (got, counter, s.reference.replay.greatest)
        else:
            assert got == -1, (got, counter)


# ----------------------------------------------------------------- entry


TARGETS = (_lpm, _tso, _csum, _gro, _kp_open)


def TestOneInput(data: bytes) -> None:
    r = Reader(data)
    TARGETS[r.u8() % len(TARGETS)](r)


if __name__ == "__main__":
    if not _fast.AVAILABLE:
        sys.exit(f"the native extension is not available: {_fast.IMPORT_ERROR}")
    run(TestOneInput)
