"""The home relay (pywg.mesh.relayserver, `pywg relay serve`) on real sockets on loopback.

Each relay runs on a thread of its own (helpers.relay_clients.RelayThread) on
127.0.0.1 with ports the kernel picks, with shortened time limits (FAST) so
deadlines and stalls show within a second; synthetic nodes speak to it over
UDP (UdpNode) and TCP (TcpNode). The last test runs `pywg relay serve` as a
process. Every test is bounded in time.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from helpers.relay_clients import TIMEOUT, Node, RelayThread, TcpNode, UdpNode, wg
from pywg import _fast, stun
from pywg.mesh import auth, wire
from pywg.mesh import relayproto as rp
from pywg.mesh.relayproto import CloseReason, FrameType
from pywg.mesh.relayserver import (
    Limits,
    PeerSpec,
    RelayConfig,
    ServerTls,
    StaticMembership,
    server_tls,
)
from pywg.mesh.tls import load_or_make

FAST = Limits(
    handshake_deadline=1.0,
    stall_timeout=0.5,
    sweep_interval=0.1,
    close_linger=0.5,
    source_rate=500.0,
    source_burst=100.0,
    redial_min=0.1,
    redial_max=0.5,
)
MESSAGES = [(1, 148), (2, 92), (3, 64), (4, 32), (4, 1452)]
BURST = 2000  # datagrams sent back to back

RelayFactory = Callable[..., RelayThread]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> ServerTls:
    return server_tls(load_or_make(str(tmp_path_factory.mktemp("tls")), ["relay.test"]))


@pytest.fixture
def closing() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest.fixture(params=["native", "python"])
def relays(tls: ServerTls, closing: ExitStack, request: pytest.FixtureRequest) -> RelayFactory:
    """relays(membership, key=..., limits=..., peers=..., clock_ms=...) -> a running RelayThread;
    every test runs with UDP forwarded by the native loop and by Python."""
    if request.param == "native" and not _fast.AVAILABLE:
        pytest.skip("native extension not built")

    def start(membership: StaticMembership, **options: Any) -> RelayThread:
        options.setdefault("native", request.param == "native")
        config = RelayConfig(
            signing_key=options.pop("key", None) or SigningKey.generate(),
            membership=membership,
            tls=tls,
            host="127.0.0.1",
            udp_port=0,
            tcp_port=options.pop("tcp_port", 0),
            limits=options.pop("limits", FAST),
            **options,
        )
        relay = RelayThread(config)
        closing.callback(relay.close)
        return relay

    return start


def nodes(count: int) -> tuple[list[Node], StaticMembership]:
    made = [Node.make(i) for i in (1, 2, 3, 4, 0xABCDEF)[:count]]
    return made, StaticMembership(n.member for n in made)


def udp(closing: ExitStack, node: Node, relay: RelayThread, associate: bool = True) -> UdpNode:
    client = closing.enter_context(_Closing(UdpNode(node, relay)))
    if associate:
        assert client.associate() == node.node_id
    return client


def tcp(closing: ExitStack, relay: RelayThread, node: Node | None = None, **kw: Any) -> TcpNode:
    client = closing.enter_context(_Closing(TcpNode(relay.tcp_port, **kw)))
    if node is not None:
        client.connect(node, relay.key)
        relay.wait_stat("homed", 1)
    return client


class _Closing:
    def __init__(self, client: Any) -> None:
        self.client = client

    def __enter__(self) -> Any:
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()


def check_delivery(
    send: Callable[[int, bytes], None], receive: Callable[[], bytes], to: int, source: int
) -> None:
    """Every forwarded type and size arrives tagged with `source`, the rest untouched."""
    for kind, size in MESSAGES:
        message = wg(kind, size)
        send(to, message)
        got = receive()
        assert len(got) == size
        assert rp.untag(got) == (source, message)


# -- delivery --------------------------------------------------------------------------------


@pytest.mark.time_limit(20)
def test_udp_to_udp(relays: RelayFactory, closing: ExitStack) -> None:
    (a, b, *_), members = nodes(5)
    relay = relays(members)
    ua, ub = udp(closing, a, relay), udp(closing, b, relay)
    check_delivery(ua.send, ub.recv, b.node_id, a.node_id)
    check_delivery(ub.send, ua.recv, a.node_id, b.node_id)
    stats = relay.stats()
    assert stats["delivered"] == 2 * len(MESSAGES) and stats["udp_associations"] == 2


@pytest.mark.time_limit(20)
def test_udp_and_tcp_both_ways(relays: RelayFactory, closing: ExitStack) -> None:
    (a, b, *_), members = nodes(2)
    relay = relays(members)
    ua = udp(closing, a, relay)
    tb = tcp(closing, relay, b)
    check_delivery(ua.send, tb.read_datagram, b.node_id, a.node_id)
    check_delivery(tb.send, ua.recv, a.node_id, b.node_id)


@pytest.mark.time_limit(30)
def test_a_burst_from_udp_to_tcp_arrives_whole_and_in_order(
    relays: RelayFactory, closing: ExitStack
) -> None:
    """BURST datagrams sent back to back by a UDP node reach its peer on TCP, each once,
    in the order sent: the native loop hands them up in runs (several a message), the
    Python side reads a run at a time."""
    (a, b), members = nodes(2)
    relay = relays(members)
    ua, tb = udp(closing, a, relay), tcp(closing, relay, b)
    sent = [wg(4, 1000)[:4] + index.to_bytes(4, "big") + os.urandom(992) for index in range(BURST)]
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.extend(tb.read_datagram() for _ in sent))
    reader.start()
    for message in sent:
        ua.send(b.node_id, message)
    reader.join(TIMEOUT * 2)
    assert not reader.is_alive(), f"{len(got)} of {BURST} arrived"
    assert [rp.untag(message) for message in got] == [(a.node_id, m) for m in sent]
    stats = relay.stats()
    assert stats["delivered"] == BURST and stats.get("drop_queue_full", 0) == 0


@pytest.mark.time_limit(20)
def test_tcp_to_tcp_and_the_largest_id(relays: RelayFactory, closing: ExitStack) -> None:
    (a, _, _, _, e), members = nodes(5)
    relay = relays(members)
    ta, te = tcp(closing, relay, a), tcp(closing, relay, e)
    check_delivery(ta.send, te.read_datagram, e.node_id, a.node_id)
    check_delivery(te.send, ta.read_datagram, a.node_id, e.node_id)
    big = wg(4, rp.MAX_DATAGRAM_SIZE)  # the largest datagram fits a frame
    ta.send(e.node_id, big)
    assert rp.untag(te.read_datagram()) == (a.node_id, big)


@pytest.mark.time_limit(20)
def test_tcp_wins_over_udp_for_a_node_with_both(relays: RelayFactory, closing: ExitStack) -> None:
    (a, b), members = nodes(2)
    relay = relays(members)
    ua, ub = udp(closing, a, relay), udp(closing, b, relay)
    tb = tcp(closing, relay, b)
    ua.send(b.node_id, wg(4, 40))
    assert rp.untag(tb.read_datagram())[0] == a.node_id
    assert ub.nothing()
    tb.close()  # closing TCP moves delivery back to UDP
    relay.wait_stat("tcp_accepted")
    deadline = time.monotonic() + TIMEOUT
    while relay.stats()["connections"] and time.monotonic() < deadline:
        time.sleep(0.02)
    ua.send(b.node_id, wg(4, 40))
    assert rp.untag(ub.recv())[0] == a.node_id


@pytest.mark.time_limit(20)
def test_plain_stun_is_answered(relays: RelayFactory, closing: ExitStack) -> None:
    (a,), members = nodes(1)
    relay = relays(members)
    client = udp(closing, a, relay, associate=False)
    tid = stun.new_transaction_id()
    client.sock.sendto(stun.binding_request(tid), relay.udp)
    answer = stun.parse_binding_response(client.recv())
    assert answer.transaction_id == tid and answer.mapped == client.sock.getsockname()
    assert wire.answered_node_id(answer) is None  # an address not associated: nobody
    assert relay.stats()["stun_answered"] == 1
    # from an associated address the answer names the node (it checks its association so)
    associated = udp(closing, a, relay)
    associated.sock.sendto(stun.binding_request(tid), relay.udp)
    answer = stun.parse_binding_response(associated.recv())
    assert answer.mapped == associated.sock.getsockname()
    assert wire.answered_node_id(answer) == a.node_id


# -- what is dropped -------------------------------------------------------------------------


@pytest.mark.time_limit(20)
def test_unassociated_unknown_unrouted_and_malformed_are_dropped(
    relays: RelayFactory, closing: ExitStack
) -> None:
    (a, b, c), members = nodes(3)
    relay = relays(members)
    ua, ub = udp(closing, a, relay), udp(closing, b, relay)
    uc = udp(closing, c, relay, associate=False)  # a member that never associated
    uc.send(b.node_id, wg(4, 64))
    ua.send(99, wg(4, 64))  # nobody's id
    ua.send(c.node_id, wg(4, 64))  # a member homed nowhere
    for bad in (
        bytes([4, 0, 0, 2]) + bytes(27),  # 31 bytes
        bytes([1, 0, 0, 2]) + bytes(100),  # an initiation of the wrong size
        bytes([4, 0, 0, 0]) + bytes(60),  # no destination
        bytes([0x17, 3, 3, 0]) + bytes(60),  # TLS on the UDP port
    ):
        ua.sock.sendto(bad, relay.udp)
    assert ub.nothing()
    stats = relay.stats()
    assert stats["drop_unassociated"] == 1
    assert stats["drop_unknown_destination"] == 1
    assert stats["drop_no_route"] == 1
    assert stats["drop_malformed"] == 3
    assert stats["drop_not_relay"] == 1
    assert stats.get("delivered", 0) == 0


@pytest.mark.time_limit(20)
def test_forged_and_replayed_associations_are_refused(
    relays: RelayFactory, closing: ExitStack
) -> None:
    (a, b), members = nodes(2)
    relay = relays(members)
    ub = udp(closing, b, relay)
    attacker = udp(closing, a, relay, associate=False)
    now = int(time.time() * 1000)
    forged = Node(a.wg_key, SigningKey.generate(), a.node_id)  # a's key, another control key
    stranger = Node.make(7)
    refused = [
        UdpNode(forged, relay).association(),
        UdpNode(stranger, relay).association(),
        attacker.association(relay_key=bytes(32)),  # for another relay
        attacker.association(time_ms=now - auth.MAX_SKEW_MS - 5000),
        attacker.association(time_ms=now + auth.MAX_SKEW_MS + 5000),
    ]
    for request in refused:
        attacker.sock.sendto(request, relay.udp)
    assert attacker.nothing()
    assert relay.stats()["associations_refused"] == len(refused)
    attacker.send(b.node_id, wg(4, 64))
    assert ub.nothing(0.2)
    # a's real association, then the same bytes again from the attacker's address
    ua = udp(closing, a, relay, associate=False)
    genuine = ua.association()
    ua.sock.sendto(genuine, relay.udp)
    assert stun.parse_binding_response(ua.recv()).mapped == ua.sock.getsockname()
    attacker.sock.sendto(genuine, relay.udp)
    assert attacker.nothing()
    older = ua.association(time_ms=now - 1000)  # signed, fresh, but older than the last
    attacker.sock.sendto(older, relay.udp)
    assert attacker.nothing()
    assert relay.stats()["associations_refused"] == len(refused) + 2
    ub.send(a.node_id, wg(4, 64))
    assert rp.untag(ua.recv())[0] == b.node_id  # still delivered to a, not to the attacker
    assert attacker.nothing(0.2)


@pytest.mark.time_limit(20)
def test_nothing_signed_before_the_relay_started_is_taken(
    relays: RelayFactory, closing: ExitStack
) -> None:
    (a,), members = nodes(1)
    relay = relays(members)
    client = udp(closing, a, relay, associate=False)
    client.sock.sendto(client.association(time_ms=int(time.time() * 1000) - 2000), relay.udp)
    assert client.nothing()
    assert relay.stats()["associations_refused"] == 1
    assert client.associate() == a.node_id


@pytest.mark.time_limit(20)
def test_associations_expire(relays: RelayFactory, closing: ExitStack) -> None:
    (a, b), members = nodes(2)
    relay = relays(members, limits=replace(FAST, association_ttl=0.3))
    ua, ub = udp(closing, a, relay), udp(closing, b, relay)
    relay.wait_stat("associations_expired", 2)
    assert relay.stats()["homed"] == 0
    ua.send(b.node_id, wg(4, 64))
    assert ub.nothing(0.2)
    assert relay.stats()["drop_unassociated"] == 1


@pytest.mark.time_limit(20)
def test_forged_tcp_hellos_are_refused_alike(relays: RelayFactory, closing: ExitStack) -> None:
    (a,), members = nodes(1)
    relay = relays(members)
    answers = []
    for node, control in (
        (a, SigningKey.generate()),  # a's key, signed by another control key
        (Node.make(9), None),  # not a member
    ):
        client = tcp(closing, relay)
        client.upgrade()
        answers.append(client.hello(node, relay.key, control))
        assert client.closed_within(2.0)
    assert answers == [(FrameType.CLOSE, bytes([CloseReason.REFUSED]))] * 2
    # a hello signed over another certificate (a machine in the middle's) is refused too
    client = tcp(closing, relay)
    client.upgrade()
    challenge = client.challenge()
    hello = rp.node_hello(a.wg_key, a.control, challenge, rp.certificate_binding(b"mitm"))
    client.send_frame(FrameType.HELLO, hello.encode())
    assert client.read_frame() == (FrameType.CLOSE, bytes([CloseReason.REFUSED]))
    assert relay.stats()["closed_refused"] == 3 and relay.stats()["homed"] == 0


@pytest.mark.time_limit(20)
def test_a_first_frame_that_is_no_hello(relays: RelayFactory, closing: ExitStack) -> None:
    (a,), members = nodes(1)
    relay = relays(members)
    client = tcp(closing, relay)
    client.upgrade()
    client.challenge()
    client.send(a.node_id, wg(4, 64))  # a datagram before the hello
    assert client.read_frame() == (FrameType.CLOSE, bytes([CloseReason.MALFORMED]))
    client = tcp(closing, relay)
    client.upgrade()
    challenge = client.challenge()
    hello = rp.node_hello(a.wg_key, a.control, challenge, client.binding)
    client.send_frame(FrameType.HELLO, bytes([2]) + hello.encode()[1:])  # version 2
    assert client.read_frame() == (FrameType.CLOSE, bytes([CloseReason.VERSION]))


@pytest.mark.time_limit(20)
def test_frames_after_the_hello(relays: RelayFactory, closing: ExitStack) -> None:
    (a, b), members = nodes(2)
    relay = relays(members)
    ta, tb = tcp(closing, relay, a), tcp(closing, relay, b)
    ta.send_frame(0xEE, b"from a later version")  # skipped
    ta.send_frame(FrameType.DATAGRAM, bytes([4, 0, 0, 2]) + bytes(10))  # too short: dropped
    ta.send_frame(FrameType.PING, b"12345678")
    assert ta.read_frame() == (FrameType.PONG, b"12345678")
    ta.send(b.node_id, wg(4, 64))  # the connection still carries datagrams
    assert rp.untag(tb.read_datagram())[0] == a.node_id
    stats = relay.stats()
    assert stats["skipped_frames"] == 1 and stats["drop_malformed"] == 1
    ta.sock.sendall(rp.frame_header(FrameType.DATAGRAM, 0)[:1] + (1 << 20).to_bytes(4, "big"))
    assert ta.closed_within(2.0)  # an oversized frame closes the connection
    assert relay.stats()["closed_bad_frame"] == 1


@pytest.mark.time_limit(20)
def test_a_newer_connection_replaces_the_older(relays: RelayFactory, closing: ExitStack) -> None:
    (a, b), members = nodes(2)
    relay = relays(members)
    first = tcp(closing, relay, a)
    second = tcp(closing, relay, a)
    assert first.read_frame() == (FrameType.CLOSE, bytes([CloseReason.REPLACED]))
    assert first.closed_within(2.0)
    ub = udp(closing, b, relay)
    ub.send(a.node_id, wg(4, 64))
    assert rp.untag(second.read_datagram())[0] == b.node_id


@pytest.mark.time_limit(20)
def test_a_member_removed_is_evicted(relays: RelayFactory, closing: ExitStack) -> None:
    (a, b, c), members = nodes(3)
    relay = relays(members)
    ta, ub, uc = tcp(closing, relay, a), udp(closing, b, relay), udp(closing, c, relay)
    relay.call(lambda: members.remove(a.wg_key))
    relay.call(lambda: members.remove(b.wg_key))
    assert ta.read_frame() == (FrameType.CLOSE, bytes([CloseReason.REFUSED]))
    relay.wait_stat("evicted", 2)
    ub.send(c.node_id, wg(4, 64))
    uc.send(a.node_id, wg(4, 64))
    assert uc.nothing(0.2)
    stats = relay.stats()
    assert stats["drop_unassociated"] == 1 and stats["drop_unknown_destination"] == 1


@pytest.mark.time_limit(20)
def test_quiet_connections_are_pinged_and_silent_ones_closed(
    relays: RelayFactory, closing: ExitStack
) -> None:
    (a,), members = nodes(1)
    relay = relays(members, limits=replace(FAST, keepalive_interval=0.2, idle_timeout=1.0))
    client = tcp(closing, relay, a)
    kind, payload = client.read_frame(1.0)  # nothing sent to it for 0.2 s: a PING
    assert kind == FrameType.PING and len(payload) == rp.PING_SIZE
    client.send_frame(FrameType.PONG, payload)
    start = time.monotonic()
    assert client.closed_within(3.0)  # it never sends anything else: closed as idle
    assert time.monotonic() - start > 0.5
    assert relay.stats()["closed_idle"] == 1


# -- the HTTP face and the deadlines ---------------------------------------------------------


def eof_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the other side closes `sock` within `seconds` (whatever it sends first)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(4096):
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def http_answer(client: TcpNode, request: bytes) -> bytes:
    client.sock.sendall(request)
    return client.read_head()


@pytest.mark.time_limit(20)
def test_other_http_requests_get_a_4xx_and_are_closed(
    relays: RelayFactory, closing: ExitStack
) -> None:
    relay = relays(StaticMembership())
    cases = [
        (b"GET / HTTP/1.1\r\nHost: relay.test\r\n\r\n", b"HTTP/1.1 404 Not Found"),
        (b"GET /pywg-relay HTTP/1.1\r\nHost: relay.test\r\n\r\n", b"HTTP/1.1 404 Not Found"),
        (b"GET /pywg-relay HTTP/1.1\r\nUpgrade: pywg-relay\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GET / HTTP/1.1\r\nX: " + b"y" * 5000, b"HTTP/1.1 431 Request Header"),
    ]
    for request, status in cases:
        client = tcp(closing, relay)
        head = http_answer(client, request)
        assert head.startswith(status), head
        assert b"Connection: close" in head
        assert client.closed_within(2.0)
    stats = relay.stats()
    assert (stats["http_404"], stats["http_400"], stats["http_431"]) == (2, 1, 1)


@pytest.mark.time_limit(20)
def test_set_ups_that_stall_are_closed_by_the_deadline(
    relays: RelayFactory, closing: ExitStack
) -> None:
    relay = relays(StaticMembership())
    deadline = FAST.handshake_deadline
    silent = closing.enter_context(socket.create_connection(("127.0.0.1", relay.tcp_port)))
    plain = closing.enter_context(socket.create_connection(("127.0.0.1", relay.tcp_port)))
    plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # no TLS: never a TLS handshake
    after_tls = tcp(closing, relay)  # TLS, then nothing
    half_head = tcp(closing, relay)
    half_head.sock.sendall(b"GET /pywg-relay HTTP/1.1\r\n")
    no_hello = tcp(closing, relay)
    no_hello.upgrade()
    start = time.monotonic()
    for raw in (silent, plain):  # plain: not TLS, closed at once (a TLS alert at most)
        assert eof_within(raw, deadline + 2.0 - (time.monotonic() - start))
    for client in (after_tls, half_head, no_hello):
        assert client.closed_within(deadline + 2.0 - (time.monotonic() - start))
    elapsed = time.monotonic() - start
    assert elapsed < deadline + 1.5
    relay.wait_stat("closed_deadline", 4)
    assert relay.stats()["preauth"] == 0


@pytest.mark.time_limit(20)
def test_unauthenticated_connections_per_source_are_limited(
    relays: RelayFactory, closing: ExitStack
) -> None:
    relay = relays(StaticMembership(), limits=replace(FAST, max_preauth_per_source=3))
    held = [
        closing.enter_context(socket.create_connection(("127.0.0.1", relay.tcp_port)))
        for _ in range(3)
    ]
    relay.wait_stat("preauth", 3)
    extra = closing.enter_context(socket.create_connection(("127.0.0.1", relay.tcp_port)))
    extra.settimeout(0.5)  # closed at accept, long before the deadline
    assert extra.recv(10) == b""
    assert relay.stats()["tcp_refused_at_accept"] == 1
    for sock in held:
        sock.close()
    relay.wait_stat("tls_failed", 3)
    assert relay.stats()["preauth"] == 0
    tcp(closing, relay).upgrade()  # room again


@pytest.mark.time_limit(30)
def test_garbage_on_every_port_and_stage_leaves_the_relay_serving(
    relays: RelayFactory, closing: ExitStack
) -> None:
    (a, b), members = nodes(2)
    relay = relays(members)
    rng = random.Random(0x6A7B)
    junk = udp(closing, Node.make(5), relay, associate=False)
    for _ in range(300):
        first = rng.choice((0, 1, 2, 3, 4, 0x17, 0xFF))
        junk.sock.sendto(bytes([first]) + os.urandom(rng.randint(0, 600)), relay.udp)
    for stage in range(24):
        raw = socket.create_connection(("127.0.0.1", relay.tcp_port))
        with raw:
            if stage % 3 == 0:  # before TLS
                raw.sendall(os.urandom(rng.randint(1, 3000)))
                continue
        client = tcp(closing, relay)
        with contextlib.suppress(OSError):  # the relay closes on what it does not take
            if stage % 3 == 1:  # inside TLS, before the head ends
                client.sock.sendall(os.urandom(rng.randint(1, 5000)))
            else:  # after the upgrade: random frames
                client.upgrade()
                for _ in range(rng.randint(1, 20)):
                    kind = rp.frame_header(rng.randint(0, 12), 0)[:1]
                    client.sock.sendall(kind + os.urandom(rng.randint(0, 200)))
        client.close()
    ua, tb = udp(closing, a, relay), tcp(closing, relay, b)
    check_delivery(ua.send, tb.read_datagram, b.node_id, a.node_id)
    check_delivery(tb.send, ua.recv, a.node_id, b.node_id)
    assert relay.stats().get("errors", 0) == 0
    assert relay.stats().get("delivered", 0) == 2 * len(MESSAGES)


# -- a client that does not read -------------------------------------------------------------


@pytest.mark.time_limit(30)
def test_a_client_that_does_not_read_is_dropped_and_memory_stays_bounded(
    relays: RelayFactory, closing: ExitStack
) -> None:
    (a, b), members = nodes(2)
    relay = relays(members)
    ua = udp(closing, a, relay)
    tb = tcp(closing, relay, b)  # connected, then never reads again
    message = wg(4, 8000)
    bound = FAST.node_queue.octets + FAST.write_high_water + 2 * (len(message) + 64)
    most = 0
    end = time.monotonic() + 15
    while relay.stats().get("closed_stalled", 0) == 0 and time.monotonic() < end:
        for _ in range(200):
            ua.send(b.node_id, message)
        time.sleep(0.01)
        most = max(most, relay.stats()["queued_bytes"])
    stats = relay.stats()
    assert stats["closed_stalled"] == 1, stats
    assert stats["drop_queue_full"] > 0
    assert 0 < most <= bound, (most, bound)
    assert stats["homed"] == 1 and stats["queued_bytes"] == 0  # a is still there, b is gone
    ua.send(b.node_id, message)
    relay.wait_stat("drop_no_route")
    tb.close()


# -- several relays --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], deadline: float = TIMEOUT) -> None:
    end = time.monotonic() + deadline
    while not predicate():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.02)


@pytest.mark.time_limit(30)
def test_two_relays_forward_to_each_other(relays: RelayFactory, closing: ExitStack) -> None:
    (a, b, c), members = nodes(3)
    key1, key2 = SigningKey.generate(), SigningKey.generate()
    pub1, pub2 = bytes(key1.verify_key), bytes(key2.verify_key)
    relay2 = relays(members, key=key2, peers=[PeerSpec(pub1)])  # accepts relay 1
    relay1 = relays(members, key=key1, peers=[PeerSpec(pub2, "127.0.0.1", relay2.tcp_port)])
    ua = udp(closing, a, relay1)  # a is homed on relay 1 (UDP)
    tb = tcp(closing, relay2, b)  # b on relay 2 (TCP)
    uc = udp(closing, c, relay2)  # c on relay 2 (UDP)
    wait_until(lambda: relay1.stats()["remote_nodes"] == 2 and relay2.stats()["remote_nodes"] == 1)
    check_delivery(ua.send, tb.read_datagram, b.node_id, a.node_id)
    check_delivery(tb.send, ua.recv, a.node_id, b.node_id)
    check_delivery(uc.send, ua.recv, a.node_id, c.node_id)
    assert relay1.stats()["forwarded_to_relay"] == len(MESSAGES)
    assert relay2.stats()["forwarded_to_relay"] == 2 * len(MESSAGES)
    tb.close()  # b leaves relay 2: relay 1 hears ABSENT
    wait_until(lambda: relay1.stats()["remote_nodes"] == 1)
    ua.send(b.node_id, wg(4, 64))
    relay1.wait_stat("drop_no_route")
    # the link goes down with relay 2 and comes back when it returns
    assert relay1.stats()["links"] == relay2.stats()["links"] == 1


@pytest.mark.time_limit(30)
def test_relays_dialing_each_other_keep_one_link(relays: RelayFactory, closing: ExitStack) -> None:
    (a, b), members = nodes(2)
    key1, key2 = SigningKey.generate(), SigningKey.generate()
    port1, port2 = free_port(), free_port()
    pub1, pub2 = bytes(key1.verify_key), bytes(key2.verify_key)
    relay1 = relays(members, key=key1, tcp_port=port1, peers=[PeerSpec(pub2, "127.0.0.1", port2)])
    relay2 = relays(members, key=key2, tcp_port=port2, peers=[PeerSpec(pub1, "127.0.0.1", port1)])
    ua, ub = udp(closing, a, relay1), udp(closing, b, relay2)
    wait_until(lambda: relay1.stats()["remote_nodes"] == 1 and relay2.stats()["remote_nodes"] == 1)
    time.sleep(0.5)  # both dialers have had their chance
    assert relay1.stats()["links"] == relay2.stats()["links"] == 1
    connections = relay1.stats()["connections"] + relay2.stats()["connections"]
    assert connections == 2  # one link, seen from both ends
    check_delivery(ua.send, ub.recv, b.node_id, a.node_id)
    check_delivery(ub.send, ua.recv, a.node_id, b.node_id)


@pytest.mark.time_limit(20)
@pytest.mark.parametrize("dialer_is_smaller", [True, False])
def test_of_two_links_the_one_dialed_by_the_smaller_key_stays(
    relays: RelayFactory, closing: ExitStack, dialer_is_smaller: bool
) -> None:
    """Relay `there` dialed `here`; then `here`'s key dials `there` too (the test plays it).
    Both sides keep the link dialed by the smaller relay key and close the other."""
    _, members = nodes(1)
    small, large = sorted(
        (SigningKey.generate() for _ in range(2)), key=lambda k: bytes(k.verify_key)
    )
    here_key, there_key = (small, large) if dialer_is_smaller else (large, small)
    here = relays(members, key=here_key, peers=[PeerSpec(bytes(there_key.verify_key))])
    there = relays(
        members,
        key=there_key,
        peers=[PeerSpec(bytes(here_key.verify_key), "127.0.0.1", here.tcp_port)],
    )
    wait_until(lambda: there.stats()["links"] == 1 and here.stats()["links"] == 1)
    second = tcp(closing, there)  # `here` dialing `there`, as a second link
    second.upgrade()
    challenge = second.challenge()
    hello = rp.peer_hello(here_key, challenge, second.binding)
    second.send_frame(FrameType.PEER_HELLO, hello.encode())
    kind, payload = second.read_frame()
    assert kind == FrameType.OK and rp.Ok.parse(payload).verify(there.key, hello)
    there.wait_stat("links_duplicate")
    if dialer_is_smaller:  # the second link stays; the first (dialed by `there`) goes
        assert not second.closed_within(0.5)
        wait_until(lambda: here.stats()["links"] == 0)  # `here` saw the first one close
    else:
        assert second.closed_within(2.0)
    assert there.stats()["links"] == 1


@pytest.mark.time_limit(20)
def test_a_relay_that_is_not_a_peer_is_refused(relays: RelayFactory, closing: ExitStack) -> None:
    _, members = nodes(1)
    relay = relays(members)
    stranger = SigningKey.generate()
    client = tcp(closing, relay)
    client.upgrade()
    challenge = client.challenge()
    hello = rp.peer_hello(stranger, challenge, client.binding)
    client.send_frame(FrameType.PEER_HELLO, hello.encode())
    assert client.read_frame() == (FrameType.CLOSE, bytes([CloseReason.REFUSED]))
    outsider = relays(members, peers=[PeerSpec(relay.key, "127.0.0.1", relay.tcp_port)])
    outsider.wait_stat("dial_refused")
    assert outsider.stats()["links"] == 0 and relay.stats()["links"] == 0


# -- the command -----------------------------------------------------------------------------


def members_file(path: Path, members: list[Node]) -> None:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    entries = [
        {
            "public_key": b64(n.wg_key),
            "control_key": b64(bytes(n.control.verify_key)),
            "node_id": n.node_id,
        }
        for n in members
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"members": entries}))
    os.replace(tmp, path)


class _Ports:
    """What a RelayThread offers the clients, for a relay in another process."""

    def __init__(self, key: bytes, udp_port: int, tcp_port: int) -> None:
        self.key, self.udp, self.tcp_port = key, ("127.0.0.1", udp_port), tcp_port


@pytest.mark.time_limit(40)
def test_pywg_relay_serve(tmp_path: Path, closing: ExitStack) -> None:
    (a, b, c), _ = nodes(3)
    listed = tmp_path / "members.json"
    members_file(listed, [a, b])
    src = Path(__file__).resolve().parents[2] / "src"
    env = dict(os.environ, PYTHONPATH=str(src))
    command = [
        sys.executable,
        "-m",
        "pywg",
        "relay",
        "serve",
        "--state",
        str(tmp_path / "st"),
        "--members",
        str(listed),
        "--listen",
        "127.0.0.1",
        "--udp-port",
        "0",
        "--tcp-port",
        "0",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "no ready line"
        words = proc.stdout.readline().decode().split()
        assert words[0] == "relay" and words[2] == "udp" and words[4] == "tcp", words
        key = auth.unb64(words[1], 32)
        ports = _Ports(key, int(words[3]), int(words[5]))
        assert len(bytes.fromhex(words[7])) == 32  # the certificate's SHA-256
        key_line = subprocess.run(
            [sys.executable, "-m", "pywg", "relay", "key", "--state", str(tmp_path / "st")],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=True,
        )
        assert key_line.stdout.strip() == words[1]
        ua = closing.enter_context(_Closing(UdpNode(a, ports)))  # type: ignore[arg-type]
        assert ua.associate() == a.node_id
        tb = closing.enter_context(_Closing(TcpNode(ports.tcp_port)))
        tb.connect(b, key)
        time.sleep(0.2)
        check_delivery(ua.send, tb.read_datagram, b.node_id, a.node_id)
        check_delivery(tb.send, ua.recv, a.node_id, b.node_id)
        # the members file is followed: b removed, c added
        members_file(listed, [a, c])
        assert tb.read_frame(8.0) == (FrameType.CLOSE, bytes([CloseReason.REFUSED]))
        uc = closing.enter_context(_Closing(UdpNode(c, ports)))  # type: ignore[arg-type]
        assert uc.associate() == c.node_id
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stderr is not None
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    mode = (tmp_path / "st" / "relay.key").stat().st_mode & 0o777
    assert mode == 0o600


def test_tls_helpers_give_the_fingerprint_clients_see(tls: ServerTls) -> None:
    assert len(tls.binding) == 32 and tls.fingerprint == tls.binding.hex()
    assert ssl.TLSVersion.TLSv1_2 <= tls.context.minimum_version
