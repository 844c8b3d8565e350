"""Replies leave from the address the peer wrote to, on a host with two addresses on one link.

pywgd's host has its link address and a second one (198.18.1.11, fd18::1:11)
on the same link; wireguard-go, the peer, is told to reach pywgd at the one the
kernel would not choose as the source towards it (IPv4 prefers the primary
address, IPv6 the newest), so a reply that leaves from the kernel's choice shows.
Every reply, data and handshake, whichever side starts the handshake, must
come from that address, so wireguard-go's endpoint for pywgd (`wg show` on
its side) stays on it. Once the address is removed from pywgd's host, replies
must come from the kernel's choice at once, and wireguard-go's endpoint moves
there (roaming, whitepaper §2.1). Both data planes: the C plane and the pure
path (PYWG_BACKEND=pure); and the same with pywgd as the peer (pywgd↔pywgd).
"""

from __future__ import annotations

import re

import pytest

from helpers.time_bounds import wait_for
from helpers.wg_nodes import PORT, Node, Pair, make_pair, start_node
from pywg.endpoint import format_endpoint
from pywg.lab import Lab

pytestmark = [
    pytest.mark.needs_lab("wg", "wireguard-go", "ping", "pywgd"),
    pytest.mark.time_limit(90),
]

SECOND = {4: ("198.18.1.11", 24), 6: ("fd18::1:11", 112)}
SRC = re.compile(r"\bsrc (\S+)")
FALLBACK_BOUND = 5.0  # seconds from the address's removal to the peer's endpoint moving


def pywgd_pair(lab: Lab, family: int, backend: str) -> Pair:
    """As `make_pair`, with pywgd (the C plane) in the peer's place too."""
    pw_host, peer_host = lab.host("pw"), lab.host("peer")
    link = lab.link(pw_host, peer_host)
    env = {"PYWG_BACKEND": backend}
    pw = start_node(lab, pw_host, "pywgd", net=1, index=1, port=PORT, env=env)
    peer = start_node(lab, peer_host, "pywgd", net=1, index=2, port=PORT)
    return Pair(link, family, pw, peer)


def endpoint_of_pywgd(pair: Pair) -> str:
    """The peer's endpoint for pywgd, as `wg show dump` prints it."""
    return pair.go.peer_dump(pair.pw)["endpoint"]


def kernel_choice(pair: Pair) -> str:
    """The source address pywgd's kernel picks towards the peer (`ip route get`)."""
    found = SRC.search(pair.pw.host.ip("route", "get", pair.underlay(pair.go)))
    assert found is not None
    return found.group(1)


def renew_peer(node: Node, other: Node, endpoint: str | None) -> None:
    """Remove and re-add `other` on `node`: a fresh peer, with no session, must handshake."""
    node.wg("set", node.ifname, "peer", str(other.public_key), "remove")
    node.add_peer(other, endpoint=endpoint)


def traffic(from_node: Node, to_node: Node, count: int = 3) -> None:
    assert from_node.host.wait_ping(to_node.addr4), f"no tunnel from {from_node.impl}"
    from_node.host.ping(to_node.addr4, count=count, timeout=5)


@pytest.mark.parametrize("peer", ["wireguard-go", "pywgd"])
@pytest.mark.parametrize("backend", ["native", "pure"])
@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_replies_come_from_the_address_the_peer_used(
    lab: Lab, family: int, backend: str, peer: str
) -> None:
    pair = (
        make_pair(lab, family, backend)
        if peer == "wireguard-go"
        else pywgd_pair(lab, family, backend)
    )
    pw_if = pair.link.ifname(pair.pw.host)
    second, prefix = SECOND[family]
    pair.pw.host.ip("addr", "add", f"{second}/{prefix}", "dev", pw_if, *(["nodad"] * (family == 6)))
    chosen = kernel_choice(pair)
    (unchosen,) = {second, pair.underlay(pair.pw)} - {chosen}
    primary = format_endpoint((chosen, pair.pw.port))
    used = format_endpoint((unchosen, pair.pw.port))
    pair.go.add_peer(pair.pw, endpoint=used)
    pair.pw.add_peer(pair.go)  # pywgd learns the peer's endpoint from its handshake

    traffic(pair.go, pair.pw)  # the peer starts: pywgd answers the handshake
    assert endpoint_of_pywgd(pair) == used
    traffic(pair.pw, pair.go)
    assert endpoint_of_pywgd(pair) == used

    renew_peer(pair.go, pair.pw, used)  # the peer starts a fresh handshake
    traffic(pair.go, pair.pw)
    assert endpoint_of_pywgd(pair) == used
    renew_peer(pair.pw, pair.go, pair.endpoint(pair.go))  # pywgd starts one
    traffic(pair.pw, pair.go)
    traffic(pair.go, pair.pw)
    assert endpoint_of_pywgd(pair) == used

    pair.pw.host.ip("addr", "del", f"{unchosen}/{prefix}", "dev", pw_if)
    pair.pw.host.ping(pair.go.addr4, count=1, timeout=1)  # replies fall back at once
    assert wait_for(lambda: endpoint_of_pywgd(pair) == primary, deadline=FALLBACK_BOUND), (
        endpoint_of_pywgd(pair)
    )
    traffic(pair.go, pair.pw)
    assert endpoint_of_pywgd(pair) == primary
