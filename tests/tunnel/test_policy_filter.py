"""The access policy enforced by a real tunnel's receiver, over IPv4 and IPv6.

A wireguard-go node sends to a pywg `Tunnel` (run in this process, in its
own lab namespace) whose inbound rules come from a policy compiled for it:
the allowed TCP and UDP ports and ICMP pass, other ports are dropped at the
receiver, and the receiver's own connections and pings get their replies
through rules that never allow them. Then the policy changes under a running
connection: the connection the new rules no longer allow stops, what they
now allow connects at once. On the native plane and the pure-Python one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from pywg.asyncio import Tunnel
from pywg.endpoint import parse_endpoint
from pywg.keys import PrivateKey, PublicKey
from pywg.lab import Host, Lab
from pywg.lab.wireguard import WIREGUARD_GO, WgNode, connect, start_node
from pywg.policy import Member, compile_inbound, parse_policy

PREFIX = "pwpf"
pytestmark = pytest.mark.needs_lab("wireguard-go", "ping")
T = TypeVar("T")

POLICY = """{
  "rules": [
    // the sender may reach SSH-like TCP, one UDP port and ping the receiver
    {"from": ["sender"], "to": ["receiver:5001/tcp", "receiver:5002/udp", "receiver:*/icmp"]},
  ],
}"""
CHANGED = '{"rules": [{"from": ["sender"], "to": ["receiver:5003/tcp"]}]}'


class InProcessNode:
    """A pywg Tunnel in a lab host, on an event loop of its own thread."""

    def __init__(self, lab: Lab, host: Host, *, net: int, index: int, native: bool) -> None:
        self.host, self.native, self.port = host, native, 51820
        self.ifname = lab.ifname("pf")
        self.key = PrivateKey.generate()
        self.addr4, self.addr6 = f"198.19.{net}.{index}", f"fd19::{net}:{index}"
        self.tunnel: Tunnel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: host.call(self._run), daemon=True)
        self._thread.start()
        assert self._ready.wait(15), "the tunnel did not start"
        host.addr(self.ifname, f"{self.addr4}/24")
        host.addr(self.ifname, f"{self.addr6}/112")
        host.link_up(self.ifname, mtu=1420)
        host.wait_ipv6_ready(self.ifname)

    def _run(self) -> bool:
        asyncio.run(self._main())
        return True

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with Tunnel(self.ifname, private_key=self.key, listen_port=self.port,
                          native=self.native) as tunnel:  # fmt: skip
            self.tunnel = tunnel
            self._ready.set()
            await self._stop.wait()

    def do(self, function: Callable[[Tunnel], T]) -> T:
        """`function(tunnel)` on the tunnel's loop; its result."""
        assert self._loop is not None and self.tunnel is not None
        tunnel = self.tunnel
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(function(tunnel))
            except BaseException as exc:
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(call)
        return done.result(10)

    @property
    def public_key(self) -> PublicKey:
        return self.key.public_key

    def host_routes(self) -> list[str]:
        return [f"{self.addr4}/32", f"{self.addr6}/128"]

    def add_peer(self, other: Any, *, endpoint: str | None = None, **_: Any) -> None:
        where = parse_endpoint(endpoint) if endpoint is not None else None
        self.do(lambda t: t.add_peer(other.public_key, other.host_routes(), where))

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def members(sender: WgNode, receiver: InProcessNode) -> list[Member]:
    def member(name: str, node: WgNode | InProcessNode) -> Member:
        nets = (ipaddress.ip_network(node.addr4), ipaddress.ip_network(node.addr6))
        return Member(name, nets)

    return [member("sender", sender), member("receiver", receiver)]


