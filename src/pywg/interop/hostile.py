"""Hostile scenarios: pywg's adversarial peer against one implementation.

Each scenario gets a :class:`pywg.interop.context.HostileContext`: the
implementation under test (the *target*) in its own lab host, already
holding the adversary's public key as a peer, and the adversary's host on
one link to it. The adversary (:mod:`pywg.interop.adversary`) runs in this
process with a UDP socket in its host. Each scenario sends something an
honest peer never would and checks the target rejects it *without harm*:
no answer where none is due (nothing within :data:`QUIET` seconds), no
change in what the target reports for the adversary (handshake time, bytes
received), and the legitimate session still carries an echo round trip
afterwards. Where a refusal could have another cause (the 50/s initiation
limit, a broken message), a positive control shows the same message minus
the defect is accepted.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..constants import (
    COOKIE_SIZE,
    INITIATION_MAC1_OFFSET,
    INITIATION_MAC2_OFFSET,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION,
    MESSAGE_RESPONSE,
    REJECT_AFTER_MESSAGES,
    REPLAY_WINDOW_SIZE,
    RESPONSE_MAC1_OFFSET,
    TRANSPORT_HEADER_SIZE,
)
from ..exceptions import RemoteProtocolError
from ..handshake import consume_initiation, create_response
from ..keys import PrivateKey
from ..messages import (
    padded_length,
    parse_cookie_reply,
    parse_initiation,
)
from ..status import PeerStatus
from .adversary import (
    LOW_ORDER_POINTS,
    Adversary,
    CraftedInitiation,
    EchoReply,
    Received,
    SentEcho,
    Session,
    UdpTransport,
    cookie_reply,
    forged_response,
    mac1,
    mac2,
    open_cookie_reply,
    tai64n_add,
    with_macs,
)
from .context import HostileContext
from .flood import RAMP_START, Flooder, add_flood_addresses, flood_initiations, flood_sockets
from .packets import IPV4_ECHO_OVERHEAD, IPV6_ECHO_OVERHEAD
from .scenario import Skipped, check, scenario

QUIET = 1.2  # seconds without an answer that count as "no answer"
LAB_MTU = 1420  # pywg.lab.wireguard.start_node brings every target's TUN up with this MTU
SPACING = 0.1  # between accepted initiations: implementations take at most 50/s per peer (20 ms)


# ---------------------------------------------------------------------- helpers


def _adversary(ctx: HostileContext) -> Adversary:
    """The adversary with a UDP socket in its host, talking to the target over IPv4."""
    sock = ctx.attacker.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((ctx.link.a_addr4, 0))
    except OSError:
        sock.close()
        raise
    return Adversary(
        UdpTransport(sock, ctx.target_endpoint),
        ctx.key,
        ctx.target.public_key,
        tunnel4=ctx.tunnel4,
        tunnel6=ctx.tunnel6,
        target4=ctx.target.addr4,
        target6=ctx.target.addr6,
        mtu=LAB_MTU,
    )


def _local_port(adv: Adversary) -> int:
    assert isinstance(adv.transport, UdpTransport)
    port: int = adv.transport.sock.getsockname()[1]
    return port


def _name(ctx: HostileContext) -> str:
    return ctx.target.impl.name


def _me(ctx: HostileContext) -> PeerStatus:
    """What the target reports about the adversary (its peer entry)."""
    mine = str(ctx.key.public_key)
    for peer in ctx.target.status().peers:
        if peer.public_key == mine:
            return peer
    raise AssertionError(f"{_name(ctx)} no longer lists the adversary as a peer")


def _unchanged(ctx: HostileContext, before: PeerStatus, what: str) -> None:
    """The target's view of the adversary did not move: no handshake, no bytes received."""
    after = _me(ctx)
    name = _name(ctx)
    check(
        after.last_handshake == before.last_handshake,
        f"{name}'s last handshake with the adversary changed after {what} "
        f"({before.last_handshake} -> {after.last_handshake})",
    )
    check(
        after.rx_bytes == before.rx_bytes,
        f"{name} counted {after.rx_bytes - before.rx_bytes} bytes as received from the "
        f"adversary after {what} (it must drop them unauthenticated)",
    )
    check(
        after.endpoint == before.endpoint,
        f"{name} moved the adversary's endpoint after {what} "
        f"({before.endpoint} -> {after.endpoint})",
    )


def _describe(received: Iterable[Received]) -> str:
    names = {1: "initiation", 2: "response", 3: "cookie reply", 4: "transport message"}
    parts = [f"a {names.get(r.type, 'junk datagram')} ({len(r.data)} bytes)" for r in received]
    return ", ".join(parts) or "nothing"


def _handshake_answers(received: Iterable[Received]) -> list[Received]:
    """Responses and cookie replies: what a refused handshake message must never get."""
    return [r for r in received if r.type in (MESSAGE_RESPONSE, MESSAGE_COOKIE_REPLY)]


def _alive(ctx: HostileContext, adv: Adversary, session: Session, when: str) -> EchoReply:
    """An echo round trip through `session` (two tries), or fail saying `when`."""
    for _ in range(2):
        reply = adv.echo(session)
        if reply is not None:
            return reply
    raise AssertionError(
        f"{_name(ctx)}: no echo reply through the adversary's session {session.label} {when}"
    )


def _expect_response(
    ctx: HostileContext, adv: Adversary, crafted: CraftedInitiation, what: str
) -> Received:
    got = adv.await_answer(crafted, 3.0)
    check(
        got is not None and got.type == MESSAGE_RESPONSE,
        f"{_name(ctx)} did not answer {what} with a response "
        f"(got {_describe([got] if got else [])}); the control for this scenario failed",
    )
    assert got is not None
    return got


