"""The netstack's parsers: round trips, checksums against a word-by-word reference, and
garbage (hypothesis) that never raises, neither from a parser nor out of a whole stack."""

from __future__ import annotations

import asyncio
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.packet_links import stack_pair
from pywg.netstack import checksum, icmp, ip, tcpwire, udp

V4 = (bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
V6 = (bytes(15) + b"\x01", bytes(15) + b"\x02")
addresses = st.sampled_from([V4, V6])


def reference_sum(data: bytes) -> int:
    """RFC 1071 §4.1, word by word."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return total


@given(st.binary(max_size=3000))
def test_ones_sum_matches_the_word_by_word_reference(data: bytes) -> None:
    expected = reference_sum(data)
    got = checksum.ones_sum(data)
    # 0 and 0xFFFF are the same number in one's complement; only all-zero data sums to 0
    assert got == expected or ({got, expected} == {0, 0xFFFF} and any(data))
    assert checksum.ones_sum(data) == (0 if not any(data) else got)


@given(addresses, st.integers(0, 255), st.binary(max_size=1400), st.integers(1, 255))
def test_ip_round_trip(pair: tuple[bytes, bytes], proto: int, payload: bytes, ttl: int) -> None:
    src, dst = pair
    packet = ip.parse(ip.build(src, dst, proto, payload, ttl))
    if len(src) == 16 and proto in (0, 43, 60, 44):
        return  # an extension header number: parsed as one, as it should be
    assert packet is not None
    assert (packet.src, packet.dst, packet.proto, packet.ttl, packet.payload) == (
        src,
        dst,
        proto,
        ttl,
        payload,
    )


def test_ipv4_header_checksum_and_fragments_are_checked() -> None:
    good = ip.build(*V4, ip.PROTO_UDP, b"x" * 10)
    assert ip.parse(good) is not None
    assert ip.parse(good[:10] + b"\0\0" + good[12:]) is None  # checksum
    frag = bytearray(good)
    frag[6] = 0x20  # MF
    frag[10:12] = b"\0\0"
    frag[10:12] = checksum.finish(checksum.ones_sum(bytes(frag[:20]))).to_bytes(2, "big")
    assert ip.parse(bytes(frag)) is None


@given(
    addresses,
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 0x3F),
    st.integers(0, 65535),
    st.binary(max_size=1400),
    st.integers(1, 65535),
    st.one_of(st.none(), st.integers(0, 14)),
    st.booleans(),
)
def test_tcp_round_trip(
    pair: tuple[bytes, bytes],
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    payload: bytes,
    mss: int,
    wscale: int | None,
    sack_ok: bool,
) -> None:
    src, dst = pair
    options = tcpwire.syn_options(mss, wscale, sack_ok)
    data = tcpwire.build(src, dst, (sport, dport, seq, ack, flags, window), options, payload)
    seg = tcpwire.parse(src, dst, data)
    assert seg is not None
    assert (seg.sport, seg.dport, seg.seq, seg.ack, seg.flags, seg.window) == (
        sport,
        dport,
        seq,
        ack,
        flags,
        window,
    )
    assert (seg.payload, seg.mss, seg.wscale, seg.sack_ok) == (payload, mss, wscale, sack_ok)
    other = dst[:-1] + bytes([dst[-1] + 1])
    assert tcpwire.parse(src, other, data) is None  # the pseudo-header counts
    blocks = [(seq, (seq + 100) & 0xFFFFFFFF), (ack, (ack + 5) & 0xFFFFFFFF)]
    data = tcpwire.build(
        src, dst, (sport, dport, seq, ack, flags, window), tcpwire.sack_option(blocks), b""
    )
    parsed = tcpwire.parse(src, dst, data)
    assert parsed is not None and list(parsed.sack) == blocks


@given(addresses, st.binary(max_size=60))
def test_tcp_options_garbage_never_raises(pair: tuple[bytes, bytes], options: bytes) -> None:
    options = options[: len(options) // 4 * 4]
    data = tcpwire.build(*pair, (1, 2, 3, 4, tcpwire.ACK, 5), options, b"data")
    seg = tcpwire.parse(*pair, data)
    assert seg is not None and seg.payload == b"data"


@given(addresses, st.integers(1, 65535), st.integers(1, 65535), st.binary(max_size=1400))
def test_udp_round_trip(pair: tuple[bytes, bytes], sport: int, dport: int, payload: bytes) -> None:
    data = udp.build(*pair, sport, dport, payload)
    assert udp.parse(*pair, data) == (sport, dport, payload)
    corrupt = data[:-1] + bytes([data[-1] ^ 1]) if payload else data[:6] + b"\x12\x34"
    assert udp.parse(*pair, corrupt) is None


@given(addresses, st.integers(0, 65535), st.integers(0, 65535), st.binary(max_size=1400))
def test_icmp_echo_round_trip(
    pair: tuple[bytes, bytes], ident: int, seq: int, payload: bytes
) -> None:
    src, dst = pair
    kind = icmp.request_kind(4 if len(src) == 4 else 6)
    data = icmp.build_echo(src, dst, kind, ident, seq, payload)
    assert icmp.parse_echo(src, dst, data) == (kind, ident, seq, payload)
    assert (
        icmp.parse_echo(
            src,
            dst,
            data[:-1] + bytes([data[-1] ^ 0x80]) if payload else data[:2] + b"\0\1" + data[4:],
        )
        is None
    )


@settings(max_examples=300, deadline=None)
@given(addresses, st.binary(max_size=200))
def test_garbage_never_raises_from_a_parser(pair: tuple[bytes, bytes], data: bytes) -> None:
    ip.parse(data)
    tcpwire.parse(*pair, data)
    udp.parse(*pair, data)
    icmp.parse_echo(*pair, data)


def _garbage_packets() -> st.SearchStrategy[bytes]:
    """Garbage, and garbage behind a valid IP header addressed to the stack (any protocol)."""
    raw = st.binary(max_size=120)
    wrapped = st.builds(
        lambda pair, proto, body: ip.build(pair[0], pair[1], proto, body),
        st.sampled_from([(V4[1], V4[0]), (V6[1], V6[0])]),  # from B to A
        st.sampled_from([ip.PROTO_TCP, ip.PROTO_UDP, ip.PROTO_ICMP, ip.PROTO_ICMPV6, 0, 60]),
        raw,
    )
    return st.one_of(raw, wrapped)


@settings(max_examples=200, deadline=None)
@given(st.lists(_garbage_packets(), max_size=20))
def test_garbage_never_raises_out_of_a_stack(packets: list[bytes]) -> None:
    async def main() -> None:
        _stack, _peer, link, _ = stack_pair()
        errors: list[object] = []
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        assert link.receiver is not None
        link.receiver(packets)
        await asyncio.sleep(0)
        assert not errors

    asyncio.run(main())
