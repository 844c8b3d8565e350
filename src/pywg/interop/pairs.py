"""Pair scenarios: two implementations, each a daemon in its own lab host, as peers.

Every scenario gets a fresh :class:`PairContext` (A in host ``a``, B in host
``b``, one link, not yet peers) and checks one behaviour of the protocol in
both implementations at once, usually in both directions. Section numbers
are the WireGuard whitepaper's; timer values are its §6 constants.
"""

from __future__ import annotations

import itertools
import socket
import statistics
import time

from ..constants import KEEPALIVE_TIMEOUT, REKEY_AFTER_TIME
from ..keys import PresharedKey
from ..lab import PacedStream, tcp_transfer
from ..lab.capture import UdpCapture
from ..lab.wireguard import WgNode
from ..messages import padded_length
from .context import PairContext
from .flood import RAMP_START, HandshakeFlood, add_flood_addresses
from .scenario import check, scenario

MTU = 1420  # the lab's tunnel MTU (start_node's default)
TRANSPORT_OVERHEAD = 32  # type, receiver, counter (16) + Poly1305 tag (16), §5.4.6
MB = 1 << 20


def _name(node: WgNode) -> str:
    return f"{node.impl.name} ({node.host.name})"


def _both_ways_ping(ctx: PairContext, family: int = 4, count: int = 3) -> None:
    for src in (ctx.a, ctx.b):
        dst = ctx.other(src)
        address = dst.addr4 if family == 4 else dst.addr6
        check(
            src.host.ping(address, count=count, timeout=10),
            f"{_name(src)} cannot ping {address} through the tunnel",
        )


# -- handshakes ------------------------------------------------------------------------------


def _initiate(ctx: PairContext, initiator: WgNode) -> None:
    responder = ctx.other(initiator)
    ctx.connect(a_knows_b=initiator is ctx.a, b_knows_a=initiator is ctx.b)
    took = ctx.handshake(initiator, deadline=15)
    check(took is not None, f"{_name(initiator)} initiated; no handshake within 15 s")
    ctx.note("handshake_s", round(took or 0.0, 2))
    check(
        responder.peer_status(initiator).last_handshake is not None,
        f"{_name(responder)} reports no handshake after answering one",
    )
    learned = responder.peer_status(initiator).endpoint
    check(
        learned == ctx.endpoint(initiator),
        f"{_name(responder)} learned endpoint {learned}, expected {ctx.endpoint(initiator)}",
    )
    check(
        responder.host.ping(initiator.addr4, count=2, timeout=5),
        f"{_name(responder)} cannot reach the initiator at the endpoint it learned",
    )


@scenario("handshake-a", "handshake, A initiates", kind="pair", timeout=45)
def handshake_a_initiates(ctx: PairContext) -> None:
    """Only A knows B's endpoint; A pings, B answers the initiation (§5.4.2-§5.4.3),
    learns A's endpoint from it (§2.1) and can reach A back."""
    _initiate(ctx, ctx.a)


@scenario("handshake-b", "handshake, B initiates", kind="pair", timeout=45)
def handshake_b_initiates(ctx: PairContext) -> None:
    """As handshake-a with the roles swapped: only B knows A's endpoint."""
    _initiate(ctx, ctx.b)


# -- address families --------------------------------------------------------------------------


def _families(ctx: PairContext, inner: int, outer: int) -> None:
    ctx.connect(family=outer)
    took = ctx.handshake(ctx.a, deadline=15)
    check(took is not None, f"no handshake over the IPv{outer} underlay within 15 s")
    _both_ways_ping(ctx, family=inner)
    for node in (ctx.a, ctx.b):
        seen = node.peer_status(ctx.other(node)).endpoint or ""
        check(
            seen.startswith("[") == (outer == 6),
            f"{_name(node)} reports endpoint {seen} for an IPv{outer} underlay",
        )


