"""The relay client's TCP transport (pywg.mesh.relayclient) against a real relay on loopback.

A `Relay` runs on a thread (helpers.relay_clients.RelayThread) with two
members; `TcpSession.open` connects as one of them, directly or through a
tiny CONNECT proxy (helpers.connect_proxy), and exchanges datagrams with the
other, a synthetic UDP node. Refusals must be clear errors: a proxy's 407 or
403, a certificate that is not the pinned one, a relay that names another
key, a node that is not a member. The UDP association and RelayLink over
real tunnels are in test_relay_link.py (namespace lab).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from nacl.signing import SigningKey

from helpers.connect_proxy import start_proxy
from helpers.relay_clients import Node, RelayThread, TcpNode, UdpNode, wg
from pywg import stun
from pywg.mesh import relayproto as rp
from pywg.mesh import wire
from pywg.mesh.relayclient import (
    NodeIdentity,
    ProxyError,
    RelayClientError,
    RelayLink,
    RelayRefused,
    TcpSession,
    Timing,
)
from pywg.mesh.relayclient.proxy import parse_proxy, proxy_from_environment
from pywg.mesh.relayclient.udp import ATTEMPTS, Associator
from pywg.mesh.relayserver import RelayConfig, ServerTls, StaticMembership, server_tls
from pywg.mesh.schema import HomeRelay
from pywg.mesh.tls import load_or_make

pytestmark = pytest.mark.time_limit(30)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> ServerTls:
    return server_tls(load_or_make(str(tmp_path_factory.mktemp("tls")), ["relay.test"]))


@pytest.fixture
def members() -> tuple[Node, Node]:
    return Node.make(1), Node.make(0x0A0B0C)


@pytest.fixture
def relay(tls: ServerTls, members: tuple[Node, Node]) -> Iterator[RelayThread]:
    config = RelayConfig(
        signing_key=SigningKey.generate(),
        membership=StaticMembership(n.member for n in members),
        tls=tls,
        host="127.0.0.1",
        udp_port=0,
        tcp_port=0,
    )
    running = RelayThread(config)
    yield running
    running.close()


def identity(node: Node) -> NodeIdentity:
    return NodeIdentity(node.wg_key, node.control)


def server(relay: RelayThread, **changes: object) -> HomeRelay:
    fields: dict[str, object] = {"number": 1, "name": "r", "key": relay.key, "host": "127.0.0.1"}
    fields.update(udp_port=relay.udp[1], tcp_port=relay.tcp_port, **changes)
    return HomeRelay(**fields)  # type: ignore[arg-type]


async def exchange(session: TcpSession, peer: UdpNode, me: int) -> None:
    """A datagram each way between `session` and the UDP member `peer`."""
    got: asyncio.Queue[bytes] = asyncio.Queue()
    runner = asyncio.create_task(session.run(got.put_nowait, 25.0))
    try:
        message = wg(4, 200)
        assert session.send(rp.tag(message, peer.node.node_id))
        received = await asyncio.to_thread(peer.recv)
        assert rp.untag(received) == (me, message)
        back = wg(1, 148)
        await asyncio.to_thread(peer.send, me, back)
        assert rp.untag(await asyncio.wait_for(got.get(), 5)) == (peer.node.node_id, back)
    finally:
        runner.cancel()
        session.close()


def test_tcp_session_carries_datagrams_both_ways(
    relay: RelayThread, members: tuple[Node, Node], tls: ServerTls
) -> None:
    a, b = members
    peer = UdpNode(b, relay)
    assert peer.associate() == b.node_id

    async def main() -> None:
        session = await TcpSession.open(identity(a), server(relay, pin=tls.binding))
        assert session.node_id == a.node_id
        assert not session.send(b"not a WireGuard message")  # never sent, counted
        await exchange(session, peer, a.node_id)
        assert session.dropped == 1 and session.sent == 1 and session.received == 1

    try:
        asyncio.run(main())
    finally:
        peer.close()


def test_tcp_session_through_a_connect_proxy(
    relay: RelayThread, members: tuple[Node, Node]
) -> None:
    a, b = members
    peer = UdpNode(b, relay)
    assert peer.associate() == b.node_id

    async def main() -> None:
        proxy = await start_proxy("127.0.0.1", 0, 200)
        port = proxy.sockets[0].getsockname()[1]
        try:
            session = await TcpSession.open(identity(a), server(relay), proxy=("127.0.0.1", port))
            await exchange(session, peer, a.node_id)
        finally:
            proxy.close()

    try:
        asyncio.run(main())
    finally:
        peer.close()


@pytest.mark.parametrize(("status", "words"), [(407, "authentication (407)"), (403, "(403)")])
def test_a_refusing_proxy_is_a_clear_error(
    relay: RelayThread, members: tuple[Node, Node], status: int, words: str
) -> None:
    async def main() -> None:
        proxy = await start_proxy("127.0.0.1", 0, status)
        port = proxy.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ProxyError, match=r"refused CONNECT 127\.0\.0\.1:") as caught:
                await TcpSession.open(
                    identity(members[0]), server(relay), proxy=("127.0.0.1", port)
                )
            assert words in str(caught.value)
        finally:
            proxy.close()

    asyncio.run(main())


def test_another_certificate_than_the_pinned_one_is_refused(
    relay: RelayThread, members: tuple[Node, Node], tls: ServerTls
) -> None:
    other = bytes(b ^ 0xFF for b in tls.binding)

    async def main() -> None:
        with pytest.raises(RelayClientError, match="not the pinned one"):
            await TcpSession.open(identity(members[0]), server(relay, pin=other))

    asyncio.run(main())


def test_a_relay_with_another_key_or_a_stranger_is_refused(
    relay: RelayThread, members: tuple[Node, Node]
) -> None:
    async def main() -> None:
        wrong_key = server(relay, key=bytes(SigningKey.generate().verify_key))
        with pytest.raises(RelayClientError, match="another relay key"):
            await TcpSession.open(identity(members[0]), wrong_key)
        with pytest.raises(RelayRefused, match="refused"):
            await TcpSession.open(identity(Node.make(7)), server(relay))

    asyncio.run(main())


def test_proxy_settings() -> None:
    assert parse_proxy("http://proxy.test:3128") == ("proxy.test", 3128)
    assert parse_proxy("http://[fd00::1]:8080/") == ("fd00::1", 8080)
    assert parse_proxy("proxy.test:8080") == ("proxy.test", 8080)
    for bad in ("https://p:1", "http://user:pw@p:1", "http://p:1/path", "http://p:x"):
        with pytest.raises(ProxyError):
            parse_proxy(bad)
    assert proxy_from_environment({"https_proxy": "http://p:1"}) == ("p", 1)
    assert proxy_from_environment({"HTTPS_PROXY": "http://q:2", "https_proxy": "x"}) == ("q", 2)
    assert proxy_from_environment({}) is None


class _RelayOnTheSocket:
    """Stands in for a Tunnel's `stun_request`: hands each request to `answer` (the relay)."""

    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self.answer = answer
        self.requests: list[bytes] = []

    async def stun_request(
        self, target: tuple[str, int], *, timeout: float, rto: float, make: Callable[[bytes], bytes]
    ) -> stun.BindingResponse:
        request = make(stun.new_transaction_id())
        self.requests.append(request)
        answered = self.answer(request)
        if answered is None:
            raise TimeoutError
        return stun.parse_binding_response(answered)


