"""Hole punching through NAT routers that have no WAN firewall, end to end in the lab.

Three `pywg join` nodes, each behind its own Linux masquerade router that
accepts unsolicited packets (`pywg.lab.nat`, ``firewall=False``), with a
home relay (`pywg relay serve`) for the relay path. A probe that reaches
such a router before its inside node has sent to the prober leaves a
conntrack entry that makes the router map the node's own flow to the
prober to another port; the nodes' openers (`pywg.mesh.paths`) keep that
from happening. What is asserted is read from outside: `wg show` endpoints
(each node holds each other at that node's router) and pings.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import pytest

from pywg.lab.mesh import MeshLab, Node, dump
from pywg.lab.nat import Site

pytestmark = [pytest.mark.needs_lab("nft")]

PREFIX = "pwopen"  # of the `lab` fixture's lab, where `mesh_lab` builds

# Once every node is up with its peers: the last node's endpoints reach the others in
# one roster push, then an opener, OPEN_PERIOD (1 s) and a probe round; 10 s leaves room
# for a report retried once (REPORT_RETRY, 2 s) and a loaded machine. A clash, by
# contrast, lasts as long as the probes keep coming (for ever).
DIRECT_DEADLINE = 10.0


def router_host(endpoint: str) -> str:
    return endpoint.rpartition(":")[0].strip("[]")


def direct_pairs(nodes: dict[str, Node], sites: dict[str, Site]) -> list[tuple[str, str]]:
    """(node, peer) pairs where node holds peer at peer's router's public address."""
    found = []
    for name, node in nodes.items():
        endpoints = node.endpoints()
        for other, peer in nodes.items():
            if other == name:
                continue
            site = sites[other]
            at = router_host(endpoints.get(peer.public_key(), ""))
            if at in (site.public_addr4, site.public_addr6):
                found.append((name, other))
    return found


@pytest.mark.time_limit(150)
def test_three_nodes_behind_routers_without_firewall_go_direct(
    mesh_lab: Callable[..., MeshLab],
) -> None:
    mesh = mesh_lab(home_relays=1)
    sites = {n: mesh.net.behind_nat(n, "endpoint-independent", firewall=False) for n in "abc"}
    nodes = {name: mesh.node(name, site) for name, site in sites.items()}
    for node in nodes.values():
        mesh.wait_up(node, 2)
    up = time.monotonic()
    direct: list[tuple[str, str]] = []
    while time.monotonic() < up + DIRECT_DEADLINE and len(direct) < 6:
        direct = direct_pairs(nodes, sites)
        time.sleep(0.3)
    took = time.monotonic() - up
    assert len(direct) == 6, f"{len(direct)} of 6 direct after {took:.1f} s: {direct}\n{dump(mesh)}"
    print(f"all 6 endpoints direct {took:.1f} s after the nodes were up")
    for a, b in itertools.permutations(nodes.values(), 2):
        assert a.host.wait_ping(b.addr4(), deadline=10), (a.name, b.name, dump(mesh))
        assert a.host.ping(b.addr6(), count=3, timeout=6), (a.name, b.name, dump(mesh))
    assert len(direct_pairs(nodes, sites)) == 6, dump(mesh)  # and they stay direct
