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

import ipaddress
import os
import re
import socket
import struct
import time

import pytest

from helpers.ip_packets import ip4, ip6
from helpers.time_bounds import wait_for
from helpers.wg_nodes import PORT, Node, Pair, make_pair, start_node
from pywg.endpoint import format_endpoint
from pywg.lab import Host, Lab

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


def second_address(pair: Pair) -> tuple[str, str]:
    """Give pywgd's host its second address on the link, and the peers each other, the
    peer reaching pywgd at the address the kernel would not choose as the source:
    (the kernel's choice, the address the peer uses)."""
    family = pair.family
    second, prefix = SECOND[family]
    pw_if = pair.link.ifname(pair.pw.host)
    pair.pw.host.ip("addr", "add", f"{second}/{prefix}", "dev", pw_if, *(["nodad"] * (family == 6)))
    chosen = kernel_choice(pair)
    (unchosen,) = {second, pair.underlay(pair.pw)} - {chosen}
    pair.go.add_peer(pair.pw, endpoint=format_endpoint((unchosen, pair.pw.port)))
    pair.pw.add_peer(pair.go)  # pywgd learns the peer's endpoint from its handshake
    return chosen, unchosen


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
    chosen, unchosen = second_address(pair)
    prefix = SECOND[family][1]
    primary = format_endpoint((chosen, pair.pw.port))
    used = format_endpoint((unchosen, pair.pw.port))

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


def udp_checksum(src: bytes, dst: bytes, segment: bytes) -> int:
    """RFC 768 / RFC 8200 §8.1: the one's-complement sum over a pseudo-header and the segment."""
    pseudo = src + dst + (bytes([0, 17]) + len(segment).to_bytes(2, "big"))
    if len(src) == 16:
        pseudo = src + dst + len(segment).to_bytes(4, "big") + bytes([0, 0, 0, 17])
    data = pseudo + segment + bytes(len(segment) % 2)
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total & 0xFFFF) or 0xFFFF


def send_forged(
    host: Host, source: tuple[str, int], target: tuple[str, int], payload: bytes
) -> None:
    """Send a UDP datagram from `host` that claims to come from `source` (a raw socket)."""
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(target[0])
    header = struct.pack("!HHHH", source[1], target[1], 8 + len(payload), 0)
    checksum = udp_checksum(src.packed, dst.packed, header + payload)
    segment = header[:6] + checksum.to_bytes(2, "big") + payload
    packet = (
        ip6(str(src), str(dst), segment) if src.version == 6 else ip4(str(src), str(dst), segment)
    )
    family = socket.AF_INET6 if src.version == 6 else socket.AF_INET
    with host.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:  # header included
        raw.sendto(packet, (str(dst), 0))


@pytest.mark.parametrize("backend", ["native", "pure"])
@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_a_forged_datagram_does_not_move_the_source(lab: Lab, family: int, backend: str) -> None:
    """Only an authenticated datagram moves where replies leave from: one forged to our
    other address, in the peer's name, is dropped and changes nothing (whitepaper §2.1)."""
    pair = make_pair(lab, family, backend)
    chosen, unchosen = second_address(pair)
    used = format_endpoint((unchosen, pair.pw.port))
    traffic(pair.go, pair.pw)
    assert endpoint_of_pywgd(pair) == used

    peer_source = (pair.underlay(pair.go), pair.go.port)
    forgeries = [
        bytes([1, 0, 0, 0]) + os.urandom(144),  # an initiation no key opens
        bytes([4, 0, 0, 0]) + os.urandom(60),  # transport data under an unknown index
    ]
    for forged in forgeries * 3:
        send_forged(pair.go.host, peer_source, (chosen, pair.pw.port), forged)
    time.sleep(0.3)
    traffic(pair.pw, pair.go)  # pywgd's replies still leave from the address the peer used
    assert endpoint_of_pywgd(pair) == used
