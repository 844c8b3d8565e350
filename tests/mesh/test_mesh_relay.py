"""The mesh relay (pywg.mesh.relay): STUN on the main port, binds, forwarding, restarts.

The first tests need no network. The others use one namespace lab for the
module (the `net` fixture, tests/mesh/conftest.py: a core router, the relay on
a public host, node "na" behind an endpoint-independent NAT, node "nb" behind a
symmetric one, and a public host "pub"), run the relay's event loop on a thread
inside the relay's namespace (the `relay` fixture; once in this process with
`socket_factory=Host.socket`) and play the nodes with plain UDP sockets made in
their hosts (`node_socket`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import time
from functools import partial
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from helpers.mesh_harness import T0, Clock, Net, NodeSocket, NodeSockets, Relays, members_of
from pywg import stun
from pywg.lab import Site
from pywg.mesh import auth, wire
from pywg.mesh.relay import COUNTERS, RelayServer, _open_db, _TokenBucket, is_wireguard

needs_lab = pytest.mark.needs_lab("nft")  # the nodes are behind nftables NATs

PREFIX = "pwrly"  # of the `net` fixture's lab


def wg(kind: int, size: int) -> bytes:
    """A WireGuard-shaped datagram: type, three zero bytes, random rest."""
    return bytes([kind, 0, 0, 0]) + os.urandom(size - 4)


def no_members(key: bytes) -> bytes | None:
    return None


# -- without a network ---------------------------------------------------------------------


def test_is_wireguard_sizes() -> None:
    good = [wg(1, 148), wg(2, 92), wg(3, 64), wg(4, 32), wg(4, 48), wg(4, 1452), wg(4, 65535)]
    bad = [
        b"",
        b"\x01\x00\x00",
        wg(1, 147),
        wg(1, 149),
        wg(2, 91),
        wg(3, 65),
        wg(4, 31),
        wg(5, 148),
        b"\x01\x00\x01\x00" + bytes(144),  # a reserved byte set
        stun.binding_request(stun.new_transaction_id()),
    ]
    assert all(is_wireguard(d) for d in good)
    assert not any(is_wireguard(d) for d in bad)
    assert is_wireguard(memoryview(wg(4, 64)))


def test_arguments_are_checked(tmp_path: Path) -> None:
    members = no_members
    db = str(tmp_path / "r.db")
    for host in ("relay.example", "198.18.0.1/24", ""):
        with pytest.raises(ValueError):
            RelayServer(db, host, 0, members=members)
    with pytest.raises(ValueError):
        RelayServer(db, "::", 70000, members=members)
    for bad_range in ((0, 10), (5000, 4000), (60000, 70000)):
        with pytest.raises(ValueError):
            RelayServer(db, "::", 0, members=members, port_range=bad_range)
    relay = RelayServer(db, "0.0.0.0", 0, members=members)
    a, b = os.urandom(32), os.urandom(32)
    for x, y in ((a, a), (a, b[:31]), (a[:31], b), (a, b"")):
        with pytest.raises(ValueError):
            relay.ensure_pair(x, y)
    with pytest.raises(RuntimeError):  # not started
        relay.ensure_pair(a, b)
    with pytest.raises(RuntimeError):
        relay.remove_node(a)
    assert relay.port == 0 and relay.pair_port(a, b) is None
    assert relay.pair_stats(a, b) == (0, 0)
    stats = relay.stats()
    assert set(COUNTERS) <= set(stats) and stats["pairs"] == 0
    assert not any(stats.values())
    relay.close()
    relay.close()  # idempotent
    assert not (tmp_path / "r.db").exists()  # nothing opened before start()


def test_database_is_private_wal_and_prefixed(tmp_path: Path) -> None:
    path = tmp_path / "mesh.db"
    db = _open_db(str(path))
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert tables and all(t.startswith("relay_") for t in tables)
    finally:
        db.close()
    db = _open_db(str(path))  # again: the schema is there already
    db.close()


def test_token_bucket() -> None:
    bucket = _TokenBucket(rate=10.0, burst=20.0, tokens=20.0, last=100.0)
    assert sum(bucket.take(100.0) for _ in range(30)) == 20
    assert not bucket.take(100.05)  # half a token
    assert bucket.take(100.125)  # one and a quarter since then
    assert not bucket.take(100.125)
    assert sum(bucket.take(1000.0) for _ in range(30)) == 20  # never more than the burst


# -- the lab -------------------------------------------------------------------------------


def mapping(site: Site, sock: socket.socket, remote: tuple[str, int]) -> tuple[str, int]:
    """The NAT's outside address for the flow from `sock` to `remote`."""
    assert site.nat is not None
    flows = [m for m in site.nat.mappings() if m.inside == sock.getsockname()]
    found = [m.outside for m in flows if m.remote == remote]
    assert len(found) == 1, flows
    return found[0]