def _register_families(inner: int, outer: int) -> None:
    """The scenario ``ipv{inner}-in-ipv{outer}``."""

    def run(ctx: PairContext) -> None:
        _families(ctx, inner, outer)

    run.__doc__ = (
        f"Pings both ways between the IPv{inner} tunnel addresses, endpoints on IPv{outer}."
    )
    name, title = f"ipv{inner}-in-ipv{outer}", f"IPv{inner} inside, IPv{outer} outside"
    scenario(name, title, kind="pair", timeout=45)(run)


for _inner, _outer in ((4, 4), (6, 4), (4, 6), (6, 6)):
    _register_families(_inner, _outer)


# -- preshared key -----------------------------------------------------------------------------


def _remove_peers(ctx: PairContext) -> None:
    ctx.a.set(f"public_key={ctx.b.public_key.to_hex()}\nremove=true\n")
    ctx.b.set(f"public_key={ctx.a.public_key.to_hex()}\nremove=true\n")


@scenario("preshared-key", "preshared key (match, mismatch)", kind="pair", timeout=60)
def preshared_key(ctx: PairContext) -> None:
    """The same preshared key on both sides: handshake and pings (§5.4.3, mixed in
    as Q). Then the peers are removed and re-added with different keys: the
    responder's confirmation cannot be opened, so no handshake in 8 s."""
    psk = PresharedKey.generate()
    ctx.connect(preshared_key=psk)
    check(ctx.handshake(ctx.a, deadline=15) is not None, "no handshake with a shared PSK")
    _both_ways_ping(ctx, count=2)
    _remove_peers(ctx)
    ctx.connect(preshared_key=psk, b_preshared_key=PresharedKey.generate())
    check(
        ctx.handshake(ctx.a, deadline=8) is None,
        "a handshake completed although the preshared keys differ",
    )


# -- keepalives --------------------------------------------------------------------------------


def _one_way(src: WgNode, dst: WgNode, port: int = 7777) -> float:
    """One UDP datagram from src to dst through the tunnel, to a socket that never
    answers; returns when it arrived (monotonic)."""
    sink = dst.host.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = src.host.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sink.bind((dst.addr4, port))
        sink.settimeout(5)
        sender.sendto(b"one-way", (dst.addr4, port))
        sink.recv(100)
        return time.monotonic()
    except TimeoutError:
        check(False, f"a datagram from {_name(src)} did not arrive at {_name(dst)}")
        raise
    finally:
        sink.close()
        sender.close()


def _keepalives(capture: UdpCapture, ctx: PairContext, node: WgNode, since: float) -> list[float]:
    """When `node` sent keepalives (transport messages with an empty payload) after `since`."""
    source = (ctx.underlay(node), node.port)
    return [
        d.time
        for d in capture.datagrams(source=source, since=since)
        if len(d.payload) == TRANSPORT_OVERHEAD and d.payload[0] == 4
    ]


@scenario("keepalive", "passive keepalive after 10 s", kind="pair", timeout=75)
def passive_keepalive(ctx: PairContext) -> None:
    """§6.5: a peer that received data and sent nothing back for KEEPALIVE_TIMEOUT
    (10 s) sends an empty transport message. One datagram goes each way in
    turn to a socket that never answers; the receiver's keepalive must show
    up on the wire 10 s later (tolerance −0.5/+2 s)."""
    ctx.connect()
    check(ctx.handshake(ctx.a, deadline=15) is not None, "no handshake")
    time.sleep(1.0)
    with UdpCapture(ctx.b_host, ctx.link.b_if) as capture:
        for sender in (ctx.a, ctx.b):
            receiver = ctx.other(sender)
            arrived = _one_way(sender, receiver)
            end = arrived + KEEPALIVE_TIMEOUT + 4
            sent: list[float] = []
            while time.monotonic() < end and not sent:
                time.sleep(0.1)
                sent = _keepalives(capture, ctx, receiver, arrived)
            check(sent, f"{_name(receiver)} sent no keepalive within 14 s of receiving data")
            delay = sent[0] - arrived
            ctx.note(f"keepalive_s_{receiver.host.name}", round(delay, 2))
            check(
                KEEPALIVE_TIMEOUT - 0.5 <= delay <= KEEPALIVE_TIMEOUT + 2,
                f"{_name(receiver)} sent its keepalive {delay:.1f} s after receiving data",
            )


