"""pywgd against Debian's wireguard-go, in network namespaces.

Every test builds its own lab (prefix "pwi"): hosts in namespaces, veth links
on the underlay (198.18.0.0/16, fd18::/16), one daemon per host configured
with `wg`, tunnel addresses in 198.19.0.0/16 and fd19::/16. Nothing touches
the root namespace; every wait has a deadline and every test a time limit
(SIGALRM), after which the lab is torn down all the same.

Throughputs are printed (run with -s to see them) for the README.
Needs root, iproute2, wireguard-go and wg; skipped otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from helpers.time_bounds import wait_for
from helpers.wg_nodes import (
    IMPLS,
    PORT,
    Node,
    connect_pair,
    handshake_time,
    make_pair,
    start_node,
)
from pywg import _fast
from pywg.endpoint import format_endpoint
from pywg.keys import PresharedKey
from pywg.lab import Lab, Link, PacedStream, tcp_transfer

PREFIX = "pwi"
TEST_TIME_LIMIT = 90.0  # seconds for any one test here, teardown included
MB = 1_000_000

pytestmark = [
    pytest.mark.needs_lab("wireguard-go", "wg", "ping", "pywgd"),
    pytest.mark.time_limit(TEST_TIME_LIMIT),
]


# -- bounds ---------------------------------------------------------------------------


def wait_until(what: str, check: Callable[[], bool], deadline: float, step: float = 0.1) -> None:
    """Poll `check` until true; fail the test after `deadline` seconds."""
    if not wait_for(check, deadline, step):
        pytest.fail(f"timed out after {deadline:g} s waiting for {what}")


# -- checks -------------------------------------------------------------------------


def assert_fresh_handshake(node: Node, other: Node) -> None:
    stamp = handshake_time(node, other)
    assert stamp != 0, f"{node.impl} has no handshake with {other.impl}"
    assert abs(time.time() - stamp) < 60, f"{node.impl}: odd latest_handshake {stamp}"


# -- 1. handshake, either side initiating ----------------------------------------------------


@pytest.mark.parametrize("initiator_impl", IMPLS)
def test_handshake_either_side_initiates(initiator_impl: str) -> None:
    with Lab(PREFIX) as lab:
        pair = make_pair(lab, family=4)
        initiator = pair.node(initiator_impl)
        responder = pair.other(initiator)
        # only the initiator knows where the responder is
        responder.add_peer(initiator)
        initiator.add_peer(responder, endpoint=pair.endpoint(responder))
        before = responder.peer_dump(initiator)
        assert before["endpoint"] == "(none)"
        assert before["latest_handshake"] == "0"

        assert initiator.host.wait_ping(responder.addr4, deadline=10), "first ping unanswered"
        assert responder.host.ping(initiator.addr4, count=2), "ping back unanswered"

        for node in (initiator, responder):
            assert_fresh_handshake(node, pair.other(node))
            fields = node.peer_dump(pair.other(node))
            assert int(fields["rx_bytes"]) > 0 and int(fields["tx_bytes"]) > 0, fields
        # the initiator keeps what it was told, the responder learned the initiator's address
        assert initiator.peer_dump(responder)["endpoint"] == pair.endpoint(responder)
        assert responder.peer_dump(initiator)["endpoint"] == pair.endpoint(initiator)


# -- 2. ping over IPv4 and IPv6, on either underlay ------------------------------------------


@pytest.mark.parametrize("family", [4, 6], ids=["underlay-v4", "underlay-v6"])
def test_ping_inside_tunnel(family: int) -> None:
    with Lab(PREFIX) as lab:
        pair = make_pair(lab, family=family)
        connect_pair(pair)
        pw, go = pair.pw, pair.go
        assert pw.host.wait_ping(go.addr4, deadline=10)
        for src, dst in ((pw, go), (go, pw)):
            assert src.host.ping(dst.addr4, count=3), f"{src.impl} -> {dst.addr4}"
            assert src.host.ping(dst.addr6, count=3), f"{src.impl} -> {dst.addr6}"
        for node in (pw, go):
            assert node.peer_dump(pair.other(node))["endpoint"] == pair.endpoint(pair.other(node))
            assert_fresh_handshake(node, pair.other(node))


# -- 3. bulk TCP, byte for byte ---------------------------------------------------------------


@pytest.mark.parametrize("backend", ["native", "native-no-offload", "pure"])
def test_tcp_100mb_each_way(backend: str) -> None:
    """The native C plane (with and without offloads) and the pure-Python reference path."""
    if backend.startswith("native") and not _fast.AVAILABLE:
        pytest.skip("native extension not built")
    nbytes = 100 * MB
    with Lab(PREFIX) as lab:
        pair = make_pair(lab, family=6, backend=backend)
        connect_pair(pair)
        pw, go = pair.pw, pair.go
        assert pw.host.wait_ping(go.addr4, deadline=10)
        for sender, receiver, address in ((pw, go, go.addr4), (go, pw, pw.addr6)):
            result = tcp_transfer(sender.host, receiver.host, address, nbytes, timeout=60)
            print(
                f"\ninterop TCP ({backend}) {sender.impl} -> {receiver.impl} (tunnel {address}, "
                "underlay "
                f"IPv6): {result.received_bytes / MB:.0f} MB in {result.seconds:.2f} s = "
                f"{result.mbit_per_s:.0f} Mbit/s"
            )
            assert result.received_bytes == nbytes
            assert result.ok, result
        # the counters saw at least the payload
        assert int(pw.peer_dump(go)["tx_bytes"]) > nbytes
        assert int(go.peer_dump(pw)["tx_bytes"]) > nbytes


# -- 4. preshared keys --------------------------------------------------------------------


def test_preshared_key_same_on_both_sides() -> None:
    psk = PresharedKey.generate()
    with Lab(PREFIX) as lab:
        pair = make_pair(lab)
        connect_pair(pair, preshared_key=psk)
        pw, go = pair.pw, pair.go
        assert pw.host.wait_ping(go.addr4, deadline=10)
        assert go.host.ping(pw.addr6, count=2)
        for node in (pw, go):
            fields = node.peer_dump(pair.other(node))
            assert fields["preshared_key"] == psk.to_base64()
            assert_fresh_handshake(node, pair.other(node))


def test_preshared_key_mismatch_no_handshake() -> None:
    with Lab(PREFIX) as lab:
        pair = make_pair(lab)
        pw, go = pair.pw, pair.go
        pw.add_peer(go, endpoint=pair.endpoint(go), preshared_key=PresharedKey.generate())
        go.add_peer(pw, endpoint=pair.endpoint(pw), preshared_key=PresharedKey.generate())
        # pywgd initiates first (its initiation reaches wireguard-go, whose response it
        # must reject), then wireguard-go does: ~6 s in all, past the first retry
        assert not pw.host.ping(go.addr4, count=3, timeout=3), "handshake despite PSK mismatch"
        assert not go.host.ping(pw.addr4, count=3, timeout=3), "handshake despite PSK mismatch"
        for node in (pw, go):
            fields = node.peer_dump(pair.other(node))
            assert fields["latest_handshake"] == "0", (node.impl, fields)
        # once the keys agree, it works (a retry within REKEY_TIMEOUT)
        psk = PresharedKey.generate()
        connect_pair(pair, preshared_key=psk)
        assert pw.host.wait_ping(go.addr4, deadline=15), "no handshake after fixing the PSK"
        assert_fresh_handshake(pw, go)
        assert_fresh_handshake(go, pw)


# -- 5. persistent keepalive --------------------------------------------------------------


@pytest.mark.parametrize("keeper_impl", IMPLS)
def test_persistent_keepalive(keeper_impl: str) -> None:
    """The keeper (persistent-keepalive 1, knows the endpoint) alone keeps the tunnel warm.

    The quiet side has no endpoint and sends nothing: it learns the keeper's
    address from the handshake the first keepalive starts, counts 32 bytes per
    keepalive, and follows the keeper to a new port from keepalives alone.
    """
    with Lab(PREFIX) as lab:
        pair = make_pair(lab, family=6)
        keeper = pair.node(keeper_impl)
        quiet = pair.other(keeper)
        quiet.add_peer(keeper)  # no endpoint, no keepalive: it has to learn from keepalives
        keeper.add_peer(quiet, endpoint=pair.endpoint(quiet), persistent_keepalive=1)
        # going from 0 to 1 s sends a keepalive at once, which needs a handshake first
        wait_until(
            "the handshake that the first keepalive starts",
            lambda: handshake_time(quiet, keeper) != 0,
            deadline=8,
        )
        assert quiet.peer_dump(keeper)["endpoint"] == pair.endpoint(keeper)
        assert keeper.peer_dump(quiet)["persistent_keepalive"] == "1"
        time.sleep(1.2)  # past the keepalive confirming the session
        before = quiet.peer_dump(keeper)
        t0 = time.monotonic()
        time.sleep(4.0)
        after = quiet.peer_dump(keeper)
        elapsed = time.monotonic() - t0
        grown = int(after["rx_bytes"]) - int(before["rx_bytes"])
        assert after["tx_bytes"] == before["tx_bytes"], "the quiet side sent something"
        print(f"\n{quiet.impl} received {grown} bytes of keepalives in {elapsed:.1f} s")
        assert grown % 32 == 0, f"rx grew by {grown}: not whole 32-byte keepalives"
        assert 3 <= grown // 32 <= 6, f"{grown // 32} keepalives in {elapsed:.1f} s at 1/s"
        assert handshake_time(keeper, quiet) != 0
        # the keeper moves to another port: its keepalives alone tell the quiet side
        keeper.wg("set", keeper.ifname, "listen-port", str(PORT + 7))
        keeper.port = PORT + 7
        wait_until(
            f"{quiet.impl} to learn the keeper's new port from keepalives",
            lambda: quiet.peer_dump(keeper)["endpoint"] == pair.endpoint(keeper),
            deadline=3,
        )
        assert quiet.peer_dump(keeper)["tx_bytes"] == after["tx_bytes"], "no traffic but these"


# -- 6. roaming -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["native", "pure"])
@pytest.mark.parametrize("family", [4, 6], ids=["underlay-v4", "underlay-v6"])
@pytest.mark.parametrize("mover_impl", ["wireguard-go", "pywgd"])
def test_roaming_mid_transfer(mover_impl: str, family: int, backend: str) -> None:
    """The mover changes its listen port, then its address, while it streams to the other.

    The mover's host has a second address on the link (…1.3); deleting the
    first makes its packets leave from the second. The stationary side must
    follow each move from authenticated packets alone, the stream not break.
    Both of pywgd's data planes: the C plane roams in its RX loop, the pure one
    in the core.
    """
    if backend == "native" and not _fast.AVAILABLE:
        pytest.skip("native extension not built")
    with Lab(PREFIX) as lab:
        pair = make_pair(lab, family=family, backend=backend)
        connect_pair(pair)
        mover = pair.node(mover_impl)
        stay = pair.other(mover)
        old_addr = pair.underlay(mover)
        new_addr = "198.18.1.3" if family == 4 else "fd18::1:3"
        new_port = PORT + 81
        mover_if = pair.link.ifname(mover.host)
        prefix = 24 if family == 4 else 112
        if family == 4:  # keep .3 (a secondary) and the subnet route when the first goes
            mover.host.sysctl(f"net.ipv4.conf.{mover_if}.promote_secondaries=1")
            mover.host.addr(mover_if, f"{new_addr}/{prefix}")
        else:  # deprecated, so that IPv6 does not pick it as a source yet
            mover.host.ip(
                "-6", "addr", "add", f"{new_addr}/{prefix}", "dev", mover_if,
                "nodad", "preferred_lft", "0",
            )  # fmt: skip
        assert mover.host.wait_ping(stay.addr4, deadline=10)
        assert stay.peer_dump(mover)["endpoint"] == format_endpoint((old_addr, PORT))

        stream = PacedStream(mover.host, stay.host, stay.addr4, port=5301, rate=8 * MB, seconds=6)
        time.sleep(1.0)
        mover.wg("set", mover.ifname, "listen-port", str(new_port))
        mover.port = new_port
        wait_until(
            f"{stay.impl} to follow the port change",
            lambda: stay.peer_dump(mover)["endpoint"] == format_endpoint((old_addr, new_port)),
            deadline=3,
        )
        if family == 6:  # IPv6 prefers the new address from here on; delete the old one
            mover.host.ip(
                "-6", "addr", "change", f"{new_addr}/{prefix}", "dev", mover_if,
                "nodad", "preferred_lft", "forever",
            )  # fmt: skip
        mover.host.ip(f"-{family}", "addr", "del", f"{old_addr}/{prefix}", "dev", mover_if)
        if mover.impl == "wireguard-go":
            # wireguard-go 0.0.20220316 keeps sending from its cached ("sticky") source
            # address after that is deleted (ENETUNREACH for IPv4, and it only drops the
            # cache on EINVAL); setting the endpoint again clears the cache, as a roaming
            # client's network manager would
            mover.wg("set", mover.ifname, "peer", str(stay.public_key), "endpoint",
                     pair.endpoint(stay))  # fmt: skip
        wait_until(
            f"{stay.impl} to follow the address change",
            lambda: stay.peer_dump(mover)["endpoint"] == format_endpoint((new_addr, new_port)),
            deadline=15,  # the stream's TCP backs off while the old address is gone
        )
        assert stream.sending(), "the stream ended before the moves: make it longer"
        result = stream.result(deadline=30)
        print(
            f"\nroaming {mover.impl} -> {stay.impl} (IPv{family}): "
            f"{result.received_bytes / MB:.0f} MB, longest stall {result.max_gap:.2f} s"
        )
        assert result.ok, result
        assert result.max_gap < 15, f"the stream stalled for {result.max_gap:.1f} s"
        assert stay.peer_dump(mover)["endpoint"] == format_endpoint((new_addr, new_port))
        # and the tunnel still works both ways from the new place
        assert stay.host.ping(mover.addr6, count=2)
        assert mover.host.ping(stay.addr4, count=2)


# -- 7. a full mesh of mixed implementations -----------------------------------------------


def test_full_mesh_mixed() -> None:
    """2 pywgd + 2 wireguard-go, each behind its own link to a router; all peers of all."""
    impls = ["pywgd", "wireguard-go", "pywgd", "wireguard-go"]
    with Lab(PREFIX) as lab:
        router = lab.host("r")
        router.forwarding()
        nodes: list[Node] = []
        links: list[Link] = []
        for i, impl in enumerate(impls, start=1):
            host = lab.host(f"n{i}")
            link = lab.link(host, router, subnet=i)
            host.route("198.18.0.0/16", via=link.b_addr4)
            host.route("fd18::/16", via=link.b_addr6)
            links.append(link)
            nodes.append(start_node(lab, host, impl, net=1, index=i, port=PORT))
        pairs = [(a, b) for a in nodes for b in nodes if a is not b]
        where: dict[tuple[str, str], str] = {}  # (a, b) tunnel addresses: a's endpoint for b
        for a, b in pairs:
            # mix underlay families: pairs with an odd index sum talk over IPv6
            family = 6 if (nodes.index(a) + nodes.index(b)) % 2 == 1 else 4
            there = links[nodes.index(b)].address(b.host, family)
            where[a.addr4, b.addr4] = format_endpoint((there, b.port))
            a.add_peer(b, endpoint=where[a.addr4, b.addr4])
        for a, b in pairs:
            assert a.host.wait_ping(b.addr4, deadline=10), f"{a.impl} {a.addr4} -> {b.addr4}"
            assert a.host.ping(b.addr6, count=1), f"{a.impl} {a.addr6} -> {b.addr6}"
        for a, b in pairs:
            assert len(a.dump()[1]) == len(nodes) - 1
            assert_fresh_handshake(a, b)
            assert a.peer_dump(b)["endpoint"] == where[a.addr4, b.addr4]


# -- 8. a subnet router ----------------------------------------------------------------


@pytest.mark.parametrize("router_impl", IMPLS)
def test_subnet_router(router_impl: str) -> None:
    """remote --tunnel--> router --LAN 198.19.200.0/24--> lan host, and back.

    The router's peer entry on the remote covers the LAN (AllowedIPs), the
    router forwards; the LAN host only has a route back to the tunnel network.
    """
    remote_impl = "wireguard-go" if router_impl == "pywgd" else "pywgd"
    lan4, lan6 = "198.19.200.0/24", "fd19::200:0/112"
    with Lab(PREFIX) as lab:
        remote_host, router_host, lan = lab.host("remote"), lab.host("router"), lab.host("lan")
        wan = lab.link(remote_host, router_host, subnet=1)
        lan_link = lab.link(router_host, lan, subnet=2, v4=False, v6=False)
        router_host.addr(lan_link.a_if, "198.19.200.1/24")
        router_host.addr(lan_link.a_if, "fd19::200:1/112")
        lan.addr(lan_link.b_if, "198.19.200.2/24")
        lan.addr(lan_link.b_if, "fd19::200:2/112")
        router_host.wait_ipv6_ready(lan_link.a_if)
        lan.wait_ipv6_ready(lan_link.b_if)
        router_host.forwarding()
        lan.route("198.19.1.0/24", via="198.19.200.1")
        lan.route("fd19::1:0/112", via="fd19::200:1")

        remote = start_node(lab, remote_host, remote_impl, net=1, index=1, port=PORT)
        router = start_node(lab, router_host, router_impl, net=1, index=2, port=PORT)
        remote.add_peer(
            router,
            endpoint=format_endpoint((wan.b_addr4, PORT)),
            allowed_ips=[f"{router.addr4}/32", f"{router.addr6}/128", lan4, lan6],
        )
        router.add_peer(remote)  # learns the remote's endpoint
        remote_host.route(lan4, dev=remote.ifname)
        remote_host.route(lan6, dev=remote.ifname)

        assert remote_host.wait_ping("198.19.200.2", deadline=10), "remote -> LAN v4"
        assert remote_host.ping("fd19::200:2", count=2), "remote -> LAN v6"
        assert lan.ping(remote.addr4, count=2), "LAN -> remote v4"
        assert lan.ping(remote.addr6, count=2), "LAN -> remote v6"
        nbytes = 10 * MB
        for sender, receiver, address in (
            (remote_host, lan, "198.19.200.2"),
            (lan, remote_host, remote.addr6),
        ):
            result = tcp_transfer(sender, receiver, address, nbytes, timeout=30)
            print(
                f"\nsubnet router ({router_impl}) {sender.name} -> {receiver.name} "
                f"[{address}]: {result.mbit_per_s:.0f} Mbit/s"
            )
            assert result.received_bytes == nbytes
            assert result.ok, result
        assert router.peer_dump(remote)["endpoint"] == format_endpoint((wan.a_addr4, PORT))