def family_of(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def listener(host: Host, address: str, port: int, kind: int) -> socket.socket:
    sock = host.socket(family_of(address), kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.settimeout(2)
    if kind == socket.SOCK_STREAM:
        sock.listen()
    return sock


def tcp_connect(client: Host, server: Host, address: str, port: int) -> tuple[Any, Any] | None:
    """A connection client -> server (both ends) that carried a byte each way, or None."""
    with listener(server, address, port, socket.SOCK_STREAM) as srv:
        cli = client.socket(family_of(address), socket.SOCK_STREAM)
        cli.settimeout(1.0)
        try:
            cli.connect((address, port))
            conn, _ = srv.accept()
            conn.settimeout(1.5)
            cli.sendall(b"q")
            assert conn.recv(1) == b"q"
            conn.sendall(b"a")
            assert cli.recv(1) == b"a"
        except OSError:
            cli.close()
            return None
        return cli, conn


def tcp_ok(client: Host, server: Host, address: str, port: int) -> bool:
    ends = tcp_connect(client, server, address, port)
    for end in ends or ():
        end.close()
    return ends is not None


def udp_ok(client: Host, server: Host, address: str, port: int) -> bool:
    with (
        listener(server, address, port, socket.SOCK_DGRAM) as srv,
        client.socket(family_of(address), socket.SOCK_DGRAM) as cli,
    ):
        cli.settimeout(1.0)
        cli.sendto(b"u", (address, port))
        try:
            data, back = srv.recvfrom(16)
            srv.sendto(data, back)
            return cli.recv(16) == b"u"
        except OSError:
            return False


@pytest.mark.parametrize("native", [True, False], ids=["native", "pure"])
@pytest.mark.time_limit(60)
def test_the_receiver_enforces_its_inbound_rules(lab: Lab, native: bool) -> None:
    s, r = lab.host("s"), lab.host("r")
    link = lab.link(s, r)
    sender = start_node(lab, s, WIREGUARD_GO, net=1, index=1)
    receiver = InProcessNode(lab, r, net=1, index=2, native=native)
    try:
        connect(sender, receiver, link)  # type: ignore[type-var]
        assert s.wait_ping(receiver.addr4)  # no policy yet: everything passes
        assert tcp_ok(s, r, receiver.addr4, 5003)
        team = members(sender, receiver)
        rules = compile_inbound(parse_policy(POLICY), team, "receiver")
        receiver.do(lambda t: t.set_inbound_rules(rules))
        for mine, theirs in ((receiver.addr4, sender.addr4), (receiver.addr6, sender.addr6)):
            assert tcp_ok(s, r, mine, 5001), mine
            assert udp_ok(s, r, mine, 5002), mine
            assert s.ping(mine, count=1, timeout=3), mine
            assert not tcp_ok(s, r, mine, 5003), mine
            assert not udp_ok(s, r, mine, 5004), mine
            # replies to what the receiver opens pass, though no rule lets them in
            assert tcp_ok(r, s, theirs, 6000), theirs
            assert udp_ok(r, s, theirs, 6001), theirs
            assert r.ping(theirs, count=1, timeout=3), theirs
        drops = receiver.do(lambda t: t.filter_drops())
        assert drops["policy_denied"] >= 4, drops
        if native:
            assert receiver.do(lambda t: t.plane_stats["rx_filtered"]) >= 4

        # a live change: the open 5001 connection stops, 5003 connects at once
        ends = tcp_connect(s, r, receiver.addr4, 5001)
        assert ends is not None
        cli, conn = ends
        changed = compile_inbound(parse_policy(CHANGED), team, "receiver")
        receiver.do(lambda t: t.set_inbound_rules(changed))
        assert tcp_ok(s, r, receiver.addr4, 5003)
        cli.sendall(b"x")
        with pytest.raises(TimeoutError):
            conn.recv(1)  # dropped at the receiver
        cli.close()
        conn.close()
        assert not s.ping(receiver.addr6, count=1, timeout=1)
        assert r.ping(sender.addr6, count=1, timeout=3)
        receiver.do(lambda t: t.set_inbound_rules(None))  # no policy: all passes again
        assert s.ping(receiver.addr4, count=1, timeout=3)
    finally:
        receiver.close()
