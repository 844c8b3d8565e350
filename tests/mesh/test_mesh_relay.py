"""The mesh relay (pywg.mesh.relay): STUN on the main port, binds, forwarding, restarts.

The first tests need no network. The others build one namespace lab for the
module (pywg.lab: a core router, the relay on a public host, node "na" behind
an endpoint-independent NAT, node "nb" behind a symmetric one, and a public
host "pub"), run the relay's event loop on a thread inside the relay's
namespace (or, once, in this process with `socket_factory=Host.socket`) and
play the nodes with plain UDP sockets made in their hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from nacl.signing import SigningKey

from pywg import stun
from pywg.lab import Host, Internet, Lab, Site
from pywg.mesh import auth, wire
from pywg.mesh.relay import COUNTERS, RelayServer, _open_db, _TokenBucket, is_wireguard

T = TypeVar("T")

needs_lab = pytest.mark.needs_lab("nft")  # the nodes are behind nftables NATs

T0 = 1_700_000_000_000  # the relay's (fake) clock, ms since the epoch
SILENCE = 0.25  # seconds to wait for an answer that must not come


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


class Net:
    def __init__(self, lab: Lab) -> None:
        internet = Internet(lab)
        self.lab = lab
        self.relay = internet.public("rly")
        self.pub = internet.public("pub")
        self.na = internet.behind_nat("na", "endpoint-independent")
        self.nb = internet.behind_nat("nb", "symmetric")


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    with Lab("pwrly") as lab:
        yield Net(lab)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


class Running:
    """A RelayServer on its own event loop thread (in `host`'s namespace unless `factory`)."""

    def __init__(
        self,
        host: Host,
        db: Path,
        members: Callable[[bytes], bytes | None],
        *,
        port: int = 0,
        port_range: tuple[int, int] | None = None,
        clock: Callable[[], int] | None = None,
        factory: bool = False,
        address: str = "::",
    ) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        if factory:  # the loop here, only the sockets in the namespace
            self.thread = threading.Thread(target=serve, daemon=True)
        else:  # the loop's thread in the namespace: plain socket.socket() lands there
            self.thread = threading.Thread(target=lambda: host.call(serve), daemon=True)
        self.thread.start()
        assert ready.wait(10)
        kwargs: dict[str, Any] = {"port_range": port_range}
        if clock is not None:
            kwargs["clock_ms"] = clock
        if factory:
            kwargs["socket_factory"] = host.socket
        self.relay = RelayServer(str(db), address, port, members=members, **kwargs)
        try:
            self.run(self.relay.start())
        except BaseException:
            self.stop()
            raise

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def call(self, function: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return function()

        return self.run(wrapper())

    def stats(self) -> dict[str, int]:
        return self.call(self.relay.stats)

    def wait_stats(self, **want: int) -> dict[str, int]:
        deadline = time.monotonic() + 5
        while True:
            stats = self.stats()
            if all(stats[k] == v for k, v in want.items()) or time.monotonic() > deadline:
                assert {k: stats[k] for k in want} == want, stats
                return stats
            time.sleep(0.01)

    def stop(self) -> None:
        if self.loop.is_running():
            self.call(self.relay.close)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Node:
    """A mesh node's WireGuard socket, on its lab host, talking to the relay at `relay4`."""

    def __init__(self, site: Site, relay4: str, key: bytes | None = None) -> None:
        self.site = site
        self.relay4 = relay4
        self.key = key if key is not None else os.urandom(32)
        self.control = SigningKey.generate()
        self.sock = site.host.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((site.addr4, 0))
        self.sock.settimeout(3)

    def bind(
        self,
        port: int,
        time_ms: int,
        *,
        sign_for: int | None = None,
        control: SigningKey | None = None,
        key: bytes | None = None,
    ) -> bytes:
        """Send a bind for `port` (signed as told); the request sent."""
        request = wire.bind_request(
            stun.new_transaction_id(),
            key if key is not None else self.key,
            control if control is not None else self.control,
            sign_for if sign_for is not None else port,
            time_ms,
        )
        self.send(request, port)
        return request

    def bound(self, port: int, time_ms: int) -> tuple[str, int]:
        """Bind `port` and wait for its answer: the mapping the relay saw."""
        request = self.bind(port, time_ms)
        data, source = self.sock.recvfrom(2048)
        assert source == (self.relay4, port)
        answer = stun.parse_binding_response(data)
        assert answer.transaction_id == request[8:20]
        return answer.mapped

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, (self.relay4, port))

    def recv(self) -> tuple[bytes, tuple[str, int]]:
        data, source = self.sock.recvfrom(70000)
        return data, source

    def silent(self) -> None:
        """Nothing arrives within SILENCE seconds."""
        self.sock.settimeout(SILENCE)
        try:
            with pytest.raises(TimeoutError):
                data, source = self.sock.recvfrom(70000)
                print("unexpected datagram of", len(data), "bytes from", source)
        finally:
            self.sock.settimeout(3)

    def close(self) -> None:
        self.sock.close()


def members_of(*nodes: Node) -> Callable[[bytes], bytes | None]:
    table = {n.key: n.control.verify_key.encode() for n in nodes}
    return table.get


def mapping(site: Site, sock: socket.socket, remote: tuple[str, int]) -> tuple[str, int]:
    """The NAT's outside address for the flow from `sock` to `remote`."""
    assert site.nat is not None
    flows = [m for m in site.nat.mappings() if m.inside == sock.getsockname()]
    found = [m.outside for m in flows if m.remote == remote]
    assert len(found) == 1, flows
    return found[0]


@needs_lab
def test_main_port_is_a_stun_server(net: Net, tmp_path: Path) -> None:
    running = Running(net.relay.host, tmp_path / "r.db", no_members)
    try:
        main = running.relay.port
        assert main > 0
        node = Node(net.na, net.relay.addr4)
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
        node.close()
    finally:
        running.stop()


def _exchange(sender: Node, receiver: Node, send_port: int, from_port: int, data: bytes) -> None:
    sender.send(data, send_port)
    got, source = receiver.recv()
    assert got == data
    assert source == (receiver.relay4, from_port)


@needs_lab
def test_forwarding_between_nodes_behind_nats(net: Net, tmp_path: Path) -> None:
    relay4 = net.relay.addr4
    a, b = Node(net.na, relay4), Node(net.nb, relay4)
    running = Running(net.relay.host, tmp_path / "r.db", members_of(a, b))
    try:
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
    finally:
        running.stop()
        a.close()
        b.close()


@needs_lab
def test_refused_binds_and_dropped_datagrams(net: Net, tmp_path: Path) -> None:
    relay4 = net.relay.addr4
    clock = Clock()
    a, b = Node(net.na, relay4), Node(net.nb, relay4)
    c = Node(net.pub, net.relay.addr4)  # known to the relay, but no member
    a2 = Node(net.na, relay4, key=a.key)  # a second socket of a's host, a's key
    a2.control = a.control
    running = Running(net.relay.host, tmp_path / "r.db", members_of(a, b), clock=clock)
    relay = running.relay
    try:
        p_ab, p_ba = running.call(lambda: relay.ensure_pair(a.key, b.key))
        p_ac, p_ca = running.call(lambda: relay.ensure_pair(a.key, c.key))
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
    finally:
        running.stop()
        for node in (a, a2, b, c):
            node.close()


@needs_lab
def test_bind_flood_is_rate_limited(net: Net, tmp_path: Path) -> None:
    relay4 = net.relay.addr4
    a, b = Node(net.na, relay4), Node(net.nb, relay4)
    clock = Clock()
    running = Running(net.relay.host, tmp_path / "r.db", members_of(a, b), clock=clock)
    try:
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
    finally:
        running.stop()
        a.close()
        b.close()


@needs_lab
def test_bind_flood_does_not_keep_the_owner_from_refreshing(net: Net, tmp_path: Path) -> None:
    relay4 = net.relay.addr4
    a, b = Node(net.na, relay4), Node(net.nb, relay4)
    clock = Clock()
    running = Running(net.relay.host, tmp_path / "r.db", members_of(a, b), clock=clock)
    try:
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
    finally:
        running.stop()
        a.close()
        b.close()


@needs_lab
def test_restart_restores_ports_and_bound_addresses(net: Net, tmp_path: Path) -> None:
    relay4 = net.relay.addr4
    db = tmp_path / "mesh.db"
    a, b = Node(net.na, relay4), Node(net.nb, relay4)
    members = members_of(a, b)
    clock = Clock()
    running = Running(net.relay.host, db, members, clock=clock)
    try:
        main = running.relay.port
        p_ab, p_ba = running.call(lambda: running.relay.ensure_pair(a.key, b.key))
        first = a.bind(p_ab, T0 + 1)
        a.recv()
        b.bound(p_ba, T0 + 1)
        _exchange(a, b, p_ab, p_ba, wg(1, 148))
    finally:
        running.stop()
    assert db.stat().st_mode & 0o777 == 0o600
    # a new relay on the same file, in this process with its sockets in the namespace
    running = Running(net.relay.host, db, members, port=main, clock=clock, factory=True)
    try:
        relay = running.relay
        assert relay.port == main
        assert running.call(lambda: relay.pair_port(a.key, b.key)) == p_ab
        assert running.call(lambda: relay.ensure_pair(b.key, a.key)) == (p_ba, p_ab)
        # no bind needed: both directions flow at once
        _exchange(b, a, p_ba, p_ab, wg(2, 92))
        _exchange(a, b, p_ab, p_ba, wg(4, 32))
        # the last bind time survived too: the old bind cannot be replayed
        b.send(first, p_ab)
        stats = running.wait_stats(binds_refused=1, forwarded_packets=2)
        assert stats["binds_accepted"] == 0 and stats["pairs"] == 1
        b.silent()
    finally:
        running.stop()
    # p_ab is taken by someone else now: the next relay moves that port only
    squatter = net.relay.host.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    squatter.bind(("::", p_ab))
    running = Running(net.relay.host, db, members, port=main, clock=clock)
    try:
        relay = running.relay
        new_ab = running.call(lambda: relay.pair_port(a.key, b.key))
        assert new_ab is not None and new_ab != p_ab
        assert running.call(lambda: relay.pair_port(b.key, a.key)) == p_ba
        with contextlib.closing(sqlite3.connect(db)) as conn:
            rows = conn.execute("SELECT port FROM relay_pairs").fetchall()
        assert sorted(r[0] for r in rows) == sorted([new_ab, p_ba])
        # b's side still stands; a must bind its new port before anything reaches it
        b.send(wg(4, 32), p_ba)
        running.wait_stats(drop_partner_unbound=1)
        a.bound(new_ab, T0 + 2)
        _exchange(b, a, p_ba, new_ab, wg(4, 32))
        _exchange(a, b, new_ab, p_ba, wg(4, 32))
    finally:
        running.stop()
        squatter.close()
        a.close()
        b.close()


@needs_lab
def test_port_range_and_remove_node(net: Net, tmp_path: Path) -> None:
    relay4 = net.relay.addr4
    db = tmp_path / "r.db"
    a, b = Node(net.na, relay4), Node(net.nb, relay4)
    c, d = Node(net.pub, relay4), Node(net.pub, relay4)
    low, high = 42000, 42005
    members = members_of(a, b, c, d)
    # an IPv4 literal this time, not "::"
    running = Running(
        net.relay.host, db, members, port=3478, port_range=(low, high), address=relay4
    )
    relay = running.relay
    try:
        assert relay.port == 3478
        with pytest.raises(RuntimeError):  # once only
            running.run(relay.start())
        pairs = [(a, b), (a, c), (b, c)]
        ports = [running.call(partial(relay.ensure_pair, x.key, y.key)) for x, y in pairs]
        numbers = {n for pair in ports for n in pair}
        assert numbers == set(range(low, high + 1))
        with pytest.raises(OSError):  # the range is full
            running.call(lambda: relay.ensure_pair(a.key, d.key))
        assert running.stats()["pairs"] == 3
        p_ab, p_ba = ports[0]
        a.bound(p_ab, int(time.time() * 1000))
        b.bound(p_ba, int(time.time() * 1000))
        _exchange(a, b, p_ab, p_ba, wg(4, 32))

        running.call(lambda: relay.remove_node(a.key))
        for x, y in ((a, b), (b, a), (a, c), (c, a)):
            assert running.call(partial(relay.pair_port, x.key, y.key)) is None
        assert running.call(lambda: relay.pair_port(b.key, c.key)) == ports[2][0]
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
        assert set(running.call(lambda: relay.ensure_pair(a.key, d.key))) <= freed
        running.call(lambda: relay.remove_node(os.urandom(32)))  # unknown: nothing happens
        assert running.stats()["pairs"] == 2
    finally:
        running.stop()
        with pytest.raises(RuntimeError):  # closed
            relay.ensure_pair(a.key, b.key)
        relay.close()
        for node in (a, b, c, d):
            node.close()