def test_associations_are_signed_newer_each_time_and_checked() -> None:
    node, relay_key = Node.make(0x123456), SigningKey.generate()
    relay = HomeRelay(2, "r2", bytes(relay_key.verify_key), "127.0.0.1", udp_port=3478)

    def accept(request: bytes) -> bytes:
        message = stun.parse_message(request)
        association = wire.parse_association(message)
        assert association is not None
        assert association.verify(relay.key, bytes(node.control.verify_key))
        return wire.association_answer(message.transaction_id, ("192.0.2.1", 1), node.node_id)

    async def main(answer: Callable[[bytes], bytes | None]) -> tuple[_RelayOnTheSocket, Any]:
        fake = _RelayOnTheSocket(answer)
        associator = Associator(fake, identity(node), relay)  # type: ignore[arg-type]
        try:
            return fake, [await associator.associate(0.3) for _ in range(3)]
        except RelayClientError as exc:
            return fake, exc

    fake, got = asyncio.run(main(accept))
    assert got == [node.node_id] * 3
    times = [wire.parse_association(stun.parse_message(r)).time_ms for r in fake.requests]  # type: ignore[union-attr]
    assert times == sorted(set(times)) and abs(times[-1] - time.time() * 1000) < 5000
    # a plain STUN answer (no node id) is not an association; no answer is a failure
    plain = lambda r: stun.binding_success(stun.parse_message(r).transaction_id, ("192.0.2.1", 1))  # noqa: E731
    _, refused = asyncio.run(main(plain))
    assert isinstance(refused, RelayClientError) and "no node id" in str(refused)
    fake, silent = asyncio.run(main(lambda r: None))
    assert isinstance(silent, RelayClientError) and "no answer" in str(silent)
    assert len(fake.requests) == ATTEMPTS  # each attempt a new request