def _keepalive_gaps(
    capture: UdpCapture, ctx: PairContext, node: WgNode, since: float
) -> list[float]:
    times = _keepalives(capture, ctx, node, since)
    return [b - a for a, b in itertools.pairwise(times)]


@scenario("persistent-keepalive", "persistent keepalive timing", kind="pair", timeout=75)
def persistent_keepalive(ctx: PairContext) -> None:
    """§6.5: with persistent keepalive N, a keepalive goes out whenever no
    authenticated packet was sent or received for N s. A alone keeps 2 s,
    then B alone 3 s: over 8 quiet seconds each one's keepalives must be N s
    apart (median within 25 %). Then both: A at 2 s and B at 3 s, and B,
    hearing A every 2 s, must send none (its timer restarts on every
    authenticated packet, sent or received, as in Linux and wireguard-go)."""
    ctx.connect()
    check(ctx.handshake(ctx.a, deadline=15) is not None, "no handshake")
    with UdpCapture(ctx.b_host, ctx.link.b_if) as capture:
        for node, every, a_every, b_every in ((ctx.a, 2, 2, 0), (ctx.b, 3, 0, 3)):
            start = time.monotonic()
            ctx.connect(a_keepalive=a_every, b_keepalive=b_every)
            time.sleep(8.5)
            gaps = _keepalive_gaps(capture, ctx, node, start)
            check(
                len(gaps) >= 2,
                f"{_name(node)} sent {len(gaps) + 1 if gaps else 'at most 1'} keepalives in "
                f"8.5 s with persistent keepalive {every} s",
            )
            median = statistics.median(gaps)
            ctx.note(f"interval_s_{node.host.name}", round(median, 2))
            check(
                abs(median - every) <= 0.25 * every,
                f"{_name(node)}: keepalives {median:.2f} s apart, configured {every} s",
            )
        start = time.monotonic()
        ctx.connect(a_keepalive=2, b_keepalive=3)
        time.sleep(1.0)  # B's own first one may be on its way
        since = time.monotonic()
        time.sleep(7.0)
        heard = len(_keepalives(capture, ctx, ctx.a, since))
        spoke = len(_keepalives(capture, ctx, ctx.b, since))
        check(heard >= 3, f"{_name(ctx.a)} sent {heard} keepalives in 7 s at 2 s")
        check(
            spoke == 0,
            f"{_name(ctx.b)} sent {spoke} keepalives at 3 s while hearing one every 2 s",
        )


# -- rekey ---------------------------------------------------------------------------------------


