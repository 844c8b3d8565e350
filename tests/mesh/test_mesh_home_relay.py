"""`pywg join` nodes through home relays (`pywg relay serve`), end to end in the lab.

The coordinator (`pywg coordinator serve --home-relay ... --no-relay`: no relay
of its own) and every relay and node are real processes in namespaces
(pywg.lab.mesh.MeshLab with ``home_relays``); the relays read the members
from the coordinator. What is asserted is read from outside: `wg show`
endpoints, pings through the tunnel, the relay's TCP connections (`ss`).

The first two run with each data plane (PYWG_BACKEND native and pure).

- Two nodes behind symmetric NATs (no direct path) reach each other through
  their home relay over UDP: each holds the other at ``[100::ID]:1``.
- A node whose NAT router drops all UDP reaches the other, and is reached,
  over TCP/TLS to the relay.
- When that router lets UDP through again, the node's link moves back to a
  UDP association, and both nodes go direct (endpoint-independent NATs).
- Two relays peered with each other, each node homed on its own (the other
  relay unreachable from it at first): pings pass across the relays. The
  relay of one node is killed during a transfer: that node moves to the
  other relay within 10 s and the transfer goes on, intact.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from pywg.lab.mesh import HOME_TCP_PORT, MeshLab, Node, dump
from pywg.lab.nat import Site
from pywg.lab.transfer import PacedStream

pytestmark = [pytest.mark.needs_lab("nft")]

PREFIX = "pwhome"  # of the `lab` fixture's lab, where `mesh_lab` builds

STREAM_RATE = 1_000_000  # bytes/s of the transfer across a relay's death
STREAM_SECONDS = 20

DROP_TO = """
table inet pywg_test_dropto {{
    chain forward {{
        type filter hook forward priority -10; policy accept;
        ip daddr {address} drop
    }}
}}
"""


def pings_both_ways(mesh: MeshLab, a: Node, b: Node, deadline: float = 30) -> None:
    assert a.host.wait_ping(b.addr4(), deadline=deadline), dump(mesh)
    assert a.host.ping(b.addr4(), count=5, timeout=8), dump(mesh)
    assert b.host.ping(a.addr6(), count=5, timeout=8), dump(mesh)


def router(site: Site) -> Site:
    assert site.nat is not None
    return site


BACKENDS = pytest.mark.parametrize("backend", ["native", "pure"])


@pytest.mark.time_limit(90)
@BACKENDS
def test_symmetric_nats_meet_through_the_home_relay_over_udp(
    mesh_lab: Callable[..., MeshLab], backend: str
) -> None:
    mesh = mesh_lab(home_relays=1, node_env={"PYWG_BACKEND": backend})
    a, b = mesh.pair(mesh.net.behind_nat("a", "symmetric"), mesh.net.behind_nat("b", "symmetric"))
    mesh.wait_relayed(a, b, number=1, seconds=30)
    mesh.wait_relayed(b, a, number=1, seconds=30)
    pings_both_ways(mesh, a, b)
    for node in (a, b):
        assert "home relay relay1: udp" in node.log_text(), dump(mesh)
        assert "home relay reported: 1" in node.log_text(), dump(mesh)
    # still relayed after the probes had their chance (no direct path exists)
    time.sleep(3)
    assert a.endpoints()[b.public_key()].startswith("[100::"), dump(mesh)
    listing = json.loads(mesh.admin("nodes", "--json"))
    assert [n["home_relay"] for n in listing["nodes"]] == [1, 1], listing


@pytest.mark.time_limit(120)
@BACKENDS
def test_a_node_without_udp_is_reached_over_tcp(
    mesh_lab: Callable[..., MeshLab], backend: str
) -> None:
    mesh = mesh_lab(home_relays=1, node_env={"PYWG_BACKEND": backend})
    a_site = mesh.net.behind_nat("a", "symmetric")
    router(a_site).nat.block_udp()  # type: ignore[union-attr]
    a, b = mesh.pair(a_site, mesh.net.behind_nat("b", "symmetric"))
    mesh.wait_relayed(a, b, number=1, seconds=40)
    mesh.wait_relayed(b, a, number=1, seconds=40)
    pings_both_ways(mesh, a, b, deadline=40)
    assert "home relay relay1: tcp" in a.log_text(), dump(mesh)
    assert "home relay relay1: udp" in b.log_text(), dump(mesh)
    relay = mesh.relays[0]
    sockets = a.host.run("ss", "-Htn", "state", "established").stdout
    assert f"{relay.addr4}:{HOME_TCP_PORT}" in sockets, sockets


@pytest.mark.time_limit(150)
def test_udp_let_through_again_moves_to_udp_then_direct(
    mesh_lab: Callable[..., MeshLab],
) -> None:
    mesh = mesh_lab(home_relays=1)
    a_site = mesh.net.behind_nat("a", "endpoint-independent")
    b_site = mesh.net.behind_nat("b", "endpoint-independent")
    router(a_site).nat.block_udp()  # type: ignore[union-attr]
    a, b = mesh.pair(a_site, b_site)
    mesh.wait_relayed(a, b, number=1, seconds=40)
    mesh.wait_relayed(b, a, number=1, seconds=40)
    pings_both_ways(mesh, a, b, deadline=40)
    assert "home relay relay1: tcp" in a.log_text(), dump(mesh)
    router(a_site).nat.unblock_udp()  # type: ignore[union-attr]
    let_through = time.monotonic()
    # the link back to a UDP association within its retry interval (Timing.udp_retry,
    # 10 s, plus an association's timeout) ...
    deadline = let_through + 20
    while a.log_text().count("home relay relay1: udp") == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    on_udp = time.monotonic() - let_through
    assert "home relay relay1: udp" in a.log_text(), dump(mesh)
    # ... then the direct path, each node sending to the other's NAT
    mesh.wait_endpoint(a, b, b_site.public_addr4, seconds=40)
    mesh.wait_endpoint(b, a, a_site.public_addr4, seconds=40)
    direct = time.monotonic() - let_through
    pings_both_ways(mesh, a, b)
    sockets = a.host.run("ss", "-Htn", "state", "established").stdout
    assert f":{HOME_TCP_PORT}" not in sockets, sockets
    print(f"UDP again after {on_udp:.1f} s, direct after {direct:.1f} s")


@pytest.mark.time_limit(150)
def test_nodes_on_peered_relays_and_a_move_when_one_dies(
    mesh_lab: Callable[..., MeshLab],
) -> None:
    mesh = mesh_lab(home_relays=2)
    relay1, relay2 = mesh.relays
    a_site = mesh.net.behind_nat("a", "symmetric")
    b_site = mesh.net.behind_nat("b", "symmetric")
    # each node can reach only one relay at first: a homes on relay 1, b on relay 2
    router(a_site).nat.router.nft(DROP_TO.format(address=relay2.addr4))  # type: ignore[union-attr]
    router(b_site).nat.router.nft(DROP_TO.format(address=relay1.addr4))  # type: ignore[union-attr]
    a, b = mesh.pair(a_site, b_site)
    mesh.wait_relayed(a, b, number=1, seconds=30)
    mesh.wait_relayed(b, a, number=2, seconds=30)
    pings_both_ways(mesh, a, b)  # a -> relay 1 -> relay 2 -> b, and back
    for site in (a_site, b_site):
        router(site).nat.router.nft("delete table inet pywg_test_dropto\n")  # type: ignore[union-attr]
    # a transfer a -> b runs through relay 1 and relay 2 while relay 1 dies
    stream = PacedStream(
        a.host, b.host, b.addr4(), port=5301, rate=STREAM_RATE, seconds=STREAM_SECONDS, timeout=25
    )
    time.sleep(3)
    assert stream.sending(), dump(mesh)
    mesh.kill_relay(1)
    killed = time.monotonic()
    mesh.wait_relayed(a, b, number=2, seconds=15)
    moved = time.monotonic() - killed
    assert moved < 10, f"a moved to relay 2 after {moved:.1f} s\n{dump(mesh)}"
    assert "home relay relay1 failed" in a.log_text(), dump(mesh)
    result = stream.result(deadline=STREAM_SECONDS + 30)
    assert result.ok, (result, dump(mesh))  # intact: every byte, in order
    # the stream stood still at most while a moved, plus TCP's retransmission backoff
    assert result.max_gap < 10, (result, dump(mesh))
    print(f"moved after {moved:.1f} s; longest stall of the transfer {result.max_gap:.1f} s")
    pings_both_ways(mesh, a, b, deadline=15)
    assert "home relay reported: 2" in a.log_text(), dump(mesh)
