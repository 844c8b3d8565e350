"""Peers behind a mesh relay: relayed endpoints [100::ID]:R on both data planes.

Two Tunnels behind symmetric NATs (pywg.lab), which cannot reach each other
directly, hold each other at relayed endpoints (`pywg.relayed`) and reach
each other through a stand-in relay: a few lines on a public host that
learn each node's mapping from a hello sent from its WireGuard socket and
forward WireGuard messages by the id in their reserved bytes, rewriting it
to the sender's (`pywg.lab.standin_relay`, in Python; the tag format of
docs/relay.md). Each side must handshake,
carry pings of every size up to the MTU both ways (tagging adds no bytes),
and see the other at its relayed endpoint; on the relay's link every
WireGuard message (captured) carries a tag, the destination's on the way in
and the source's on the way out.
"""

from __future__ import annotations

import time

import pytest

from pywg import relayed
from pywg.keys import PrivateKey
from pywg.lab import Internet, Lab
from pywg.lab.capture import UdpCapture
from pywg.lab.standin_relay import NodeEnd, node_up, start_node, start_standin_relay

PREFIX = "pwrly"
pytestmark = [pytest.mark.needs_lab("nft"), pytest.mark.time_limit(90)]
RELAY_PORT = 3478
IDS = {"a": 0x0A0001, "b": 0x0B0002}
TUNNEL = {"a": "198.19.7.1", "b": "198.19.7.2"}


@pytest.mark.parametrize("backend", ["native", "pure"])
def test_peers_reach_each_other_through_a_relay(lab: Lab, backend: str) -> None:
    net = Internet(lab)
    hub = net.public("hub")
    sites = {name: net.behind_nat(name, "symmetric") for name in IDS}
    relay = start_standin_relay(hub.host, RELAY_PORT, native=False)
    keys = {name: PrivateKey.generate() for name in IDS}
    env = {"PYWG_BACKEND": backend}
    ends = {n: NodeEnd(IDS[n], str(keys[n]), TUNNEL[n]) for n in IDS}
    nodes = {
        name: start_node(
            sites[name].host,
            lab.ifname("r"),
            ends[name],
            ends[other],
            str(keys[other].public_key),
            (hub.addr4, RELAY_PORT),
            env=env,
        )
        for name, other in (("a", "b"), ("b", "a"))
    }
    for name, other in (("a", "b"), ("b", "a")):
        got = node_up(nodes[name])
        assert got["native"] is (backend == "native"), got
        # each holds the other at its relayed endpoint: relay 1, the other's id
        assert relayed.parse(tuple(got["endpoint"])) == (1, IDS[other]), got
    a, b = sites["a"].host, sites["b"].host
    assert a.wait_ping(TUNNEL["b"], deadline=10)
    with UdpCapture(hub.host, hub.link.b_if) as capture:
        since = time.monotonic()
        for size in (0, 100, 1000, 1420 - 28):  # up to the tunnel MTU: the tag adds no bytes
            done = a.run("ping", "-c", "2", "-W", "3", "-M", "do", "-s", str(size), TUNNEL["b"],
                         check=False)  # fmt: skip
            assert done.returncode == 0, done.stdout
        assert b.ping(TUNNEL["a"], count=5, timeout=5)
        time.sleep(0.3)
        seen = [d for d in capture.datagrams(since=since) if d.payload[:1] == b"\x04"]
    tags = {relayed.untag(d.payload)[0] if relayed.untag(d.payload) else 0 for d in seen}
    assert len(seen) >= 2 * (4 * 2 + 5) and tags == set(IDS.values()), (len(seen), tags)
    for proc in (*nodes.values(), relay):
        proc.terminate()
        proc.wait(10)
