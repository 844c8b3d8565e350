"""TUN offloads in C: TSO splitting, checksum completion and GRO coalescing.

Checked against an independent Python computation of RFC 1071 checksums and
by round trips: segments coalesced by GRO and split again by TSO come back
as the same packets.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pywg import _fast

pytestmark = pytest.mark.skipif(not _fast.AVAILABLE, reason="native extension not built")

VNET = 10
STRIDE = 70000


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def tcp_packet(
    v6: bool, seq: int, payload: bytes, flags: int = 0x10, options: bytes = b"", sport: int = 5201
) -> bytes:
    src = ipaddress.ip_address("fd19::1" if v6 else "198.19.0.1").packed
    dst = ipaddress.ip_address("fd19::2" if v6 else "198.19.0.2").packed
    tcphl = 20 + len(options)
    tcp = struct.pack("!HHIIBBHHH", sport, 443, seq, 777, tcphl // 4 << 4, flags, 502, 0, 0)
    tcp += options + payload
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo(src, dst, 6, len(tcp)) + tcp)) + tcp[18:]
    if v6:
        return struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64) + src + dst + tcp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0x1234, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp


def split(packet: bytes, mss: int, *, v6: bool, partial: bool = False) -> list[bytes]:
    ffi, lib = _fast.ffi, _fast.lib
    h = ffi.new("struct pywg_vnet_hdr *")
    h.gso_type = lib.PYWG_VNET_GSO_TCPV6 if v6 else lib.PYWG_VNET_GSO_TCPV4
    h.gso_size = mss
    out = ffi.new("uint8_t[]", 256 * 2048)
    lens = ffi.new("size_t[]", 256)
    n = lib.pywg_tso_split(h, packet, len(packet), out, 2048, lens, 256)
    assert n > 0
    return [bytes(ffi.buffer(out + i * 2048, lens[i])) for i in range(n)]


def verify(segment: bytes) -> tuple[int, int, bytes]:
    """Check every checksum and length of a segment; return (seq, flags, payload)."""
    if segment[0] >> 4 == 4:
        iphl, src, dst = 20, segment[12:16], segment[16:20]
        assert struct.unpack("!H", segment[2:4])[0] == len(segment)
        assert checksum(segment[:20]) == 0
    else:
        iphl, src, dst = 40, segment[8:24], segment[24:40]
        assert struct.unpack("!H", segment[4:6])[0] == len(segment) - 40
    tcp = segment[iphl:]
    assert checksum(pseudo(src, dst, 6, len(tcp)) + tcp) == 0
    tcphl = (tcp[12] >> 4) * 4
    return struct.unpack("!I", tcp[4:8])[0], tcp[13], tcp[tcphl:]


@pytest.mark.parametrize("v6", [False, True])
def test_tso_split_makes_valid_segments(v6: bool) -> None:
    payload = bytes(range(256)) * 40  # 10,240 bytes
    options = b"\x01\x01\x08\x0a" + bytes(8)  # NOP NOP timestamps
    big = tcp_packet(v6, 1_000_000, payload, flags=0x18 | 0x80, options=options)  # ACK PSH CWR
    segments = split(big, 1368, v6=v6)
    assert len(segments) == 8
    joined = b""
    for i, segment in enumerate(segments):
        seq, flags, data = verify(segment)
        assert seq == 1_000_000 + i * 1368
        assert bool(flags & 0x08) == (i == len(segments) - 1)  # PSH on the last only
        assert bool(flags & 0x80) == (i == 0)  # CWR on the first only
        if not v6:
            assert struct.unpack("!H", segment[4:6])[0] == 0x1234 + i
        joined += data
    assert joined == payload


def split_into(
    buf: object, packet: object, length: int, mss: int, stride: int, v6: bool
) -> list[bytes]:
    """pywg_tso_split of `packet` (bytes, or buf itself to split in place) to buf."""
    ffi, lib = _fast.ffi, _fast.lib
    h = ffi.new("struct pywg_vnet_hdr *")
    h.gso_type = lib.PYWG_VNET_GSO_TCPV6 if v6 else lib.PYWG_VNET_GSO_TCPV4
    h.gso_size = mss
    lens = ffi.new("size_t[]", 256)
    n = lib.pywg_tso_split(h, packet, length, buf, stride, lens, 256)
    assert n > 0
    return [bytes(ffi.buffer(buf + i * stride, lens[i])) for i in range(n)]


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(1, 60000),
    mss=st.integers(500, 9000),
    spare=st.integers(0, 600),
    v6=st.booleans(),
)
def test_tso_split_in_place_matches_split_apart(size: int, mss: int, spare: int, v6: bool) -> None:
    """The plane splits where it read the super-packet (out == pkt): same segments."""
    ffi = _fast.ffi
    packet = tcp_packet(v6, 99, bytes((i * 11) & 0xFF for i in range(size)))
    hl = 60 if v6 else 40
    stride = hl + mss + spare  # the narrowest a slot may be, and wider
    size_out = max(len(packet), -(-size // mss) * stride)
    apart = split_into(ffi.new("uint8_t[]", size_out), packet, len(packet), mss, stride, v6)
    buf = ffi.new("uint8_t[]", size_out)
    ffi.memmove(buf, packet, len(packet))
    in_place = split_into(buf, buf, len(packet), mss, stride, v6)
    assert in_place == apart
    assert b"".join(verify(segment)[2] for segment in in_place) == packet[hl:]


def test_tso_split_refuses_non_tcp_and_truncated() -> None:
    ffi, lib = _fast.ffi, _fast.lib
    h = ffi.new("struct pywg_vnet_hdr *")
    h.gso_type, h.gso_size = lib.PYWG_VNET_GSO_TCPV4, 1000
    out, lens = ffi.new("uint8_t[]", 4096), ffi.new("size_t[]", 4)
    udp = bytearray(tcp_packet(False, 1, bytes(100)))
    udp[9] = 17
    for bad in (bytes(udp), tcp_packet(False, 1, bytes(100))[:30], b"", bytes(60)):
        assert lib.pywg_tso_split(h, bad, len(bad), out, 2048, lens, 2) == -1
    many = tcp_packet(False, 1, bytes(5000))
    assert lib.pywg_tso_split(h, many, len(many), out, 2048, lens, 2) == -1  # too many


def test_csum_finish_completes_a_partial_checksum() -> None:
    ffi, lib = _fast.ffi, _fast.lib
    packet = bytearray(tcp_packet(False, 5, b"hello world"))
    src, dst = bytes(packet[12:16]), bytes(packet[16:20])
    partial = ~checksum(pseudo(src, dst, 6, len(packet) - 20)) & 0xFFFF
    packet[36:38] = struct.pack("!H", partial)  # what the kernel leaves with NEEDS_CSUM
    h = ffi.new("struct pywg_vnet_hdr *")
    h.flags, h.csum_start, h.csum_offset = lib.PYWG_VNET_F_NEEDS_CSUM, 20, 16
    buf = ffi.new("uint8_t[]", bytes(packet))
    assert lib.pywg_csum_finish(h, buf, len(packet)) == 0
    verify(bytes(ffi.buffer(buf, len(packet))))
    h.csum_start = len(packet)
    assert lib.pywg_csum_finish(h, buf, len(packet)) == -1


def gro(packets: list[bytes]) -> list[tuple[bytes, bytes]]:
    """Run the coalescer; (virtio_net_hdr, packet) per frame."""
    ffi, lib = _fast.ffi, _fast.lib
    pkts = ffi.new("uint8_t[]", STRIDE * len(packets))
    lens = ffi.new("size_t[]", len(packets))
    for i, packet in enumerate(packets):
        ffi.memmove(pkts + i * STRIDE + VNET, packet, len(packet))
        lens[i] = len(packet)
    out = ffi.new("uint8_t[]", STRIDE * len(packets))
    out_lens = ffi.new("size_t[]", len(packets))
    n = lib.pywg_gro_run(pkts, STRIDE, lens, len(packets), out, STRIDE, out_lens, len(packets))
    assert n >= 0
    frames = [bytes(ffi.buffer(out + i * STRIDE, out_lens[i])) for i in range(n)]
    return [(f[:VNET], f[VNET:]) for f in frames]


def resplit(header: bytes, packet: bytes) -> list[bytes]:
    flags, gso_type, hdr_len, gso_size, start, offset = struct.unpack("=BBHHHH", header)
    if gso_type == 0:
        assert flags == 0
        return [packet]
    assert flags == 1 and start == hdr_len - (packet[32 if gso_type == 1 else 52] >> 4) * 4
    assert offset == 16
    return split(packet, gso_size, v6=gso_type == 4)


@pytest.mark.parametrize("v6", [False, True])
def test_gro_coalesces_a_run_and_tso_gives_it_back(v6: bool) -> None:
    payload = bytes(range(256)) * 64
    segments = split(tcp_packet(v6, 42, payload, flags=0x10), 1368, v6=v6)
    frames = gro(segments)
    assert len(frames) == 1  # 12 segments, one frame
    back = resplit(*frames[0])
    assert [verify(s)[2] for s in back] == [verify(s)[2] for s in segments]
    assert [verify(s)[0] for s in back] == [verify(s)[0] for s in segments]


def test_gro_keeps_order_and_leaves_what_it_cannot_merge() -> None:
    flow_a = split(tcp_packet(False, 0, bytes(4000)), 1000, v6=False)
    flow_b = split(tcp_packet(False, 0, bytes(3000), sport=6000), 1000, v6=False)
    syn = tcp_packet(False, 9, b"", flags=0x02)
    out_of_order = [flow_a[0], flow_a[2], flow_a[1]]
    frames = gro([flow_a[0], flow_b[0], flow_a[1], flow_b[1], syn, flow_b[2], *out_of_order])
    packets = [p for header, packet in frames for p in resplit(header, packet)]
    seqs = [(struct.unpack("!H", p[20:22])[0], verify(p)[0]) for p in packets if p != syn]
    a = [s for port, s in seqs if port == 5201]
    b = [s for port, s in seqs if port == 6000]
    assert a == [0, 1000, 0, 2000, 1000]  # per flow, exactly the order they came in
    assert b == [0, 1000, 2000]
    assert syn in packets
    assert frames[0][0] != bytes(VNET)  # the first two of each flow were merged


@pytest.mark.parametrize("v6", [False, True])
def test_gro_writes_jumbo_segments_as_they_are(v6: bool) -> None:
    """Segments over half a frame (a jumbo MTU's) are not coalesced: one plain frame each,
    even where the next one would still fit in the frame."""
    first = bytes((i * 13) & 0xFF for i in range(33000))
    segments = [tcp_packet(v6, 5, first), tcp_packet(v6, 5 + len(first), bytes(20000))]
    frames = gro(segments)
    assert [header for header, _ in frames] == [bytes(VNET)] * 2
    assert [packet for _, packet in frames] == segments


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 30000),
    mss=st.integers(500, 1460),
    v6=st.booleans(),
    push=st.booleans(),
)
def test_split_then_coalesce_round_trip(size: int, mss: int, v6: bool, push: bool) -> None:
    payload = bytes((i * 7) & 0xFF for i in range(size))
    segments = split(tcp_packet(v6, 7, payload, flags=0x18 if push else 0x10), mss, v6=v6)
    if len(segments) > 64:
        return
    back = [p for header, packet in gro(segments) for p in resplit(header, packet)]
    assert b"".join(verify(p)[2] for p in back) == payload