@scenario("rekey", "rekey after 120 s under traffic", kind="pair", timeout=220, time_scaled=True)
def rekey(ctx: PairContext) -> None:
    """§6.2: the sender of data starts a new handshake REKEY_AFTER_TIME (120 s)
    after the session began. Two paced TCP streams (A→B and B→A) run for
    135 s of protocol time; both handshake times must move forward by at
    least 115 s, and both streams arrive intact without stalling for 2 s.
    Real time unless both implementations can scale their protocol time
    (pywgd: PYWG_TIME_SCALE); then 10 times fast (13.5 s, handshake times
    moving by 11.5 s)."""
    ctx.connect()
    check(ctx.handshake(ctx.a, deadline=15) is not None, "no handshake")
    first = {n.host.name: n.peer_status(ctx.other(n)).last_handshake for n in (ctx.a, ctx.b)}
    scale = ctx.time_scale
    ctx.note("time_scale", scale)
    seconds = (REKEY_AFTER_TIME + 15) / scale
    forward = PacedStream(ctx.a_host, ctx.b_host, ctx.b.addr4, port=5301, rate=200_000,
                          seconds=seconds, timeout=seconds + 40)  # fmt: skip
    back = PacedStream(ctx.b_host, ctx.a_host, ctx.a.addr4, port=5302, rate=200_000,
                       seconds=seconds, seed=1, timeout=seconds + 40)  # fmt: skip
    results = [forward.result(deadline=seconds + 40), back.result(deadline=seconds + 40)]
    for label, result in zip(("A→B", "B→A"), results, strict=True):
        check(result.ok, f"stream {label} did not arrive intact: {result}")
        ctx.note(f"max_stall_s_{label}", round(result.max_gap, 2))
        check(result.max_gap < 2.0, f"stream {label} stalled {result.max_gap:.1f} s")
    for node in (ctx.a, ctx.b):
        now = node.peer_status(ctx.other(node)).last_handshake
        before = first[node.host.name]
        check(
            now is not None
            and before is not None
            and now - before >= (REKEY_AFTER_TIME - 5) / scale,
            f"{_name(node)}: handshake time moved from {before} to {now} over {seconds} s",
        )


# -- roaming -------------------------------------------------------------------------------------


def _follows(stayer: WgNode, mover: WgNode, expected: str, deadline: float) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if stayer.peer_status(mover).endpoint == expected:
            return True
        time.sleep(0.1)
    return False


def _move(ctx: PairContext, mover: WgNode, new_host_byte: int) -> None:
    stayer = ctx.other(mover)
    mover_if = ctx.link.a_if if mover is ctx.a else ctx.link.b_if
    old_addr = ctx.underlay(mover)
    new_addr = old_addr.rsplit(".", 1)[0] + f".{new_host_byte}"
    # a secondary address in the same subnet, promoted when the first is deleted
    mover.host.sysctl(f"net.ipv4.conf.{mover_if}.promote_secondaries=1")
    mover.host.addr(mover_if, f"{new_addr}/24")
    stream = PacedStream(mover.host, stayer.host, stayer.addr4, port=5303 + new_host_byte,
                         rate=300_000, seconds=14, timeout=60)  # fmt: skip
    time.sleep(2)
    new_port = mover.port + 1
    mover.set(f"listen_port={new_port}\n")
    mover.port = new_port
    check(
        _follows(stayer, mover, f"{old_addr}:{new_port}", 5),
        f"{_name(stayer)} kept endpoint {stayer.peer_status(mover).endpoint} "
        f"after {_name(mover)} moved to port {new_port}",
    )
    current = mover.peer_status(stayer).endpoint  # where the mover reaches the stayer now
    mover.host.ip("-4", "addr", "del", f"{old_addr}/24", "dev", mover_if)
    # The mover's own system would tell it the network changed: setting the
    # endpoint again drops any cached source address (wireguard-go keeps
    # sending from a deleted one otherwise). The stayer is what is tested.
    mover.set(f"public_key={stayer.public_key.to_hex()}\nupdate_only=true\nendpoint={current}\n")
    check(
        _follows(stayer, mover, f"{new_addr}:{new_port}", 15),
        f"{_name(stayer)} kept endpoint {stayer.peer_status(mover).endpoint} "
        f"after {_name(mover)} moved to address {new_addr}",
    )
    result = stream.result(deadline=60)
    check(result.ok, f"the stream from {_name(mover)} did not arrive intact: {result}")
    ctx.note(f"max_stall_s_{mover.host.name}_moves", round(result.max_gap, 2))


