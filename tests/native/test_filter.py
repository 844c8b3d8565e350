"""The native packet filter (filter.c) against its Python model (pywg.policy.model).

Hypothesis draws rule tables, and sequences of packets in both directions
over a small set of addresses and ports (so that rules and flows meet):
TCP with its flags, UDP, ICMP echo and errors, another protocol, IPv4 and
IPv6, first and later fragments, IPv6 extension headers, truncated and
corrupted headers, the clock jumping past the timeouts, and the rules
replaced midway. Both filters must give every packet the same verdict and
count the same. Then the semantics themselves, on both: replies pass,
timeouts, a live change, fragments, malformed packets.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pywg import _fast
from pywg.constants import (
    FILTER_DROP_FRAGMENT,
    FILTER_DROP_MALFORMED,
    FILTER_DROP_NO_RULE,
    FILTER_PASS,
    FLOW_TIMEOUT_TCP_ESTABLISHED,
    FLOW_TIMEOUT_TCP_OPENING,
    FLOW_TIMEOUT_UDP,
)
from pywg.policy import PacketFilter, decode
from pywg.policy.packet import parse
from pywg.policy.rules import RuleRow

pytestmark = pytest.mark.skipif(not _fast.AVAILABLE, reason="the C extension is not built")

if _fast.AVAILABLE:
    from pywg._fast.filter import NativeFilter

TCP, UDP, ICMP, ICMP6, GRE = 6, 17, 1, 58, 47
SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04
HOSTS = {4: ["10.0.0.1", "10.0.0.2", "10.0.1.3"], 6: ["fd00::1", "fd00::2", "fd00:1::3"]}
PORTS = [22, 80, 1000, 5000]


# -- packets -----------------------------------------------------------------------------------


def transport(proto: int, family: int, sport: int, dport: int, flags: int, icmp: int) -> bytes:
    if proto == TCP:
        return struct.pack("!HHIIBBHHH", sport, dport, 1, 2, 0x50, flags, 512, 0, 0) + b"t" * 8
    if proto == UDP:
        return struct.pack("!HHHH", sport, dport, 16, 0) + b"u" * 8
    if proto in (ICMP, ICMP6):
        return struct.pack("!BBHHH", icmp, 0, 0, sport, 1) + b"i" * 8
    return b"g" * 12


def ipv4(src: str, dst: str, proto: int, body: bytes, frag: int = 0, ident: int = 7) -> bytes:
    total = 20 + len(body)
    head = struct.pack("!BBHHHBBH", 0x45, 0, total, ident, frag, 64, proto, 0)
    return head + ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + body


def ipv6(src: str, dst: str, proto: int, body: bytes, ext: bytes = b"", first: int = -1) -> bytes:
    """`ext`: extension headers (their first's type in `first`)."""
    payload = ext + body
    head = struct.pack("!IHBB", 6 << 28, len(payload), proto if first < 0 else first, 64)
    return head + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + payload


def fragment_header(nxt: int, offset: int, more: bool, ident: int) -> bytes:
    return struct.pack("!BBHI", nxt, 0, offset << 3 | int(more), ident)


def options_header(nxt: int) -> bytes:
    return bytes([nxt, 0]) + b"\x01\x04\x00\x00\x00\x00"  # PadN: 8 bytes in all


@st.composite
def packets(draw: st.DrawFn) -> bytes:
    family = draw(st.sampled_from([4, 6]))
    src, dst = draw(st.sampled_from(HOSTS[family])), draw(st.sampled_from(HOSTS[family]))
    proto = draw(st.sampled_from([TCP, UDP, ICMP if family == 4 else ICMP6, GRE]))
    echo = (8, 0, 3) if family == 4 else (128, 129, 1)
    body = transport(
        proto,
        family,
        draw(st.sampled_from(PORTS)),
        draw(st.sampled_from(PORTS)),
        draw(st.sampled_from([SYN, SYN | ACK, ACK, FIN | ACK, RST, 0])),
        draw(st.sampled_from(echo)),
    )
    shape = draw(st.sampled_from(["plain", "plain", "first", "later", "ext"]))
    ident = draw(st.sampled_from([1, 2]))
    offset = draw(st.sampled_from([1, 3]))
    if family == 4:
        frag = {"first": 0x2000, "later": offset}.get(shape, 0)
        packet = ipv4(src, dst, proto, body if shape != "later" else b"f" * 16, frag, ident)
    elif shape in ("first", "later"):
        ext = fragment_header(proto, 0 if shape == "first" else offset, True, ident)
        packet = ipv6(src, dst, proto, body if shape == "first" else b"f" * 16, ext, first=44)
    elif shape == "ext":
        packet = ipv6(src, dst, proto, body, options_header(proto), first=60)
    else:
        packet = ipv6(src, dst, proto, body)
    damage = draw(st.sampled_from(["none"] * 6 + ["cut", "byte"]))
    if damage == "cut":
        packet = packet[: draw(st.integers(0, len(packet)))]
    elif damage == "byte" and packet:
        at = draw(st.integers(0, len(packet) - 1))
        packet = packet[:at] + bytes([draw(st.integers(0, 255))]) + packet[at + 1 :]
    return packet


@st.composite
def rule_rows(draw: st.DrawFn) -> RuleRow:
    family = draw(st.sampled_from([4, 6]))
    bits = 32 if family == 4 else 128

    def prefix() -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        host = draw(st.sampled_from(HOSTS[family]))
        length = draw(st.sampled_from([0, bits // 2 + 8, bits]))
        return ipaddress.ip_network(f"{host}/{length}", strict=False)

    proto = draw(st.sampled_from([0, 1, TCP, UDP]))
    lo = draw(st.sampled_from([0, 22, 80, 1000]))
    hi = draw(st.sampled_from([lo, lo + 100, 65535]))
    if proto == 1:
        lo, hi = 0, 65535
    return RuleRow(family, prefix(), prefix(), proto, lo, hi)


def wide(family: int, proto: int, port: int | None = None) -> RuleRow:
    """From anywhere to anywhere: all ports, or one."""
    anywhere = ipaddress.ip_network("0.0.0.0/0" if family == 4 else "::/0")
    lo, hi = (0, 65535) if port is None else (port, port)
    return RuleRow(family, anywhere, anywhere, proto, lo, hi)


# rule tables: random rows, and now and then one that lets much in (so that flows
# start, and a later table can end them)
ROWS = st.one_of(
    rule_rows(),
    rule_rows(),
    st.builds(wide, st.sampled_from([4, 6]), st.sampled_from([0, 1, TCP, UDP])),
    st.builds(wide, st.sampled_from([4, 6]), st.sampled_from([TCP, UDP]), st.sampled_from(PORTS)),
)
DT = st.sampled_from([0, 1, 31, 200, 8000])  # seconds: past each timeout


def icmp_error(packet: bytes, quote: int = 48) -> bytes:
    """Destination unreachable (IPv4) or Packet Too Big (IPv6) from `packet`'s destination,
    quoting its first `quote` bytes (unparsable `packet`: returned as it is)."""
    h = parse(packet)
    if h is None:
        return packet
    src, dst = str(ipaddress.ip_address(h.dst)), str(ipaddress.ip_address(h.src))
    if h.family == 4:
        return ipv4(src, dst, ICMP, struct.pack("!BBHI", 3, 4, 0, 1400) + packet[:quote])
    return ipv6(src, dst, ICMP6, struct.pack("!BBHI", 2, 0, 0, 1280) + packet[:quote])


def later_fragment(packet: bytes) -> bytes:
    """A fragment at offset 24 of the datagram `packet` (a first fragment) starts."""
    h = parse(packet)
    if h is None or not h.first_fragment:
        return packet
    src, dst = str(ipaddress.ip_address(h.src)), str(ipaddress.ip_address(h.dst))
    if h.family == 4:
        return ipv4(src, dst, h.proto, b"f" * 16, frag=3, ident=h.frag_id & 0xFFFF)
    return ipv6(src, dst, h.proto, b"f" * 16, fragment_header(h.proto, 3, False, h.frag_id), 44)


STEPS = st.one_of(
    st.tuples(st.sampled_from(["in", "in", "out"]), packets(), DT),
    st.tuples(st.just("again"), st.integers(0, 39), st.sampled_from([0, 1])),  # a packet again
    st.tuples(st.just("later"), st.integers(0, 39), st.sampled_from([0, 1, 31])),  # its fragment
    st.tuples(st.just("error"), st.integers(0, 39), st.sampled_from([0, 1, 31])),  # ICMP about it
    st.tuples(st.just("rules"), st.lists(ROWS, max_size=6), st.just(0)),
)


def compare_stats(native: NativeFilter, model: PacketFilter) -> None:
    got, want = native.stats, model.stats
    got.flows = want.flows = got.flows_evicted = want.flows_evicted = 0  # the tables differ
    assert got == want


@settings(max_examples=300, deadline=None)
@given(st.lists(ROWS, max_size=8), st.lists(STEPS, max_size=40))
def test_the_c_filter_decides_as_the_model(first: list[RuleRow], steps: list[tuple]) -> None:
    native, model = NativeFilter(), PacketFilter()
    native.set_rules(first)
    model.set_rules(first)
    now, sent = 1000.0, [b"\x45"]
    for kind, item, dt in steps:
        now += dt
        if kind == "again":  # the same flow later, under other rules perhaps
            kind, item = "in", sent[item % len(sent)]
        elif kind == "error":  # an ICMP error about an earlier packet (this node's, maybe)
            kind, item = "in", icmp_error(sent[item % len(sent)], quote=40 + item)
        elif kind == "later":  # a later fragment of an earlier first fragment's datagram
            firsts = [p for p in sent if (h := parse(p)) is not None and h.first_fragment]
            kind, item = "in", later_fragment((firsts or sent)[item % len(firsts or sent)])
        elif kind != "rules":
            sent.append(item)
        if kind == "rules":
            native.set_rules(item)
            model.set_rules(item)
        elif kind == "out":
            native.outbound(item, now)
            model.outbound(item, now)
        else:
            assert native.inbound(item, now) == model.inbound(item, now), item.hex()
    compare_stats(native, model)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_any_bytes_get_the_same_verdict(data: bytes) -> None:
    anywhere4, anywhere6 = ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")
    rows = [
        RuleRow(4, anywhere4, anywhere4, 0, 0, 65535),
        RuleRow(6, anywhere6, anywhere6, 0, 0, 65535),
    ]
    native, model = NativeFilter(), PacketFilter()
    native.set_rules(rows)
    model.set_rules(rows)
    native.outbound(data, 1.0)
    model.outbound(data, 1.0)
    assert native.inbound(data, 1.0) == model.inbound(data, 1.0)


# -- the semantics, on both filters ---------------------------------------------------------

FILTERS = ["native", "model"]
ME, PEER, OTHER = "10.0.0.1", "10.0.0.2", "10.0.1.3"
ME6, PEER6 = "fd00::1", "fd00::2"


def make(which: str, rules: str) -> NativeFilter | PacketFilter:
    f: NativeFilter | PacketFilter = NativeFilter() if which == "native" else PacketFilter()
    f.set_rules(decode(rules))
    return f


def tcp4(src: str, dst: str, sport: int, dport: int, flags: int) -> bytes:
    return ipv4(src, dst, TCP, transport(TCP, 4, sport, dport, flags, 0))


SSH_ONLY = f'[["{PEER}/32 {PEER6}/128", "{ME}/32 {ME6}/128", "tcp", "22"]]'


@pytest.mark.parametrize("which", FILTERS)
def test_rules_let_in_what_they_allow_and_nothing_else(which: str) -> None:
    f = make(which, SSH_ONLY)
    assert f.inbound(tcp4(PEER, ME, 4000, 22, SYN), 1) == FILTER_PASS
    assert f.inbound(tcp4(PEER, ME, 4000, 23, SYN), 1) == FILTER_DROP_NO_RULE
    assert f.inbound(tcp4(OTHER, ME, 4000, 22, SYN), 1) == FILTER_DROP_NO_RULE
    assert f.inbound(tcp4(PEER, OTHER, 4000, 22, SYN), 1) == FILTER_DROP_NO_RULE  # not to me
    udp = ipv4(PEER, ME, UDP, transport(UDP, 4, 4000, 22, 0, 0))
    assert f.inbound(udp, 1) == FILTER_DROP_NO_RULE
    ping = ipv4(PEER, ME, ICMP, transport(ICMP, 4, 9, 0, 0, 8))
    assert f.inbound(ping, 1) == FILTER_DROP_NO_RULE
    v6 = ipv6(PEER6, ME6, TCP, transport(TCP, 6, 4000, 22, SYN, 0))
    assert f.inbound(v6, 1) == FILTER_PASS
    f.set_rules(None)  # no policy: everything passes
    assert f.inbound(tcp4(OTHER, ME, 1, 2, SYN), 1) == FILTER_PASS


@pytest.mark.parametrize("which", FILTERS)
def test_replies_to_what_this_node_opened_pass_until_the_flow_expires(which: str) -> None:
    f = make(which, "[]")  # nothing may come in
    f.outbound(tcp4(ME, OTHER, 40000, 80, SYN), 10)
    assert f.inbound(tcp4(OTHER, ME, 80, 40000, SYN | ACK), 11) == FILTER_PASS
    assert f.inbound(tcp4(OTHER, ME, 80, 40001, SYN | ACK), 11) == FILTER_DROP_NO_RULE
    f.outbound(tcp4(ME, OTHER, 40000, 80, ACK), 11)  # established: the long timeout
    later = 11 + FLOW_TIMEOUT_TCP_ESTABLISHED - 1
    assert f.inbound(tcp4(OTHER, ME, 80, 40000, ACK), later) == FILTER_PASS
    gone = later + FLOW_TIMEOUT_TCP_ESTABLISHED + 1
    assert f.inbound(tcp4(OTHER, ME, 80, 40000, ACK), gone) == FILTER_DROP_NO_RULE
    # a SYN answered by nothing expires sooner
    f.outbound(tcp4(ME, OTHER, 40002, 80, SYN), 100)
    late = 100 + FLOW_TIMEOUT_TCP_OPENING + 1
    assert f.inbound(tcp4(OTHER, ME, 80, 40002, SYN | ACK), late) == FILTER_DROP_NO_RULE
    # UDP and ping replies
    f.outbound(ipv4(ME, OTHER, UDP, transport(UDP, 4, 5353, 53, 0, 0)), 200)
    assert f.inbound(ipv4(OTHER, ME, UDP, transport(UDP, 4, 53, 5353, 0, 0)), 201) == FILTER_PASS
    stale = 200 + FLOW_TIMEOUT_UDP + 1
    assert f.inbound(ipv4(OTHER, ME, UDP, transport(UDP, 4, 53, 5353, 0, 0)), stale) != FILTER_PASS
    f.outbound(ipv6(ME6, PEER6, ICMP6, transport(ICMP6, 6, 77, 0, 0, 128)), 300)
    reply = ipv6(PEER6, ME6, ICMP6, transport(ICMP6, 6, 77, 0, 0, 129))
    assert f.inbound(reply, 300.5) == FILTER_PASS
    other_id = ipv6(PEER6, ME6, ICMP6, transport(ICMP6, 6, 78, 0, 0, 129))
    assert f.inbound(other_id, 300.5) == FILTER_DROP_NO_RULE


@pytest.mark.parametrize("which", FILTERS)
def test_a_live_change_keeps_own_flows_and_ends_those_no_longer_allowed(which: str) -> None:
    f = make(which, SSH_ONLY)
    assert f.inbound(tcp4(PEER, ME, 4000, 22, SYN), 1) == FILTER_PASS
    f.outbound(tcp4(ME, PEER, 22, 4000, SYN | ACK), 1)
    f.outbound(tcp4(ME, PEER, 50000, 443, SYN), 1)  # this node's own flow
    f.set_rules(decode(f'[["{PEER}/32", "{ME}/32", "tcp", "22"]]'))  # still allowed
    assert f.inbound(tcp4(PEER, ME, 4000, 22, ACK), 2) == FILTER_PASS
    f.set_rules(decode("[]"))
    assert f.inbound(tcp4(PEER, ME, 4000, 22, ACK), 3) == FILTER_DROP_NO_RULE
    f.outbound(tcp4(ME, PEER, 22, 4000, ACK), 3)  # a retransmission does not revive it
    assert f.inbound(tcp4(PEER, ME, 4000, 22, ACK), 3) == FILTER_DROP_NO_RULE  # ended
    assert f.inbound(tcp4(PEER, ME, 443, 50000, SYN | ACK), 3) == FILTER_PASS
    f.set_rules(decode(SSH_ONLY))  # allowed again before it expired
    assert f.inbound(tcp4(PEER, ME, 4000, 22, ACK), 4) == FILTER_PASS


@pytest.mark.parametrize("which", FILTERS)
def test_icmp_errors_about_own_flows_pass(which: str) -> None:
    f = make(which, "[]")
    dns = ipv4(ME, OTHER, UDP, transport(UDP, 4, 5353, 53, 0, 0))
    f.outbound(dns, 1)
    assert f.inbound(icmp_error(dns), 2) == FILTER_PASS  # port unreachable, say
    assert f.inbound(icmp_error(dns, quote=27), 2) == FILTER_DROP_NO_RULE  # 7 bytes of UDP
    other = ipv4(ME, OTHER, UDP, transport(UDP, 4, 5354, 53, 0, 0))
    assert f.inbound(icmp_error(other), 2) == FILTER_DROP_NO_RULE  # no such flow
    elsewhere = ipv4(OTHER, "10.0.1.9", ICMP, struct.pack("!BBHI", 3, 4, 0, 1400) + dns[:48])
    assert f.inbound(elsewhere, 2) == FILTER_DROP_NO_RULE  # not to the quoted packet's source
    syn = ipv6(ME6, PEER6, TCP, transport(TCP, 6, 40000, 443, SYN, 0))
    f.outbound(syn, 3)
    assert f.inbound(icmp_error(syn), 4) == FILTER_PASS  # Packet Too Big: path MTU discovery
    assert f.stats.passed_related == 2


@pytest.mark.parametrize("which", FILTERS)
def test_fragments_follow_their_first(which: str) -> None:
    f = make(which, f'[["{PEER}/32 {PEER6}/128", "{ME}/32 {ME6}/128", "udp", "53"]]')
    body = transport(UDP, 4, 4000, 53, 0, 0)
    assert f.inbound(ipv4(PEER, ME, UDP, b"x" * 16, frag=3, ident=5), 1) == FILTER_DROP_FRAGMENT
    assert f.inbound(ipv4(PEER, ME, UDP, body, frag=0x2000, ident=5), 1) == FILTER_PASS
    assert f.inbound(ipv4(PEER, ME, UDP, b"x" * 16, frag=3, ident=5), 2) == FILTER_PASS
    assert f.inbound(ipv4(PEER, ME, UDP, b"x" * 16, frag=3, ident=6), 2) == FILTER_DROP_FRAGMENT
    blocked = transport(UDP, 4, 4000, 54, 0, 0)
    assert f.inbound(ipv4(PEER, ME, UDP, blocked, frag=0x2000, ident=8), 1) == FILTER_DROP_NO_RULE
    assert f.inbound(ipv4(PEER, ME, UDP, b"x" * 16, frag=3, ident=8), 2) == FILTER_DROP_FRAGMENT
    # IPv6: the Fragment header, behind a Destination Options header
    first = options_header(44) + fragment_header(UDP, 0, True, 99)
    later = fragment_header(UDP, 2, False, 99)
    v6 = transport(UDP, 6, 4000, 53, 0, 0)
    assert f.inbound(ipv6(PEER6, ME6, UDP, b"y" * 16, later, first=44), 1) == FILTER_DROP_FRAGMENT
    assert f.inbound(ipv6(PEER6, ME6, UDP, v6, first, first=60), 1) == FILTER_PASS
    assert f.inbound(ipv6(PEER6, ME6, UDP, b"y" * 16, later, first=44), 1) == FILTER_PASS
    # RFC 1858: a TCP fragment at offset 8 bytes could rewrite the ports
    assert f.inbound(ipv4(PEER, ME, TCP, b"x" * 16, frag=1), 1) == FILTER_DROP_MALFORMED


@pytest.mark.parametrize("which", FILTERS)
def test_malformed_headers_are_dropped(which: str) -> None:
    f = make(which, '[["0.0.0.0/0 ::/0", "0.0.0.0/0 ::/0", "any", "*"]]')
    good4 = tcp4(PEER, ME, 4000, 22, SYN)
    good6 = ipv6(PEER6, ME6, TCP, transport(TCP, 6, 4000, 22, SYN, 0))
    assert f.inbound(good4, 1) == FILTER_PASS and f.inbound(good6, 1) == FILTER_PASS
    for cut in (0, 1, 19, 20, 39):  # no room for the IP or the whole TCP header
        assert f.inbound(good4[:cut], 1) == FILTER_DROP_MALFORMED, cut
    for cut in (39, 40, 59):
        assert f.inbound(good6[:cut], 1) == FILTER_DROP_MALFORMED, cut
    bad_ihl = bytes([0x4F]) + good4[1:]  # 60-byte header in a 48-byte packet
    assert f.inbound(bad_ihl, 1) == FILTER_DROP_MALFORMED
    short_ihl = bytes([0x44]) + good4[1:]
    assert f.inbound(short_ihl, 1) == FILTER_DROP_MALFORMED
    too_long = good4[:2] + struct.pack("!H", len(good4) + 1) + good4[4:]
    assert f.inbound(too_long, 1) == FILTER_DROP_MALFORMED
    v6_long = good6[:4] + struct.pack("!H", 0xFFFF) + good6[6:]
    assert f.inbound(v6_long, 1) == FILTER_DROP_MALFORMED
    # an options header claiming more bytes than there are; a chain of 9 headers
    huge = bytes([TCP, 200]) + b"\x00" * 6
    assert f.inbound(ipv6(PEER6, ME6, TCP, b"", huge, first=60), 1) == FILTER_DROP_MALFORMED
    chain = b"".join(options_header(60) for _ in range(8)) + options_header(TCP)
    body = transport(TCP, 6, 1, 2, SYN, 0)
    assert f.inbound(ipv6(PEER6, ME6, TCP, body, chain, first=60), 1) == FILTER_DROP_MALFORMED
    two_fragments = fragment_header(44, 0, True, 1) + fragment_header(TCP, 0, True, 1)
    assert f.inbound(ipv6(PEER6, ME6, TCP, body, two_fragments, first=44), 1) == 2
    assert f.inbound(b"\x50" + good4[1:], 1) == FILTER_DROP_MALFORMED  # IP version 5
    assert f.stats.dropped_malformed == 16


def test_the_table_stays_bounded_and_reuses_the_oldest() -> None:
    f = NativeFilter(capacity=64)
    f.set_rules(decode("[]"))
    for port in range(1000):
        f.outbound(tcp4(ME, OTHER, 10000 + port, 80, SYN), 5.0 + port / 1000)  # all alive
    stats = f.stats
    assert stats.flows == 64 and stats.flows_evicted == 1000 - 64
    assert f.inbound(tcp4(OTHER, ME, 80, 10999, SYN | ACK), 6.0) == FILTER_PASS
    assert f.inbound(tcp4(OTHER, ME, 80, 10000, SYN | ACK), 6.0) == FILTER_DROP_NO_RULE
