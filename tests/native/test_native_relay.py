"""The relay's native forwarding loop (relay.c, `NativeRelay`) on loopback sockets.

Nodes are plain UDP sockets; the relay's tables are set as the relay server
sets them after checking an association. Tagged WireGuard messages between
associated nodes are forwarded with the tag turned from destination to
source and nothing else changed; what is not for it goes up to Python with
its source; what no member sent, or no WireGuard message could be, is
dropped and counted.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator

import pytest

from helpers.time_bounds import wait_for
from pywg import _fast, relayed
from pywg._fast.relay import RUN_HEADER, UP_HEADER, NativeRelay, parse_run
from pywg.constants import MAX_RELAY_NODE_ID
from pywg.stun import binding_request, new_transaction_id

pytestmark = pytest.mark.skipif(not _fast.AVAILABLE, reason="native extension not built")


def transport(size: int = 100) -> bytes:
    return bytes([4, 0, 0, 0]) + os.urandom(size - 4)


class Rig:
    """A NativeRelay on 127.0.0.1 and node sockets around it."""

    def __init__(self, start: bool = True) -> None:
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.sock.bind(("::", 0))
        self.port = self.sock.getsockname()[1]
        self.ended: list[str] = []
        self.relay = NativeRelay(self.sock, self.ended.append)
        if start:
            self.relay.start()
        self.nodes: list[socket.socket] = []

    def node(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2.0)
        self.nodes.append(sock)
        return sock

    def associate(self, node_id: int, sock: socket.socket) -> None:
        self.relay.set_node(node_id, sock.getsockname())

    def send(self, sock: socket.socket, data: bytes) -> None:
        sock.sendto(data, ("127.0.0.1", self.port))

    def up(self, count: int) -> list[tuple[bytes, tuple[str, int]]]:
        got: list[tuple[bytes, tuple[str, int]]] = []
        assert wait_for(lambda: got.extend(self.relay.received()) or len(got) >= count, 2.0)
        return got

    def close(self) -> None:
        self.relay.stop()
        for sock in (*self.nodes, self.sock):
            sock.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    made = Rig()
    yield made
    made.close()
    assert made.ended == []


def silent(sock: socket.socket, seconds: float = 0.2) -> bool:
    sock.settimeout(seconds)
    try:
        sock.recv(65535)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(2.0)
    return False


def test_forwards_between_associated_nodes_with_the_tag_turned(rig: Rig) -> None:
    a, b = rig.node(), rig.node()
    rig.associate(0x0A0001, a)
    rig.associate(0x0B0002, b)
    for kind, size in ((1, 148), (2, 92), (3, 64), (4, 32), (4, 1452)):
        message = bytes([kind, 0, 0, 0]) + os.urandom(size - 4)
        rig.send(a, relayed.tag(message, 0x0B0002))
        got, source = b.recvfrom(65535)
        assert source[1] == rig.port and got == relayed.tag(message, 0x0A0001)
        rig.send(b, relayed.tag(message, 0x0A0001))
        assert a.recv(65535) == relayed.tag(message, 0x0B0002)
    # the loop counts a send after sendmmsg returns, which may be after the datagram arrived
    assert wait_for(lambda: rig.relay.stats()["forwarded"] == 10, 2.0)
    stats = rig.relay.stats()
    assert stats["forwarded"] == 10 and stats["nodes"] == 2 and stats["handed_up"] == 0
    assert stats["forwarded_bytes"] == 2 * (148 + 92 + 64 + 32 + 1452)


def test_drops_what_no_member_sent_and_what_is_no_message(rig: Rig) -> None:
    a, b, stranger = rig.node(), rig.node(), rig.node()
    rig.associate(1, a)
    rig.associate(2, b)
    rig.send(stranger, relayed.tag(transport(), 2))  # not associated
    for junk in (
        relayed.tag(bytes([1, 0, 0, 0]) + bytes(100), 2),  # an initiation of the wrong size
        relayed.tag(bytes([4, 0, 0, 0]) + bytes(20), 2),  # shorter than a keepalive
        transport(),  # no destination
        b"\x07" + bytes(40),  # no type at all
    ):
        rig.send(a, junk)
    assert silent(b)
    assert wait_for(lambda: rig.relay.stats()["malformed"] == 3, 2.0)
    stats = rig.relay.stats()
    assert stats["not_relay"] == 1
    assert stats["unassociated"] == 1 and stats["forwarded"] == 0 and stats["handed_up"] == 0


def test_hands_up_stun_and_messages_for_nodes_it_does_not_hold(rig: Rig) -> None:
    a = rig.node()
    rig.associate(1, a)
    request = binding_request(new_transaction_id())
    elsewhere = relayed.tag(transport(), 77)  # node 77: on TCP, or another relay's
    rig.send(a, request)
    rig.send(a, elsewhere)
    got = rig.up(2)
    # as the dual-stack socket's recvfrom gives the source: v4-mapped, flow and scope 0
    source = ("::ffff:127.0.0.1", a.getsockname()[1], 0, 0)
    assert got == [(request, source), (elsewhere, source)]
    assert rig.relay.stats()["handed_up"] == 2


def test_what_goes_up_goes_in_runs_in_order_with_each_source() -> None:
    """Datagrams waiting when the loop starts come in one receive batch: they go up as one
    run (one message: `received(limit=1)` gives them all), in the order sent, each with its
    own source where the source changes within the run."""
    rig = Rig(start=False)
    try:
        a, b = rig.node(), rig.node()
        rig.associate(1, a)
        rig.associate(2, b)
        sent = []
        for index in range(40):
            sender = b if index % 7 == 3 else a
            data = relayed.tag(bytes([4, 0, 0, 0]) + index.to_bytes(4, "big") + bytes(92), 77)
            rig.send(sender, data)
            sent.append((data, ("::ffff:127.0.0.1", sender.getsockname()[1], 0, 0)))
        rig.relay.start()
        assert wait_for(lambda: rig.relay.stats()["handed_up"] == len(sent), 2.0)
        assert [(bytes(d), s) for d, s in rig.relay.received(limit=1)] == sent
    finally:
        rig.close()
    assert rig.ended == []


def test_a_run_parses_as_c_lays_it_out() -> None:
    """relay.h's run: a count, then per datagram its length, its address's length (SAME:
    the one before's) and bytes, its bytes; an address of no IP family is left out."""
    ffi, lib = _fast.require()
    assert ffi.sizeof("struct pywg_relay_run") == RUN_HEADER.size
    assert ffi.sizeof("struct pywg_relay_up") == UP_HEADER.size
    assert ffi.offsetof("struct pywg_relay_up", "addrlen") == 2
    same = lib.PYWG_RELAY_UP_SAME
    v4 = socket.AF_INET.to_bytes(2, sys.byteorder) + (4000).to_bytes(2, "big")
    v4 += socket.inet_aton("192.0.2.1") + bytes(8)
    unix = socket.AF_UNIX.to_bytes(2, sys.byteorder) + b"x"
    run = RUN_HEADER.pack(4)
    for data, address in ((b"one", v4), (b"two!", None), (b"", unix), (b"four", None)):
        addrlen = same if address is None else len(address)
        run += UP_HEADER.pack(len(data), addrlen) + (address or b"") + data
    source = ("192.0.2.1", 4000)
    assert [(bytes(d), s) for d, s in parse_run(run, same)] == [
        (b"one", source),
        (b"two!", source),
    ]


def test_a_node_reached_another_way_gets_nothing_here(rig: Rig) -> None:
    """deliver=False (the node is on TCP too): what it sends is forwarded, what is for it
    goes up to Python."""
    a, b = rig.node(), rig.node()
    rig.associate(1, a)
    rig.relay.set_node(2, b.getsockname(), deliver=False)
    for_b = relayed.tag(transport(), 2)
    rig.send(a, for_b)
    assert silent(b) and rig.up(1)[0][0] == for_b
    rig.send(b, relayed.tag(transport(), 1))
    assert a.recv(65535)[1:4] == (2).to_bytes(3, "big")


def test_associations_move_and_go(rig: Rig) -> None:
    a, a2, b = rig.node(), rig.node(), rig.node()
    rig.associate(1, a)
    rig.associate(2, b)
    rig.associate(1, a2)  # node 1 moved (a new NAT mapping): a is no one's now
    rig.send(a, relayed.tag(transport(), 2))
    assert silent(b)
    rig.send(a2, relayed.tag(transport(), 2))
    assert b.recv(65535)[1:4] == (1).to_bytes(3, "big")
    rig.associate(3, a2)  # an address is one node's: node 1 loses it
    rig.send(a2, relayed.tag(transport(), 2))
    assert b.recv(65535)[1:4] == (3).to_bytes(3, "big")
    rig.relay.set_node(2, None)
    rig.send(a2, relayed.tag(transport(), 2))  # b is gone: up to Python, not to b
    assert silent(b) and rig.up(1)
    assert rig.relay.stats()["nodes"] == 1
    for bad in (0, MAX_RELAY_NODE_ID + 1):
        with pytest.raises(ValueError):
            rig.relay.set_node(bad, a.getsockname())


def test_many_nodes_and_a_burst(rig: Rig) -> None:
    """5,000 associations (the tables' chains), then 2,000 back-to-back datagrams
    between two of them (coalesced by UDP GRO where the kernel does): all arrive."""
    a, b = rig.node(), rig.node()
    for node_id in range(10, 5010):
        rig.relay.set_node(node_id, ("198.18.0.1", 10000 + node_id))  # RFC 2544 range
    rig.associate(1, a)
    rig.associate(2, b)
    assert rig.relay.stats()["nodes"] == 5002
    sent = [relayed.tag(transport(1200), 2) for _ in range(2000)]
    got = []
    for start in range(0, len(sent), 50):  # bursts within the sockets' default buffers
        for message in sent[start : start + 50]:
            rig.send(a, message)
        got += [b.recv(65535) for _ in range(50)]
    assert sorted(g[4:] for g in got) == sorted(m[4:] for m in sent)
    assert all(g[1:4] == (1).to_bytes(3, "big") for g in got)
    for node_id in range(10, 5010):
        rig.relay.set_node(node_id, None)
    assert rig.relay.stats()["nodes"] == 2