@scenario("roaming", "roaming (new port, new address)", kind="pair", timeout=120)
def roaming(ctx: PairContext) -> None:
    """§2.1: a peer's endpoint is the source of its latest authenticated packet.
    While a paced TCP stream runs from the mover, it changes its listen port,
    then its underlay address (the old one deleted); the other side must
    follow both within seconds and the stream arrive intact. A moves first,
    then B."""
    ctx.connect()
    check(ctx.handshake(ctx.a, deadline=15) is not None, "no handshake")
    _move(ctx, ctx.a, 11)
    _move(ctx, ctx.b, 12)


# -- under load ----------------------------------------------------------------------------------


def _under_load(ctx: PairContext, victim: WgNode) -> None:
    initiator = ctx.other(victim)
    flooder = ctx.lab.host(f"m{victim.host.name}")
    link = ctx.lab.link(flooder, victim.host)
    # 32 source addresses: per-address handshake limits must not absorb the flood
    sources = add_flood_addresses(flooder, link, 32, first=10)
    ctx.connect(a_knows_b=initiator is ctx.a, b_knows_a=initiator is ctx.b)
    target = (link.b_addr4, victim.port)
    with HandshakeFlood(flooder, target, victim.public_key, sources, rate=RAMP_START) as flood:
        flood.ramp_until_under_load(deadline=15.0)
        took = ctx.handshake(initiator, deadline=30)
        time.sleep(0.5)
    tag = victim.host.name
    ctx.note(f"flood_pps_{tag}", round(flood.rate))
    ctx.note(f"cookie_replies_{tag}", flood.cookie_replies)
    check(
        flood.cookie_replies > 0,
        f"{_name(victim)} sent no cookie reply to {flood.sent:,} initiations "
        f"({flood.rate:,.0f}/s): it never went under load",
    )
    check(
        took is not None,
        f"{_name(initiator)} got no handshake within 30 s while {_name(victim)} was flooded",
    )
    ctx.note(f"handshake_s_{tag}", round(took or 0.0, 2))
    check(initiator.host.ping(victim.addr4, count=2, timeout=5), "no ping after the handshake")


@scenario("cookie-under-load", "cookie exchange under load", kind="pair", timeout=120)
def cookie_under_load(ctx: PairContext) -> None:
    """§5.3 and §5.4.7: while a third host floods one side with valid-mac1
    initiations from unknown keys, that side answers with cookie replies
    (counted at the flooder); the other side's initiation must still
    complete, by taking the cookie reply and sending mac2 on its retry.
    Each side is flooded in turn."""
    _under_load(ctx, ctx.b)
    _remove_peers(ctx)
    _under_load(ctx, ctx.a)


# -- MTU and padding -----------------------------------------------------------------------------


@scenario("mtu-padding", "MTU and padding", kind="pair", timeout=60)
def mtu_and_padding(ctx: PairContext) -> None:
    """Pings of many sizes with don't-fragment, up to the tunnel MTU (1420): each
    passes, one byte more is refused locally, and on the wire every transport
    message is 32 bytes plus the packet padded to a multiple of 16, capped at
    the MTU (§5.4.6), in both directions."""
    ctx.connect()
    check(ctx.handshake(ctx.a, deadline=15) is not None, "no handshake")
    sizes = [0, 1, 15, 16, 17, 100, 500, 1000, 1379, MTU - 28]
    with UdpCapture(ctx.b_host, ctx.link.b_if) as capture:
        start = time.monotonic()
        for size in sizes:
            got = ctx.a_host.run("ping", "-c", "1", "-W", "3", "-M", "do", "-s", str(size),
                                 ctx.b.addr4, check=False)  # fmt: skip
            check(got.returncode == 0, f"a {size + 28}-byte ping (DF) did not pass: {got.stdout}")
        too_big = ctx.a_host.run("ping", "-c", "1", "-W", "2", "-M", "do", "-s", str(MTU - 27),
                                 ctx.b.addr4, check=False)  # fmt: skip
        check(too_big.returncode != 0, "a packet one byte over the tunnel MTU passed with DF")
        time.sleep(0.5)
        for node in (ctx.a, ctx.b):
            seen = sorted(
                len(d.payload) - TRANSPORT_OVERHEAD
                for d in capture.datagrams(source=(ctx.underlay(node), node.port), since=start)
                if d.payload[:1] == b"\x04" and len(d.payload) > TRANSPORT_OVERHEAD
            )
            want = sorted(padded_length(size + 28, MTU) for size in sizes)
            check(
                seen == want,
                f"{_name(node)} sent padded lengths {seen}, expected {want}",
            )