@needs_lab
def test_main_port_is_a_stun_server(net: Net, relay: Relays, node_socket: NodeSockets) -> None:
    running = relay(no_members)
    main = running.relay.port
    assert main > 0
    node = node_socket(net.na)
    txid = stun.new_transaction_id()
    node.send(stun.binding_request(txid), main)
    data, source = node.recv()
    assert source == (net.relay.addr4, main)
    answer = stun.parse_binding_response(data)
    assert answer.transaction_id == txid
    # behind the NAT: its public address and the port it mapped this flow to
    assert answer.mapped[0] == net.na.public_addr4 != net.na.addr4
    assert answer.mapped == mapping(net.na, node.sock, (net.relay.addr4, main))
    # IPv6 on the same (dual-stack) port, from a public host
    six = net.pub.host.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    six.settimeout(3)
    six.bind((net.pub.addr6, 0))
    txid6 = stun.new_transaction_id()
    six.sendto(stun.binding_request(txid6), (net.relay.addr6, main))
    data6, _ = six.recvfrom(2048)
    got6 = stun.parse_binding_response(data6)
    assert got6.transaction_id == txid6
    assert got6.mapped == (net.pub.addr6, six.getsockname()[1])
    six.close()
    # anything else on the main port: dropped, unanswered
    success = stun.binding_success(txid, ("198.18.0.1", 1))
    for junk in (b"hello", wg(1, 148), wg(4, 64), success, stun.binding_request(txid)[:-4]):
        node.send(junk, main)
    running.wait_stats(stun_answered=2, drop_main_port=5)
    node.silent()
    stats = running.stats()
    assert stats["forwarded_packets"] == 0 and stats["errors"] == 0


def _exchange(
    sender: NodeSocket, receiver: NodeSocket, send_port: int, from_port: int, data: bytes
) -> None:
    sender.send(data, send_port)
    got, source = receiver.recv()
    assert got == data
    assert source == (receiver.relay4, from_port)


@needs_lab
def test_forwarding_between_nodes_behind_nats(
    net: Net, relay: Relays, node_socket: NodeSockets
) -> None:
    relay4 = net.relay.addr4
    a, b = node_socket(net.na), node_socket(net.nb)
    running = relay(members_of(a, b))
    p_ab, p_ba = running.call(lambda: running.relay.ensure_pair(a.key, b.key))
    assert p_ab != p_ba and running.relay.port not in (p_ab, p_ba)
    assert running.call(lambda: running.relay.ensure_pair(a.key, b.key)) == (p_ab, p_ba)
    assert running.call(lambda: running.relay.ensure_pair(b.key, a.key)) == (p_ba, p_ab)
    assert running.call(lambda: running.relay.pair_port(a.key, b.key)) == p_ab
    assert running.call(lambda: running.relay.pair_port(b.key, a.key)) == p_ba
    # nothing flows before both ends bound their ports
    a.send(wg(1, 148), p_ab)
    running.wait_stats(drop_unbound_source=1)
    # binds: each node learns its mapping toward its own pair port
    mapped_a = a.bound(p_ab, int(time.time() * 1000))
    assert mapped_a == mapping(net.na, a.sock, (relay4, p_ab))
    assert mapped_a[0] == net.na.public_addr4
    a.send(wg(1, 148), p_ab)
    running.wait_stats(drop_partner_unbound=1)
    mapped_b = b.bound(p_ba, int(time.time() * 1000))
    assert mapped_b == mapping(net.nb, b.sock, (relay4, p_ba))
    # the symmetric NAT maps b's flow to the main port elsewhere: only b's own
    # bind to p_ba can tell the relay where b is for p_ba
    txid = stun.new_transaction_id()
    b.send(stun.binding_request(txid), running.relay.port)
    seen_by_main = stun.parse_binding_response(b.recv()[0]).mapped
    assert seen_by_main[0] == mapped_b[0] and seen_by_main[1] != mapped_b[1]
    # the handshake and data, byte for byte, both ways
    sent = 0
    for data in (wg(1, 148), wg(3, 64), wg(4, 32), wg(4, 1452)):
        _exchange(a, b, p_ab, p_ba, data)
        sent += len(data)
    back = 0
    for data in (wg(2, 92), wg(3, 64), wg(4, 32), wg(4, 96), wg(4, 1452)):
        _exchange(b, a, p_ba, p_ab, data)
        back += len(data)
    stats = running.wait_stats(
        forwarded_packets=9, forwarded_bytes=sent + back, binds_accepted=2, binds_refused=0
    )
    assert stats["pairs"] == 1 and stats["errors"] == 0
    assert running.call(lambda: running.relay.pair_stats(a.key, b.key)) == (4, sent)
    assert running.call(lambda: running.relay.pair_stats(b.key, a.key)) == (5, back)
    # a large transport message (IP fragments on the way) passes whole
    big = wg(4, 8192)
    _exchange(a, b, p_ab, p_ba, big)
    # a refreshing bind from the same socket keeps everything as it was
    assert a.bound(p_ab, int(time.time() * 1000) + 1) == mapped_a
    _exchange(b, a, p_ba, p_ab, wg(4, 48))