def _refused_initiations(
    ctx: HostileContext, adv: Adversary, messages: Sequence[tuple[str, bytes]]
) -> None:
    """Send each (label, initiation) 60 ms apart; none may get a response or cookie reply.

    The spacing keeps the per-peer limit of 50 initiations/s (20 ms) from
    hiding a wrongly accepted probe behind the refusal of the next one.
    """
    adv.drain()
    for _, message in messages:
        adv.send(message)
        adv.sleep(0.06)
    answers = _handshake_answers(adv.collect(QUIET))
    labels = ", ".join(label for label, _ in messages)
    check(not answers, f"{_name(ctx)} answered {labels} with {_describe(answers)}")


def _no_echo(ctx: HostileContext, adv: Adversary, sent: Sequence[tuple[str, SentEcho]]) -> None:
    """None of the echo requests in `sent` (already sent) gets a reply within QUIET."""
    got = adv.collect(QUIET)
    for label, probe in sent:
        replies = adv.echo_replies_to(probe, got)
        check(replies == 0, f"{_name(ctx)} accepted {label}: {replies} echo reply(s) came back")
    answers = _handshake_answers(got)
    check(not answers, f"{_name(ctx)} sent {_describe(answers)} in answer to transport messages")


# ---------------------------------------------------------------------- initiations


@scenario("replayed-initiation", "replayed initiation is ignored", kind="hostile", timeout=60)
def replayed_initiation(ctx: HostileContext) -> None:
    """Whitepaper §5.1 and §5.4.2: a responder keeps the greatest TAI64N
    timestamp it accepted per peer and drops initiations that do not carry a
    greater one. The adversary completes a handshake, then resends the exact
    initiation datagram (twice, 100 ms and 1.3 s later). Expected: no
    response or cookie reply, the target's handshake time, bytes received
    and endpoint unchanged, and the session still carries an echo round trip
    (its reply under the same session)."""
    name = _name(ctx)
    with _adversary(ctx) as adv:
        first, session = adv.handshake(label="S1")
        _alive(ctx, adv, session, "after the handshake")
        before = _me(ctx)
        for _ in range(2):
            adv.sleep(SPACING)
            _refused_initiations(ctx, adv, [("the replayed initiation", first.message)])
        _unchanged(ctx, before, "a replayed initiation")
        reply = _alive(ctx, adv, session, "after the replays")
        check(
            reply.session is session,
            f"{name} answered through another session after a replayed initiation",
        )


@scenario("stale-timestamp", "initiation with an older timestamp is ignored", kind="hostile")
def stale_timestamp(ctx: HostileContext) -> None:
    """Whitepaper §5.1, §5.4.2: after a handshake with timestamp T, fresh and
    otherwise valid initiations (new ephemeral key, new sender index, valid
    mac1) carrying T − 1 s and T − 1 ns must be dropped: no response, no
    state change. Control: one carrying T + 1 ns is answered, and the session
    it makes carries an echo round trip."""
    with _adversary(ctx) as adv:
        first, session = adv.handshake(label="S1")
        _alive(ctx, adv, session, "after the handshake")
        before = _me(ctx)
        stamp = first.timestamp
        adv.sleep(SPACING)
        probes = [
            ("an initiation 1 s older than the last", adv.initiation(tai64n_add(stamp, -(10**9)))),
            ("an initiation 1 ns older than the last", adv.initiation(tai64n_add(stamp, -1))),
        ]
        _refused_initiations(ctx, adv, [(label, c.message) for label, c in probes])
        _unchanged(ctx, before, "initiations with stale timestamps")
        _alive(ctx, adv, session, "after the stale initiations")
        adv.sleep(SPACING)
        control = adv.initiation(tai64n_add(stamp, 1))
        adv.send(control.message)
        got = _expect_response(ctx, adv, control, "an initiation 1 ns newer than the last")
        fresh = adv.complete(control, got.data, label="S2")
        _alive(ctx, adv, fresh, "after the control handshake")


@scenario("equal-timestamp", "initiation with an equal timestamp is ignored", kind="hostile")
def equal_timestamp(ctx: HostileContext) -> None:
    """Whitepaper §5.1, §5.4.2: the timestamp must be strictly greater than
    the last accepted one. After a handshake with timestamp T, a fresh valid
    initiation (new ephemeral key, new sender index) carrying exactly T must
    get no response and change nothing. Control: T + 1 ns is answered."""
    with _adversary(ctx) as adv:
        first, session = adv.handshake(label="S1")
        _alive(ctx, adv, session, "after the handshake")
        before = _me(ctx)
        adv.sleep(SPACING)
        probe = adv.initiation(first.timestamp)
        assert probe.message[8:40] != first.message[8:40]  # a new ephemeral key
        _refused_initiations(ctx, adv, [("an initiation with an equal timestamp", probe.message)])
        _unchanged(ctx, before, "an initiation with an equal timestamp")
        _alive(ctx, adv, session, "after the equal-timestamp initiation")
        adv.sleep(SPACING)
        control = adv.initiation(tai64n_add(first.timestamp, 1))
        adv.send(control.message)
        got = _expect_response(ctx, adv, control, "an initiation 1 ns newer than the last")
        _alive(ctx, adv, adv.complete(control, got.data, label="S2"), "after the control")