# -- cryptokey routing ---------------------------------------------------------------------------


@scenario("allowed-ips-filter", "allowed-IPs source filtering", kind="pair", timeout=45)
def allowed_ips_filter(ctx: PairContext) -> None:
    """§2 (cryptokey routing): a packet that decrypts under a peer's session but
    whose inner source is not among that peer's allowed IPs is dropped. Each
    side sends three UDP datagrams from its allowed tunnel address (they
    arrive) and three from an extra address it owns but the other does not
    allow for it (none may arrive), over IPv4 and IPv6."""
    ctx.connect()
    check(ctx.handshake(ctx.a, deadline=15) is not None, "no handshake")
    for src in (ctx.a, ctx.b):
        dst = ctx.other(src)
        for family, allowed, spoofed, target in (
            (socket.AF_INET, src.addr4, "198.19.1.99", dst.addr4),
            (socket.AF_INET6, src.addr6, "fd19::1:99", dst.addr6),
        ):
            prefix = "/24" if family == socket.AF_INET else "/112"
            src.host.addr(src.ifname, spoofed + prefix)
            sink = dst.host.socket(family, socket.SOCK_DGRAM)
            sink.bind((target, 7778))
            sink.settimeout(0.5)
            try:
                received = {}
                for source in (allowed, spoofed):
                    sender = src.host.socket(family, socket.SOCK_DGRAM)
                    sender.bind((source, 0))
                    for _ in range(3):
                        sender.sendto(source.encode(), (target, 7778))
                    sender.close()
                    got = 0
                    while True:
                        try:
                            sink.recv(100)
                            got += 1
                        except TimeoutError:
                            break
                    received[source] = got
            finally:
                sink.close()
                src.host.ip("addr", "del", spoofed + prefix, "dev", src.ifname)
            check(received[allowed] == 3, f"{received[allowed]}/3 from {allowed} arrived")
            check(
                received[spoofed] == 0,
                f"{_name(dst)} delivered {received[spoofed]} packets whose inner source "
                f"{spoofed} is not in the allowed IPs of {_name(src)}",
            )


# -- throughput and latency ----------------------------------------------------------------------


@scenario("throughput", "TCP throughput and ping latency", kind="pair", timeout=120)
def throughput(ctx: PairContext) -> None:
    """20 MB of TCP each way (SHA-256 compared at both ends), then 10 pings: the
    per-pair figures of the report. Fails only if data is lost or corrupted."""
    ctx.connect()
    check(ctx.handshake(ctx.a, deadline=15) is not None, "no handshake")
    for label, src, dst in (("a_to_b", ctx.a, ctx.b), ("b_to_a", ctx.b, ctx.a)):
        result = tcp_transfer(src.host, dst.host, dst.addr4, 20 * MB, timeout=90)
        check(result.ok, f"the {label} transfer did not arrive intact: {result}")
        ctx.note(f"{label}_mbit", round(result.mbit_per_s, 1))
    out = ctx.a_host.run("ping", "-c", "10", "-i", "0.05", "-W", "2", ctx.b.addr4, check=False)
    check(out.returncode == 0, f"pings lost: {out.stdout[-200:]}")
    rtt = [float(part.split("=")[1]) for part in out.stdout.split() if part.startswith("time=")]
    if rtt:
        ctx.note("ping_ms", round(statistics.median(rtt), 3))