@needs_lab
def test_refused_binds_and_dropped_datagrams(
    net: Net, relay: Relays, node_socket: NodeSockets
) -> None:
    relay4 = net.relay.addr4
    clock = Clock()
    a, b = node_socket(net.na), node_socket(net.nb)
    c = node_socket(net.pub)  # known to the relay, but no member
    a2 = node_socket(net.na, key=a.key)  # a second socket of a's host, a's key
    a2.control = a.control
    running = relay(members_of(a, b), clock=clock)
    server = running.relay
    p_ab, p_ba = running.call(lambda: server.ensure_pair(a.key, b.key))
    p_ac, p_ca = running.call(lambda: server.ensure_pair(a.key, c.key))
    first = a.bind(p_ab, T0 + 1)
    a.recv()
    b.bound(p_ba, T0 + 1)
    _exchange(b, a, p_ba, p_ab, wg(4, 32))
    refused = 0
    # from a2 (a new mapping) to p_ab, each must leave the bound address alone:
    a2.bind(p_ab, T0 + 10, control=SigningKey.generate())  # not a's control key
    a2.send(first, p_ab)  # a replay of a's accepted bind
    a2.bind(p_ab, T0 + 1)  # a new one, but no newer than the last taken
    a2.bind(p_ab, T0 + auth.MAX_SKEW_MS + 1)  # too far ahead of the relay's clock
    a2.bind(p_ab, T0 + 11, sign_for=p_ac)  # a's, but signed for another port
    a2.bind(p_ab, T0 + 12, key=b.key, control=b.control)  # b's: b does not own p_ab
    refused += 6
    # a bind for a port a does not own, signed by a for that very port
    a2.bind(p_ba, T0 + 13)
    refused += 1
    # stale, on a port nobody bound yet
    a2.bind(p_ac, T0 - auth.MAX_SKEW_MS - 1)
    refused += 1
    # the owner of p_ca is no member
    c.bind(p_ca, T0 + 1)
    refused += 1
    running.wait_stats(binds_refused=refused, binds_accepted=2, binds_limited=0)
    a2.silent()
    c.silent()
    # a is still bound where it was: b's packets go to a's first socket only
    _exchange(b, a, p_ba, p_ab, wg(4, 64))
    a2.silent()
    # from anywhere but the bound address nothing is forwarded
    a2.send(wg(4, 64), p_ab)
    c.send(wg(1, 148), p_ca)
    running.wait_stats(drop_unbound_source=2)
    b.silent()
    # junk from the bound address is not forwarded either
    junk = [
        b"hello",
        wg(1, 147),
        wg(5, 148),
        wg(4, 31),
        b"\x01\x00\x00\x01" + bytes(144),
        stun.binding_request(stun.new_transaction_id()),  # plain STUN, no bind
        first[:-8],  # a bind cut short
    ]
    for data in junk:
        a.send(data, p_ab)
    running.wait_stats(drop_not_wireguard=len(junk))
    b.silent()
    # a's port toward c is bound, c's toward a is not: nothing to send to
    a.bound(p_ac, T0 + 20)
    a.send(wg(4, 32), p_ac)
    running.wait_stats(drop_partner_unbound=1, binds_accepted=3)
    # a roams: a fresh bind from a2 moves p_ab, and b's packets follow
    moved = a2.bound(p_ab, T0 + 30)
    assert moved == mapping(net.na, a2.sock, (relay4, p_ab))
    _exchange(b, a2, p_ba, p_ab, wg(4, 80))
    a.silent()
    _exchange(a2, b, p_ab, p_ba, wg(4, 80))
    # the wall clock moves on: a bind at the edge of the skew is still fresh
    clock.now = T0 + 2 * auth.MAX_SKEW_MS
    a2.bound(p_ab, T0 + auth.MAX_SKEW_MS)
    stats = running.stats()
    assert stats["binds_refused"] == refused and stats["errors"] == 0
    assert stats["forwarded_packets"] == 4