@scenario("wrong-mac1", "initiation with a bad mac1 is ignored", kind="hostile")
def wrong_mac1(ctx: HostileContext) -> None:
    """Whitepaper §5.3, §5.4.4: a message whose mac1 is not
    MAC(HASH(LABEL_MAC1 ‖ Spub_r), msg[0:116]) is dropped before any other
    work: no response and no cookie reply. The adversary sends a fresh valid
    initiation three times with one mac1 bit flipped (first bit, a middle
    bit, last bit). Control: the unmodified message is then answered (so it
    was refused for its mac1 alone, and its timestamp was not consumed)."""
    with _adversary(ctx) as adv:
        _, session = adv.handshake(label="S1")
        _alive(ctx, adv, session, "after the handshake")
        before = _me(ctx)
        adv.sleep(SPACING)
        probe = adv.initiation()
        flipped = []
        for bit in (0, 61, 127):
            message = bytearray(probe.message)
            message[INITIATION_MAC1_OFFSET + bit // 8] ^= 1 << (bit % 8)
            flipped.append((f"an initiation with mac1 bit {bit} flipped", bytes(message)))
        _refused_initiations(ctx, adv, flipped)
        _unchanged(ctx, before, "initiations with a bad mac1")
        adv.send(probe.message)
        got = _expect_response(ctx, adv, probe, "the same initiation with its correct mac1")
        _alive(ctx, adv, adv.complete(probe, got.data, label="S2"), "after the control")


FLOOD_SOURCES = 32
FLOOD_POOL = 256
FLOOD_RCVBUF = 4096  # the flood's cookie replies are not wanted: dropped


def _take_cookie(ctx: HostileContext, got: Received, sent: dict[int, CraftedInitiation]) -> bytes:
    """The cookie in a cookie reply to one of `sent` (§5.4.7), or fail saying what is wrong."""
    name = _name(ctx)
    check(len(got.data) == 64, f"{name} sent a cookie reply of {len(got.data)} bytes, not 64")
    index = parse_cookie_reply(got.data).receiver
    answered = sent.get(index)
    check(
        answered is not None,
        f"{name} sent a cookie reply to index {index:#010x}, which the adversary never used",
    )
    assert answered is not None
    try:
        cookie = open_cookie_reply(got.data, bytes(ctx.target.public_key), answered.mac1)
    except RemoteProtocolError as exc:
        raise AssertionError(
            f"{name}'s cookie reply does not decrypt with the mac1 it answers: {exc}"
        ) from None
    check(len(cookie) == COOKIE_SIZE, f"{name}'s cookie is {len(cookie)} bytes, not 16")
    return cookie


def _cookie_while_flooded(
    ctx: HostileContext,
    adv: Adversary,
    flood: Flooder,
    sent: dict[int, CraftedInitiation],
    sources: str,
) -> bytes:
    """Send initiations without mac2 until one gets a cookie reply (30 s at most): its cookie.

    A response instead is allowed (the target is not yet under load): the
    next initiation goes out. Every initiation sent is added to `sent`.
    """
    start = adv.clock()
    cookie: bytes | None = None
    responses = 0
    while cookie is None and adv.clock() - start < 30.0:
        crafted = adv.initiation()
        sent[crafted.sender_index] = crafted
        adv.send(crafted.message)
        got = adv.wait_for(lambda r: r.type in (MESSAGE_RESPONSE, MESSAGE_COOKIE_REPLY), 0.5)
        if got is not None and got.type == MESSAGE_COOKIE_REPLY:
            cookie = _take_cookie(ctx, got, sent)
            break
        if got is not None:
            responses += 1  # not (yet) under load: allowed, try again
        flood.faster()  # a flood just past the load threshold (RAMP_START)
    rate = flood.stats().rate
    ctx.note("flood_pps", round(rate))
    ctx.note("responses_before_cookie", responses)
    check(
        cookie is not None,
        f"{_name(ctx)} sent no cookie reply to {len(sent)} initiations without mac2 in 30 s "
        f"while flooded with {rate:,.0f} valid-mac1 initiations/s from "
        f"{sources} ({responses} were answered with responses): "
        "it never went under load",
    )
    assert cookie is not None
    ctx.note("cookie_after_s", round(adv.clock() - start, 2))
    return cookie


def _handshake_with_cookie(
    ctx: HostileContext, adv: Adversary, cookie: bytes, sent: dict[int, CraftedInitiation]
) -> Session | None:
    """Initiations with mac2 = MAC(cookie, msg[0:132]), one a second for 30 s: the session."""
    got_cookie = adv.clock()
    for _ in range(30):  # one try a second: a mac2 retry is rate limited, not refused
        crafted = adv.initiation(cookie=cookie)
        sent[crafted.sender_index] = crafted
        adv.send(crafted.message)
        got = adv.await_answer(crafted, 1.0)
        if got is not None and got.type == MESSAGE_RESPONSE:
            return adv.complete(crafted, got.data, label="S1")
        if got is not None:  # another cookie reply (a new secret): take it
            cookie = _take_cookie(ctx, got, sent)
        if adv.clock() - got_cookie > 30.0:
            break
    return None


def _cookie_exchange_under_flood(
    ctx: HostileContext, flood_from: Callable[[], Sequence[str]], sources: str
) -> None:
    """The body of the two under-load scenarios: flood from the addresses `flood_from()`
    gives (described as `sources`), get a cookie reply, handshake with its mac2."""
    with _adversary(ctx) as adv:
        # baseline: not under load, an initiation without mac2 is answered
        _, baseline = adv.handshake(label="S0")
        _alive(ctx, adv, baseline, "before the flood")
        pool = flood_initiations(bytes(ctx.target.public_key), FLOOD_POOL)
        socks = flood_sockets(ctx.attacker, flood_from(), receive_buffer=FLOOD_RCVBUF)
        with Flooder(socks, ctx.target_endpoint, pool, max_seconds=60.0, rate=RAMP_START) as flood:
            adv.sleep(0.5)  # let the flood build up
            start = adv.clock()
            sent: dict[int, CraftedInitiation] = {}
            cookie = _cookie_while_flooded(ctx, adv, flood, sent, sources)
            session = _handshake_with_cookie(ctx, adv, cookie, sent)
            stats = flood.stop()
        ctx.note("flood_pps", round(stats.rate))
        check(
            session is not None,
            f"{_name(ctx)} did not answer initiations carrying a valid mac2 within 30 s "
            f"under a flood of {stats.rate:,.0f}/s",
        )
        assert session is not None
        ctx.note("handshake_after_s", round(adv.clock() - start, 2))
        _alive(ctx, adv, session, "after the handshake made with the cookie")


def _under_flood(name: str, title: str) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Register an under-load scenario: hostile, 90 s (the flood stops itself after 60)."""
    return scenario(name, title, kind="hostile", timeout=90)


@_under_flood("missing-mac2-under-load", "under load, a cookie reply instead of a response")
def missing_mac2_under_load(ctx: HostileContext) -> None:
    """Whitepaper §5.3, §5.4.4, §5.4.7: under load a responder answers an
    initiation without a valid mac2 with a 64-byte cookie reply, not a
    response. The attacker host floods the target with valid-mac1
    initiations from 256 random static keys the target does not know, sent
    from 32 further underlay addresses (a flood from many hosts; a flood
    from the adversary's own address would test per-address rate limiting
    instead), while the adversary sends initiations without mac2 from its
    own address. Expected: a cookie reply arrives (within 30 s; if none does
    the target was never under load and the scenario fails); it decrypts
    with XChaCha20-Poly1305 under HASH(LABEL_COOKIE ‖ Spub_target) with the
    mac1 sent as associated data; an initiation carrying mac2 =
    MAC(cookie, msg[0:132]) is then answered with a response, and the
    session carries an echo round trip once the flood stops. Notes the
    flood rate and the times to the cookie and to the handshake."""
    _cookie_exchange_under_flood(
        ctx,
        lambda: add_flood_addresses(ctx.attacker, ctx.link, FLOOD_SOURCES, first=100),
        f"{FLOOD_SOURCES} addresses",
    )


@_under_flood("spoofed-source-flood", "a flood from the peer's own address does not lock it out")
def spoofed_source_flood(ctx: HostileContext) -> None:
    """Whitepaper §5.3: under load, per-source limits may only apply once mac2
    proves the source (Linux rate-limits only messages with a valid cookie).
    As missing-mac2-under-load, but the flood comes from the adversary's own
    address (another port), as an attacker spoofing a peer's address would
    send it. Expected: the adversary still gets a cookie reply within 30 s,
    and its initiation with mac2 is answered with a response; a responder
    that limited handshakes per address before checking mac2 would starve it."""
    _cookie_exchange_under_flood(ctx, lambda: [ctx.link.a_addr4], "the adversary's own address")


# ---------------------------------------------------------------------- transport


@scenario("replayed-transport", "replayed transport message is ignored", kind="hostile")
def replayed_transport(ctx: HostileContext) -> None:
    """Whitepaper §5.4.6 (and RFC 6479): a transport counter is accepted at
    most once. The adversary sends an echo request, gets its reply, then
    resends the identical datagram: no second echo reply may come and the
    target's bytes received must not grow. A new counter still works, after
    which the old datagram is replayed once more (now further behind the
    window's head) and again refused."""
    with _adversary(ctx) as adv:
        _, session = adv.handshake(label="S1")
        first = adv.send_echo(session)
        check(adv.await_echo(first) is not None, f"{_name(ctx)} did not answer the first echo")
        replays = [
            ("a replayed transport message", "a replayed transport message", "the replay"),
            ("a transport message replayed a second time", "a second replay", "the second replay"),
        ]
        for label, what, after in replays:
            before = _me(ctx)
            adv.drain()
            adv.send(first.datagram)
            _no_echo(ctx, adv, [(label, first)])
            _unchanged(ctx, before, what)
            _alive(ctx, adv, session, f"after {after}")


@scenario("window-edge", "replay window: inside accepted, beyond refused", kind="hostile")
def window_edge(ctx: HostileContext) -> None:
    """Whitepaper §5.4.6 and RFC 6479: counters may arrive out of order
    within a sliding window behind the greatest one accepted; older ones are
    refused. Linux, wireguard-go and pywg keep an 8192-bit ring of which
    8128 counters (REPLAY_WINDOW_SIZE) are the window: with greatest G,
    G − 8128 is accepted and G − 8129 refused. The adversary jumps to
    G = 20037 (a gap is allowed), then sends G − 100 and G − 4000 (inside,
    unseen: accepted), G − 8129, G − 8192, G − 20000 (outside: no reply),
    G − 8128 (edge: accepted) and G − 100 again (seen: refused). It then
    moves the head by only 100 (G2 = G + 100, the ring's partial-clear path)
    and checks G2 − 8129 refused, G2 − 8128 accepted and G − 100 still
    refused. Each accepted one is an echo round trip; each refused one gets
    no reply within the quiet time. The session works at the end."""
    name = _name(ctx)
    w = REPLAY_WINDOW_SIZE
    with _adversary(ctx) as adv:
        _, session = adv.handshake(label="S1")
        _alive(ctx, adv, session, "after the handshake")

        def accepted(counter: int, label: str) -> None:
            reply = adv.echo(session, counter=counter)
            check(reply is not None, f"{name} refused counter {counter} ({label})")

        def refused(probes: Sequence[tuple[int, str]]) -> None:
            adv.drain()
            sent = [
                (f"counter {c} ({what})", adv.send_echo(session, counter=c)) for c, what in probes
            ]
            _no_echo(ctx, adv, sent)

        g = 20037
        accepted(g, "far ahead of the greatest")
        accepted(g - 100, "inside the window, unseen")
        accepted(g - 4000, "inside the window, unseen")
        refused(
            [
                (g - w - 1, "one beyond the window"),
                (g - 8192, "a whole ring behind"),
                (g - 20000, "far behind"),
            ]
        )
        accepted(g - w, "the window's last counter")
        refused([(g - 100, "inside the window, seen before")])
        g2 = g + 100
        accepted(g2, "the head moved by 100")
        refused([(g2 - w - 1, "one beyond the moved window"), (g - 100, "seen, still inside")])
        accepted(g2 - w, "the moved window's last counter")
        ctx.note("window_edge", f"G-{w} accepted, G-{w + 1} refused")
        _alive(ctx, adv, session, "at the end")


@scenario("reject-after-messages", "counters from REJECT_AFTER_MESSAGES refused", kind="hostile")
def reject_after_messages(ctx: HostileContext) -> None:
    """Whitepaper §6.1/§6.2: a session carries at most REJECT_AFTER_MESSAGES
    = 2^64 − 2^13 − 1 messages; a receiver refuses counters at or above it.
    The adversary sends echo requests with counters R, R + 1 and 2^64 − 1
    (no reply), then a small counter (accepted: the refused ones did not move
    the window), then R − 1 (accepted, the last usable counter), R again (no
    reply) and R − 2 (accepted: inside the window behind R − 1)."""
    name = _name(ctx)
    r = REJECT_AFTER_MESSAGES
    with _adversary(ctx) as adv:
        _, session = adv.handshake(label="S1")
        _alive(ctx, adv, session, "after the handshake")
        before = _me(ctx)
        adv.drain()
        probes = [("counter R", r), ("counter R + 1", r + 1), ("counter 2^64 - 1", (1 << 64) - 1)]
        _no_echo(ctx, adv, [(label, adv.send_echo(session, counter=c)) for label, c in probes])
        _unchanged(ctx, before, "counters at and beyond REJECT_AFTER_MESSAGES")
        reply = adv.echo(session, counter=10)
        check(
            reply is not None,
            f"{name} refused counter 10 after refusing counters >= R: they moved its window",
        )
        reply = adv.echo(session, counter=r - 1)
        check(reply is not None, f"{name} refused counter R - 1 = {r - 1}, the last usable one")
        adv.drain()
        _no_echo(ctx, adv, [("counter R after R - 1", adv.send_echo(session, counter=r))])
        reply = adv.echo(session, counter=r - 2)
        check(reply is not None, f"{name} refused counter R - 2 after R - 1 (inside the window)")


def _next_initiation(
    ctx: HostileContext, adv: Adversary, seen: set[int], timeout: float
) -> tuple[Received, int]:
    """The target's next initiation with a sender index not in `seen` (then added to it)."""
    name = _name(ctx)

    def is_new(r: Received) -> bool:
        return (
            r.type == MESSAGE_INITIATION
            and len(r.data) == 148
            and parse_initiation(r.data).sender not in seen
        )

    got = adv.wait_for(is_new, timeout)
    check(got is not None, f"{name} sent no (new) initiation within {timeout:g} s")
    assert got is not None
    check(
        got.data[INITIATION_MAC1_OFFSET:INITIATION_MAC2_OFFSET]
        == mac1(got.data, adv.static.public, INITIATION_MAC1_OFFSET),
        f"{name}'s initiation has a wrong mac1",
    )
    index = parse_initiation(got.data).sender
    seen.add(index)
    return got, index


def _ignores_malformed_answers(ctx: HostileContext, adv: Adversary, initiation: Received) -> None:
    """Answer the target's `initiation` with a cookie reply and a response, each one byte
    short and one byte long: nothing may come back but initiations, no handshake complete."""
    name = _name(ctx)
    target_public = bytes(ctx.target.public_key)
    consumed = consume_initiation(adv.static, parse_initiation(initiation.data))
    check(consumed.remote_static == target_public, f"{name}'s initiation names another key")
    response, _, _ = create_response(consumed, adv.new_index(), None)
    response = with_macs(response, target_public, RESPONSE_MAC1_OFFSET)
    reply = cookie_reply(
        consumed.sender_index,
        adv.rng(COOKIE_SIZE),
        initiation.data[INITIATION_MAC1_OFFSET:INITIATION_MAC2_OFFSET],
        adv.static.public,
        adv.rng,
    )
    adv.drain()
    for message in (reply[:-1], reply + b"\0", response[:-1], response + b"\0"):
        adv.send(message)
    got = adv.collect(QUIET)
    answers = [r for r in got if r.type != MESSAGE_INITIATION]
    check(
        not answers,
        f"{name} answered cookie replies and responses one byte short or long with "
        f"{_describe(answers)}",
    )
    adv.inbox.extend(r for r in got if r.type == MESSAGE_INITIATION)
    check(
        _me(ctx).last_handshake is None,
        f"{name} completed a handshake from a response one byte short or long",
    )


def _retry_takes_cookie(
    ctx: HostileContext, adv: Adversary, seen: set[int]
) -> tuple[Received, int]:
    """The target's retry carries no mac2 (it took no cookie from the malformed replies);
    after a well-formed cookie reply its next one carries mac2 (control). That next one."""
    name = _name(ctx)
    retry, index = _next_initiation(ctx, adv, seen, 9.0)  # REKEY_TIMEOUT + jitter after the first
    check(
        retry.data[INITIATION_MAC2_OFFSET:] == bytes(16),
        f"{name}'s retry carries a mac2: it took the cookie from a cookie reply "
        "one byte short or long",
    )
    good_cookie = adv.rng(COOKIE_SIZE)
    answered_mac1 = retry.data[INITIATION_MAC1_OFFSET:INITIATION_MAC2_OFFSET]
    adv.send(cookie_reply(index, good_cookie, answered_mac1, adv.static.public, adv.rng))
    with_cookie, index = _next_initiation(ctx, adv, seen, 9.0)
    check(
        with_cookie.data[INITIATION_MAC2_OFFSET:]
        == mac2(with_cookie.data, good_cookie, INITIATION_MAC2_OFFSET),
        f"{name}'s retry after a well-formed cookie reply does not carry "
        "mac2 = MAC(cookie, msg[0:132]) (control)",
    )
    return with_cookie, index


def _respond(ctx: HostileContext, adv: Adversary, initiation: Received, index: int) -> Session:
    """Complete the target's handshake with a well-formed response (control): the session."""
    name = _name(ctx)
    consumed = consume_initiation(adv.static, parse_initiation(initiation.data))
    ours = adv.new_index()
    response, send, receive = create_response(consumed, ours, None)
    assert send.k is not None and receive.k is not None
    session = Session(send.k, receive.k, ours, index, initiator=False, label="R")
    adv.sessions[ours] = session
    adv.send(with_macs(response, bytes(ctx.target.public_key), RESPONSE_MAC1_OFFSET))
    keepalive = adv.wait_for(lambda r: adv.open_any(r.data) is not None, 5.0)
    check(
        keepalive is not None,
        f"{name} sent nothing through the session of a well-formed response (control)",
    )
    ctx.target.set(f"public_key={ctx.key.public_key.to_hex()}\npersistent_keepalive_interval=0\n")
    _alive(ctx, adv, session, "after the target's own handshake")
    check(_me(ctx).last_handshake is not None, f"{name} reports no handshake (control)")
    return session


def _ignores_malformed_messages(ctx: HostileContext, adv: Adversary, session: Session) -> None:
    """A fresh initiation and a sealed echo request one byte short and long, and transport
    messages shorter than header and tag: no answer; then the exact ones are (controls)."""
    name = _name(ctx)
    before = _me(ctx)
    probe = adv.initiation()
    probe_echo = adv.make_echo(session)
    malformed = [
        probe.message[:-1],
        probe.message + b"\0",
        probe_echo.datagram[:-1],
        probe_echo.datagram + b"\0",
        probe_echo.datagram[:TRANSPORT_HEADER_SIZE],  # no tag at all
        probe_echo.datagram[: TRANSPORT_HEADER_SIZE + 15],  # one byte short of a tag
    ]
    adv.drain()
    for message in malformed:
        adv.send(message)
    got = adv.collect(QUIET)
    answers = _handshake_answers(got)
    check(
        not answers and adv.echo_replies_to(probe_echo, got) == 0,
        f"{name} answered initiations or transport messages one byte short or long, or "
        f"shorter than header and tag, with {_describe(got)}",
    )
    _unchanged(ctx, before, "messages one byte short or long")
    adv.send(probe_echo.datagram)
    check(
        adv.await_echo(probe_echo) is not None,
        f"{name} refused the well-formed echo request with counter {probe_echo.counter} "
        "after its malformed copies (they must not mark the replay window)",
    )
    adv.sleep(SPACING)
    adv.send(probe.message)
    got_response = _expect_response(ctx, adv, probe, "the well-formed initiation")
    _alive(ctx, adv, adv.complete(probe, got_response.data, label="S"), "at the end")


@scenario("truncated-oversized", "messages one byte short or long are ignored", kind="hostile")
def truncated_oversized(ctx: HostileContext) -> None:
    """Whitepaper §5.4.2–§5.4.7: every message type has a fixed size
    (initiation 148, response 92, cookie reply 64) or a minimum (transport:
    16-byte header + 16-byte tag). Each type is sent one byte short and one
    byte long, otherwise valid, where it would otherwise be accepted:
    (1) the target is made to initiate (our endpoint and a persistent
    keepalive are set, §6.5); to its initiation the adversary sends a cookie
    reply and a response, each truncated and extended: nothing may come back,
    no handshake may complete, and its retry (§6.4) must carry no mac2 (it
    took no cookie). Controls: a well-formed cookie reply makes the next
    retry carry mac2 = MAC(cookie, ...), and a well-formed response completes
    the handshake (the target's keepalive arrives). (2) On that session, a
    fresh initiation and a sealed echo request are sent truncated and
    extended, plus transport messages of 16 and 31 bytes: no answer, bytes
    received unchanged. Controls: the exact echo datagram is then answered
    (the forged copies did not burn its counter) and the exact initiation
    gets a response."""
    with _adversary(ctx) as adv:
        # (1) the target initiates: our endpoint and a persistent keepalive (§6.5)
        ctx.target.set(
            f"public_key={ctx.key.public_key.to_hex()}\n"
            f"endpoint={ctx.link.a_addr4}:{_local_port(adv)}\npersistent_keepalive_interval=25\n"
        )
        seen: set[int] = set()
        first, _ = _next_initiation(ctx, adv, seen, 10.0)
        _ignores_malformed_answers(ctx, adv, first)
        initiation, index = _retry_takes_cookie(ctx, adv, seen)
        session = _respond(ctx, adv, initiation, index)
        # (2) initiation and transport messages one byte short or long
        _ignores_malformed_messages(ctx, adv, session)


@scenario("unknown-receiver-index", "messages to unknown indices are ignored", kind="hostile")
def unknown_receiver_index(ctx: HostileContext) -> None:
    """Whitepaper §5.4.3, §5.4.6, §5.4.7: responses, cookie replies and
    transport messages name the receiver's index, and one naming an index
    the receiver did not issue (or one of another kind) is dropped. The
    adversary sends (a) an echo request and a keepalive sealed under its
    live session but addressed to a random index (the AEAD does not cover
    the header, so a target that tried its keys regardless would open
    them), (b) responses with a valid mac1 to a random index and to the
    target's session index (not a handshake's), (c) cookie replies to the
    same two indices. Expected: no answer, bytes received and handshake time
    unchanged, and the session (its next counter) still carries an echo."""
    name = _name(ctx)
    target_public = bytes(ctx.target.public_key)
    with _adversary(ctx) as adv:
        _, session = adv.handshake(label="S1")
        _alive(ctx, adv, session, "after the handshake")
        before = _me(ctx)
        unknown = session.remote_index
        while unknown == session.remote_index:
            unknown = int.from_bytes(adv.rng(4), "little")

        def readdressed(datagram: bytes) -> bytes:
            return datagram[:4] + unknown.to_bytes(4, "little") + datagram[8:]

        probe_echo = adv.make_echo(session)
        keepalive = session.keepalive()
        some_mac1 = adv.rng(16)
        messages = [
            readdressed(probe_echo.datagram),
            readdressed(keepalive),
            forged_response(adv.new_index(), unknown, target_public, adv.rng),
            forged_response(adv.new_index(), session.remote_index, target_public, adv.rng),
            cookie_reply(unknown, adv.rng(16), some_mac1, adv.static.public, adv.rng),
            cookie_reply(session.remote_index, adv.rng(16), some_mac1, adv.static.public, adv.rng),
        ]
        adv.drain()
        for message in messages:
            adv.send(message)
        got = adv.collect(QUIET)
        check(
            not _handshake_answers(got) and adv.echo_replies_to(probe_echo, got) == 0,
            f"{name} answered messages to unknown receiver indices with {_describe(got)}",
        )
        _unchanged(ctx, before, "messages to unknown receiver indices")
        reply = _alive(ctx, adv, session, "after messages to unknown indices")
        check(reply.session is session, f"{name} answered through another session")


@scenario("zero-ephemeral", "low-order ephemeral keys are refused", kind="hostile")
def zero_ephemeral(ctx: HostileContext) -> None:
    """Whitepaper §5.4 (DH) and §5.4.2: an X25519 result of all zeros must be
    rejected. The adversary builds initiations step by step (§5.4.2) with an
    all-zero ephemeral public key (and the other small-order points and
    their non-canonical encodings), using the all-zero value as es, so a
    responder that skipped the check would decrypt and accept them (mac1
    valid, static and timestamp authentic). First the same crafting with an
    honest ephemeral key must be answered and its session carry an echo;
    then each low-order one, 60 ms apart and with increasing timestamps,
    must get no response or cookie reply and change nothing. Control at the
    end: an honest initiation is answered again."""
    with _adversary(ctx) as adv:
        honest = adv.initiation()
        assert not honest.low_order  # a real ephemeral key, es = DH(Epriv_i, Spub_r)
        adv.send(honest.message)
        got = _expect_response(ctx, adv, honest, "an honestly crafted initiation")
        session = adv.complete(honest, got.data, label="S1")
        _alive(ctx, adv, session, "through the honestly crafted session")
        before = _me(ctx)
        adv.sleep(SPACING)
        probes = [
            (f"an initiation with low-order ephemeral {point.hex()[:8]}...", point)
            for point in LOW_ORDER_POINTS
        ]
        crafted = [(label, adv.initiation(low_order_point=point)) for label, point in probes]
        assert all(c.low_order for _, c in crafted) and crafted[0][1].message[8:40] == bytes(32)
        _refused_initiations(ctx, adv, [(label, c.message) for label, c in crafted])
        _unchanged(ctx, before, "initiations with low-order ephemeral keys")
        _alive(ctx, adv, session, "after the low-order initiations")
        adv.sleep(SPACING)
        control = adv.initiation()
        adv.send(control.message)
        got = _expect_response(ctx, adv, control, "an honest initiation after the probes")
        _alive(ctx, adv, adv.complete(control, got.data, label="S2"), "at the end")


@scenario("expired-session", "data on a rotated-out session is ignored", kind="hostile")
def expired_session(ctx: HostileContext) -> None:
    """Whitepaper §6.1, §6.3: a peer keeps at most the previous, current and
    next sessions; older ones are gone and data sealed under them must be
    dropped. The adversary completes three handshakes S1, S2, S3 (each
    confirmed by a keepalive and an echo, 100 ms apart with increasing
    timestamps): S3's initiation drops S1 at the responder (next = S3,
    previous cleared) and its confirmation makes S2 previous, S3 current.
    An echo request sealed under S1 must then get no reply and not count as
    received; S3 still carries an echo. (Whether S2, the previous session,
    still answers is noted, not checked.) True expiry after
    REJECT_AFTER_TIME (180 s) is not waited for."""
    name = _name(ctx)
    with _adversary(ctx) as adv:
        sessions = []
        for label in ("S1", "S2", "S3"):
            _, session = adv.handshake(label=label)
            reply = _alive(ctx, adv, session, f"right after handshake {label}")
            check(reply.session is session, f"{name} answered {label}'s echo under another one")
            sessions.append(session)
            adv.sleep(SPACING)
        s1, s2, s3 = sessions
        before = _me(ctx)
        adv.drain()
        _no_echo(ctx, adv, [("an echo request sealed under S1", adv.send_echo(s1))])
        _unchanged(ctx, before, "data on a rotated-out session")
        reply = _alive(ctx, adv, s3, "after data on S1")
        check(reply.session is s3, f"{name} answered through {reply.session.label}, not S3")
        ctx.note("previous_session_answered", adv.echo(s2) is not None)


@scenario("padding", "transport plaintexts padded to 16, capped at the MTU", kind="hostile")
def padding(ctx: HostileContext) -> None:
    """Whitepaper §5.4.6: a transport plaintext is the packet zero-padded to
    a multiple of 16 bytes, but never beyond the MTU. The adversary sends
    IPv4 echo requests of 28 to 1420 bytes in steps of 7 (plus the sizes
    around the cap: 1404, 1405, 1408, 1409, 1419, 1420) and IPv6 ones of
    48 to 1420 bytes; for every reply the target seals, the plaintext must
    be min(roundup16(length), 1420) bytes (the lab's MTU), its bytes after
    the IP packet zero, and the echo's payload the one sent."""
    name = _name(ctx)
    sizes4 = sorted(set(range(28, LAB_MTU + 1, 7)) | {1404, 1405, 1408, 1409, 1419, 1420})
    sizes6 = [48, 49, 63, 64, 65, 100, 255, 256, 257, 512, 1000, 1280, 1404, 1409, 1419, 1420]
    with _adversary(ctx) as adv:
        _, session = adv.handshake(label="S1")
        checked = 0
        for version, sizes in ((4, sizes4), (6, sizes6)):
            for size in sizes:
                sent = adv.send_echo(session, version=version, total_length=size)
                reply = adv.await_echo(sent)
                if reply is None:  # one retry: a lost datagram is not what this checks
                    sent = adv.send_echo(session, version=version, total_length=size)
                    reply = adv.await_echo(sent)
                check(reply is not None, f"{name} did not answer an IPv{version} echo of {size}")
                assert reply is not None
                plain = reply.plaintext
                overhead = IPV6_ECHO_OVERHEAD if version == 6 else IPV4_ECHO_OVERHEAD
                check(
                    reply.echo.total_length == size
                    and reply.echo.payload == sent.packet[overhead:],
                    f"{name}'s IPv{version} echo reply to {size} bytes is "
                    f"{reply.echo.total_length} bytes or carries another payload",
                )
                want = padded_length(size, LAB_MTU)
                check(
                    len(plain) == want,
                    f"{name} padded an IPv{version} packet of {size} bytes to {len(plain)}, "
                    f"not {want} (multiple of 16, at most the MTU {LAB_MTU})",
                )
                check(
                    not any(plain[size:]),
                    f"{name}'s padding after an IPv{version} packet of {size} bytes is not zeros",
                )
                checked += 1
        ctx.note("sizes_checked", checked)


SPOOF_TABLE = "pwadv_spoof"


def _count_tun_sources(ctx: HostileContext) -> None:
    """nft counters of the packets the target writes to its TUN (prerouting, in its
    namespace): own4/own6 from the adversary's tunnel addresses, spoofed4/spoofed6 others."""
    tun = ctx.target.ifname
    own4, own6 = ctx.tunnel4, ctx.tunnel6
    ctx.target.host.nft(
        f"table inet {SPOOF_TABLE} {{\n"
        "  counter spoofed4 {}\n  counter spoofed6 {}\n  counter own4 {}\n  counter own6 {}\n"
        "  chain pre {\n    type filter hook prerouting priority -300; policy accept;\n"
        f'    iifname "{tun}" ip saddr {own4} counter name own4\n'
        f'    iifname "{tun}" ip saddr != {own4} counter name spoofed4\n'
        f'    iifname "{tun}" ip6 saddr {own6} counter name own6\n'
        f'    iifname "{tun}" ip6 saddr != {own6} counter name spoofed6\n'
        "  }\n}\n"
    )


def _nft_counters(ctx: HostileContext) -> dict[str, int]:
    """Packets counted by the scenario's named nft counters in the target's host."""
    out = ctx.target.host.run("nft", "-j", "list", "counters", "table", "inet", SPOOF_TABLE)
    counts: dict[str, int] = {}
    for item in json.loads(out.stdout).get("nftables", []):
        counter = item.get("counter")
        if isinstance(counter, dict):
            counts[str(counter["name"])] = int(counter["packets"])
    return counts


@scenario("spoofed-inner-source", "inner source outside allowed IPs is dropped", kind="hostile")
def spoofed_inner_source(ctx: HostileContext) -> None:
    """Whitepaper §2 (cryptokey routing) and §3: a decrypted packet is
    accepted only if its inner source address is among the sending peer's
    allowed IPs. A second peer is given 198.19.1.77 and fd19::1:77; through
    its valid session the adversary sends echo requests from those (another
    peer's addresses) and from 198.19.1.99 / fd19::1:99 (nobody's).
    Expected: no echo reply, and none of them reaches the target's kernel:
    nft counters on the target's TUN (prerouting, in the target's namespace)
    count no packet from a spoofed source, while the same echo from the
    adversary's own addresses is answered and counted (control)."""
    name = _name(ctx)
    if shutil.which("nft") is None:
        raise Skipped("needs nft to see what reaches the target's kernel")
    _count_tun_sources(ctx)
    other = PrivateKey.generate().public_key
    ctx.target.set(
        f"public_key={other.to_hex()}\nallowed_ip=198.19.1.77/32\nallowed_ip=fd19::1:77/128\n"
    )
    with _adversary(ctx) as adv:
        _, session = adv.handshake(label="S1")
        _alive(ctx, adv, session, "after the handshake")
        start = _nft_counters(ctx)
        sources = [
            ("another peer's IPv4 address", "198.19.1.77"),
            ("an IPv4 address of no peer", "198.19.1.99"),
            ("another peer's IPv6 address", "fd19::1:77"),
            ("an IPv6 address of no peer", "fd19::1:99"),
        ]
        adv.drain()
        sent = [
            (f"an echo request from {label} ({source})", adv.send_echo(session, source=source))
            for label, source in sources
        ]
        _no_echo(ctx, adv, sent)
        after = _nft_counters(ctx)
        for family in ("spoofed4", "spoofed6"):
            check(
                after.get(family, 0) == start.get(family, 0),
                f"{name} wrote {after.get(family, 0) - start.get(family, 0)} packet(s) with a "
                f"spoofed IPv{family[-1]} source to its TUN",
            )
        for version in (4, 6):
            reply = adv.echo(session, version=version)
            check(reply is not None, f"{name} did not answer an IPv{version} echo (control)")
        end = _nft_counters(ctx)
        for family in ("own4", "own6"):
            check(
                end.get(family, 0) > after.get(family, 0),
                f"the nft counter {family} on {name}'s TUN saw no packet: the check cannot see",
            )