class _FakeTunnel:
    """What RelayLink uses of a Tunnel: STUN answered (as the relay would) only when `answer`;
    `relays` records where relay 1 was set."""

    closed = False
    listen_port = 9  # the bridge's tunnel: nothing is sent there in this test

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id
        self.answer = False
        self.relays: list[tuple[str, int] | None] = []

    def set_relay(self, number: int, where: tuple[str, int] | None) -> None:
        assert number == 1
        self.relays.append(where)

    async def stun_request(
        self, target: tuple[str, int], *, timeout: float, rto: float, make: Callable[[bytes], bytes]
    ) -> stun.BindingResponse:
        transaction_id = stun.new_transaction_id()
        make(transaction_id)
        if not self.answer:
            await asyncio.sleep(timeout)
            raise TimeoutError
        answer = wire.association_answer(transaction_id, ("192.0.2.1", 1), self.node_id)
        return stun.parse_binding_response(answer)


def test_link_reconnects_over_tcp_moves_up_to_udp_and_down_again(
    relay: RelayThread, members: tuple[Node, Node]
) -> None:
    a = members[0]
    intruders: list[TcpNode] = []

    async def main() -> None:
        fake = _FakeTunnel(a.node_id)
        timing = Timing(udp_timeout=0.3, udp_retry=1.0, refresh=0.5, backoff_min=0.2)
        link = RelayLink(fake, identity(a), server(relay), timing=timing, proxy="")  # type: ignore[arg-type]
        await link.start()
        try:
            assert await link.wait_transport("tcp", 5), link.last_error
            assert fake.relays[-1] is not None and fake.relays[-1][0] == "127.0.0.1"
            # the same node connecting again replaces the link's connection: it reconnects
            intruders.append(await asyncio.to_thread(TcpNode(relay.tcp_port).connect, a, relay.key))
            assert await link.wait_transport(None, 5)
            assert "replaced" in (link.last_error or "")
            assert await link.wait_transport("tcp", 5), link.last_error
            assert link.counters()["tcp_connects"] == 2
            fake.answer = True  # UDP gets through: the link moves up within udp_retry
            assert await link.wait_transport("udp", 3)
            assert fake.relays[-1] == (relay.udp[0], relay.udp[1])
            assert link.counters()["udp_associations"] == 1 and link.node_id == a.node_id
            fake.answer = False  # a refresh goes unanswered: back to TCP
            assert await link.wait_transport("tcp", 5), link.last_error
            assert link.counters()["tcp_connects"] == 3
        finally:
            link.close()
        assert fake.relays[-1] is None

    try:
        asyncio.run(main())
    finally:
        for intruder in intruders:
            intruder.close()