@needs_lab
def test_bind_flood_is_rate_limited(net: Net, relay: Relays, node_socket: NodeSockets) -> None:
    a, b = node_socket(net.na), node_socket(net.nb)
    clock = Clock()
    running = relay(members_of(a, b), clock=clock)
    p_ab, _ = running.call(lambda: running.relay.ensure_pair(a.key, b.key))
    # binds that fail the cheap checks (not the owner's) cost no token
    for i in range(1, 31):
        b.bind(p_ab, T0 + i)
    running.wait_stats(binds_refused=30, binds_limited=0)
    forger = SigningKey.generate()
    flood = [
        wire.bind_request(stun.new_transaction_id(), a.key, forger, p_ab, T0 + i)
        for i in range(1, 61)
    ]
    for request in flood:
        b.send(request, p_ab)  # from anywhere: the relay cannot tell before verifying
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        stats = running.stats()
        if stats["binds_refused"] + stats["binds_limited"] == 30 + len(flood):
            break
        time.sleep(0.01)
    # at most the burst plus what refilled while the flood went by reached Ed25519
    assert stats["binds_refused"] + stats["binds_limited"] == 30 + len(flood), stats
    assert stats["binds_limited"] >= 20, stats
    assert stats["binds_accepted"] == 0
    b.silent()


@needs_lab
def test_bind_flood_does_not_keep_the_owner_from_refreshing(
    net: Net, relay: Relays, node_socket: NodeSockets
) -> None:
    a, b = node_socket(net.na), node_socket(net.nb)
    clock = Clock()
    running = relay(members_of(a, b), clock=clock)
    p_ab, _ = running.call(lambda: running.relay.ensure_pair(a.key, b.key))
    a.bound(p_ab, T0 + 1)
    forger = SigningKey.generate()
    for i in range(2, 62):  # forged binds for a's port, from elsewhere, newer each
        b.send(wire.bind_request(stun.new_transaction_id(), a.key, forger, p_ab, T0 + i), p_ab)
    stats = running.wait_stats(binds_accepted=1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and stats["binds_limited"] < 30:
        time.sleep(0.01)
        stats = running.stats()
    assert stats["binds_limited"] >= 30, stats  # the shared bucket is empty
    a.bound(p_ab, T0 + 100)  # yet a's refresh from its bound address is taken
    assert running.stats()["binds_accepted"] == 2


@needs_lab
def test_restart_restores_ports_and_bound_addresses(
    net: Net, tmp_path: Path, relay: Relays, node_socket: NodeSockets
) -> None:
    db = tmp_path / "mesh.db"
    a, b = node_socket(net.na), node_socket(net.nb)
    members = members_of(a, b)
    clock = Clock()
    running = relay(members, db=db, clock=clock)
    main = running.relay.port
    p_ab, p_ba = running.call(lambda: running.relay.ensure_pair(a.key, b.key))
    first = a.bind(p_ab, T0 + 1)
    a.recv()
    b.bound(p_ba, T0 + 1)
    _exchange(a, b, p_ab, p_ba, wg(1, 148))
    running.stop()
    assert db.stat().st_mode & 0o777 == 0o600
    # a new relay on the same file, in this process with its sockets in the namespace
    running = relay(members, db=db, port=main, clock=clock, factory=True)
    server = running.relay
    assert server.port == main
    assert running.call(lambda: server.pair_port(a.key, b.key)) == p_ab
    assert running.call(lambda: server.ensure_pair(b.key, a.key)) == (p_ba, p_ab)
    # no bind needed: both directions flow at once
    _exchange(b, a, p_ba, p_ab, wg(2, 92))
    _exchange(a, b, p_ab, p_ba, wg(4, 32))
    # the last bind time survived too: the old bind cannot be replayed
    b.send(first, p_ab)
    stats = running.wait_stats(binds_refused=1, forwarded_packets=2)
    assert stats["binds_accepted"] == 0 and stats["pairs"] == 1
    b.silent()
    running.stop()
    # p_ab is taken by someone else now: the next relay moves that port only
    with net.relay.host.socket(socket.AF_INET6, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("::", p_ab))
        running = relay(members, db=db, port=main, clock=clock)
        server = running.relay
        new_ab = running.call(lambda: server.pair_port(a.key, b.key))
        assert new_ab is not None and new_ab != p_ab
        assert running.call(lambda: server.pair_port(b.key, a.key)) == p_ba
        with contextlib.closing(sqlite3.connect(db)) as conn:
            rows = conn.execute("SELECT port FROM relay_pairs").fetchall()
        assert sorted(r[0] for r in rows) == sorted([new_ab, p_ba])
        # b's side still stands; a must bind its new port before anything reaches it
        b.send(wg(4, 32), p_ba)
        running.wait_stats(drop_partner_unbound=1)
        a.bound(new_ab, T0 + 2)
        _exchange(b, a, p_ba, new_ab, wg(4, 32))
        _exchange(a, b, new_ab, p_ba, wg(4, 32))


@needs_lab
def test_port_range_and_remove_node(
    net: Net, tmp_path: Path, relay: Relays, node_socket: NodeSockets
) -> None:
    relay4 = net.relay.addr4
    db = tmp_path / "r.db"
    a, b = node_socket(net.na), node_socket(net.nb)
    c, d = node_socket(net.pub), node_socket(net.pub)
    low, high = 42000, 42005
    members = members_of(a, b, c, d)
    # an IPv4 literal this time, not "::"
    running = relay(members, db=db, port=3478, port_range=(low, high), address=relay4)
    server = running.relay
    assert server.port == 3478
    with pytest.raises(RuntimeError):  # once only
        running.run(server.start())
    pairs = [(a, b), (a, c), (b, c)]
    ports = [running.call(partial(server.ensure_pair, x.key, y.key)) for x, y in pairs]
    numbers = {n for pair in ports for n in pair}
    assert numbers == set(range(low, high + 1))
    with pytest.raises(OSError):  # the range is full
        running.call(lambda: server.ensure_pair(a.key, d.key))
    assert running.stats()["pairs"] == 3
    p_ab, p_ba = ports[0]
    a.bound(p_ab, int(time.time() * 1000))
    b.bound(p_ba, int(time.time() * 1000))
    _exchange(a, b, p_ab, p_ba, wg(4, 32))

    running.call(lambda: server.remove_node(a.key))
    for x, y in ((a, b), (b, a), (a, c), (c, a)):
        assert running.call(partial(server.pair_port, x.key, y.key)) is None
    assert running.call(lambda: server.pair_port(b.key, c.key)) == ports[2][0]
    assert running.stats()["pairs"] == 1
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT sender, receiver FROM relay_pairs").fetchall()
    assert sorted(rows) == sorted([(b.key, c.key), (c.key, b.key)])
    # a's four ports are closed: anyone may bind them, nothing answers on them
    freed = set(ports[0]) | set(ports[1])
    for number in freed:
        probe = net.relay.host.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::", number))
        probe.close()
    b.send(wg(4, 32), p_ba)
    b.silent()
    a.silent()
    # and they serve new pairs
    assert set(running.call(lambda: server.ensure_pair(a.key, d.key))) <= freed
    running.call(lambda: server.remove_node(os.urandom(32)))  # unknown: nothing happens
    assert running.stats()["pairs"] == 2
    running.stop()
    with pytest.raises(RuntimeError):  # closed
        server.ensure_pair(a.key, b.key)
    server.close()
