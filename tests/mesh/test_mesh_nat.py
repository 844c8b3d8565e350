"""The mesh end to end: `pywg coordinator` and `pywg join` through real NATs.

Every test builds an internet in namespaces (`pywg.lab.nat`: nftables
masquerade, endpoint-independent or symmetric), runs the coordinator on a
public host with its own relay (a child process, relay 1 of the map), and
the nodes as `pywg join` processes (the `mesh` and `mesh_lab` fixtures,
tests/mesh/conftest.py: pywg.lab.mesh). Nothing is configured per pair: the
nodes get their peers, endpoints and routes from the coordinator. What is
asserted is read from outside: `wg show`, pings through the tunnel, the
relay's process, and WireGuard datagrams captured on the relay's link.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable

import pytest

from pywg.lab.capture import UdpCapture
from pywg.lab.mesh import HOME_UDP_PORT, MeshLab, Node, dump

pytestmark = pytest.mark.needs_lab("nft")  # the nodes are behind nftables NATs

PREFIX = "pwmesh"  # of the `lab` fixture's lab, where `mesh` and `mesh_lab` build


def transport(capture: UdpCapture, since: float, port: int | None = None) -> int:
    """WireGuard transport messages seen on the hub's link since `since` (type 4, the
    next three bytes zero or a relay's node id tag: docs/relay.md), to or from `port`
    if given."""
    return sum(
        1
        for d in capture.datagrams(since=since)
        if d.payload[:1] == b"\x04"
        and len(d.payload) >= 32
        and (port is None or port in (d.source[1], d.destination[1]))
    )


def ping_all(node: Node, address: str, count: int = 20) -> bool:
    return node.host.ping(address, count=count, timeout=count * 0.5 + 5)


def test_direct_through_endpoint_independent_nats(mesh: MeshLab) -> None:
    a_site = mesh.net.behind_nat("a", "endpoint-independent")
    b_site = mesh.net.behind_nat("b", "endpoint-independent")
    # a finds its mapping with Debian's coturn, b with the relay's own STUN port
    stun: tuple[str, ...] = ()
    if shutil.which("turnserver"):
        mesh.hub.host.popen(
            "turnserver", "--stun-only", "-n", "--no-cli", "--listening-ip", mesh.hub.addr4,
            "--listening-port", "3479", "--log-file", "stdout", "--no-stdout-log",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        stun = ("--stun", f"{mesh.hub.addr4}:3479")
    a, b = mesh.pair(a_site, b_site, extra_a=stun)
    assert a_site.addr4 != a_site.public_addr4  # really behind NATs
    # each sends to the other's NAT, not to the relay
    mesh.wait_endpoint(a, b, b_site.public_addr4)
    mesh.wait_endpoint(b, a, a_site.public_addr4)
    assert a.host.wait_ping(b.addr4(), deadline=20), dump(mesh)
    with UdpCapture(mesh.hub.host, mesh.hub.link.b_if) as capture:
        since = time.monotonic()
        assert ping_all(a, b.addr4()), dump(mesh)
        assert ping_all(b, a.addr6()), dump(mesh)
        time.sleep(0.5)
        assert transport(capture, since) == 0, "traffic passed the relay"
    # still direct afterwards
    assert a.endpoints()[b.public_key()].startswith(b_site.public_addr4 + ":")
    if stun:
        assert f"endpoints reported: {a_site.public_addr4}:" in a.log_text()
    # with the coordinator down, a restarted node comes back from its last roster
    mesh.stop_coordinator()
    mesh.stop(a)
    mesh.start(a)
    mesh.wait_up(a, 1)
    assert a.host.wait_ping(b.addr4(), deadline=30), dump(mesh)
    assert "starting from the last roster" in a.log_text()


def test_relay_between_symmetric_nats(mesh: MeshLab) -> None:
    a_site = mesh.net.behind_nat("a", "symmetric")
    b_site = mesh.net.behind_nat("b", "symmetric")
    a, b = mesh.pair(a_site, b_site)
    mesh.wait_relayed(a, b, number=1)  # behind the coordinator's own relay
    mesh.wait_relayed(b, a, number=1)
    assert a.host.wait_ping(b.addr4(), deadline=30), dump(mesh)
    with UdpCapture(mesh.hub.host, mesh.hub.link.b_if) as capture:
        since = time.monotonic()
        assert ping_all(a, b.addr4()), dump(mesh)
        assert ping_all(b, a.addr6()), dump(mesh)
        time.sleep(0.5)
        # every ping and reply crossed the own relay's UDP port twice (in and out)
        assert transport(capture, since, HOME_UDP_PORT) >= 4 * 20 * 2
    # hole punching cannot work here: still on the relay after the probes had their chance
    time.sleep(5)
    mesh.wait_relayed(a, b, number=1, seconds=1)
    mesh.wait_relayed(b, a, number=1, seconds=1)
    for node in (a, b):
        assert "home relay hub: udp" in node.log_text(), dump(mesh)


def test_node_reconnects_after_its_nat_reboots(mesh: MeshLab) -> None:
    a_site = mesh.net.behind_nat("a", "endpoint-independent", ports=(20000, 20999))
    b_site = mesh.net.behind_nat("b", "endpoint-independent")
    a, b = mesh.pair(a_site, b_site)
    before = mesh.wait_endpoint(b, a, a_site.public_addr4)
    assert b.host.wait_ping(a.addr4(), deadline=20), dump(mesh)
    assert a_site.nat is not None
    a_site.nat.reboot()  # every mapping forgotten; new ones from another port window
    rebooted = time.monotonic()
    assert b.host.wait_ping(a.addr4(), deadline=60), dump(mesh)
    back = time.monotonic() - rebooted
    # and back to a direct path, at a's new mapping
    end = time.monotonic() + 60
    after = before
    while time.monotonic() < end:
        after = b.endpoints().get(a.public_key(), "")
        if after.startswith(a_site.public_addr4 + ":") and after != before:
            break
        time.sleep(0.5)
    assert after != before and after.startswith(a_site.public_addr4 + ":"), dump(mesh)
    assert a.host.wait_ping(b.addr4(), deadline=10), dump(mesh)
    print(f"reachable again {back:.1f} s after the reboot; direct again at {after}")


def test_four_node_mesh_with_a_subnet_router(mesh: MeshLab) -> None:
    pub = mesh.net.public("p")
    a_site = mesh.net.behind_nat("a", "endpoint-independent")
    b_site = mesh.net.behind_nat("b", "symmetric")
    d_site = mesh.net.behind_nat("d", "endpoint-independent")
    lan = mesh.lab.host("lan")
    lan_link = mesh.lab.link(d_site.host, lan)
    lan_prefix = lan_link.prefix4
    lan_host = lan_link.b_addr4
    nodes = [
        mesh.node("p", pub),
        mesh.node("a", a_site),
        mesh.node("b", b_site),
        mesh.node("d", d_site, routes=lan_prefix),
    ]
    for node in nodes:
        mesh.wait_up(node, 3)
    p, a, b, d = nodes
    # every node reaches every other, IPv4 and IPv6 inside
    for src in nodes:
        for dst in nodes:
            if src is dst:
                continue
            assert src.host.wait_ping(dst.addr4(), deadline=30), (src.name, dst.name, dump(mesh))
            assert src.host.wait_ping(dst.addr6(), deadline=15), (src.name, dst.name, dump(mesh))
    # the subnet route waits for approval: nobody routes the LAN yet
    assert not a.host.ping(lan_host, count=1, timeout=2)
    assert lan_prefix in mesh.admin("nodes")  # listed as pending
    mesh.admin("approve", "d", lan_prefix)
    for src in (p, a, b):
        assert src.host.wait_ping(lan_host, deadline=30), (src.name, dump(mesh))
    # d itself reaches its LAN directly, not through the mesh
    assert d.host.ping(lan_host, count=1, timeout=5)
    assert lan_prefix in a.host.ip("route", "show", "dev", a.ifname)
    assert lan_prefix not in d.host.ip("route", "show", "dev", d.ifname)
    # the subnet router's masquerade goes with it
    assert "pywg_mesh_" in d.host.run("nft", "list", "tables").stdout
    mesh.stop(d)
    assert "pywg_mesh_" not in d.host.run("nft", "list", "tables").stdout
    assert d.ifname not in d.host.ip("link", "show")


def test_restarts_keep_state_and_bad_joins_are_refused(mesh: MeshLab) -> None:
    a_site = mesh.net.behind_nat("a", "symmetric")
    b_site = mesh.net.behind_nat("b", "symmetric")
    a, b = mesh.pair(a_site, b_site)
    assert a.host.wait_ping(b.addr4(), deadline=30), dump(mesh)
    addresses = (a.addresses(), b.addresses())
    mesh.wait_relayed(a, b, number=1)
    spare = mesh.token()  # made before the restart, used after it
    # the coordinator and its relay restart: relayed traffic resumes by itself
    relay = mesh.own_relay_pid()
    assert relay is not None
    mesh.stop_coordinator()
    assert not os.path.exists(f"/proc/{relay}"), "the relay outlived the coordinator"
    mesh.start_coordinator()
    restarted = mesh.own_relay_pid()
    assert restarted is not None and restarted != relay
    assert a.host.wait_ping(b.addr4(), deadline=30), dump(mesh)
    mesh.wait_relayed(a, b, number=1, seconds=1)
    # a node restarts: no token needed, same identity and addresses
    mesh.stop(a)
    mesh.start(a)
    mesh.wait_up(a, 1)
    assert (a.addresses(), b.addresses()) == addresses
    assert a.host.wait_ping(b.addr4(), deadline=40), dump(mesh)
    # a token from before the restart still admits a new node, which sees both
    c = mesh.node("c", mesh.net.behind_nat("c", "endpoint-independent"), token=spare)
    mesh.wait_up(c, 2)
    assert c.host.wait_ping(a.addr4(), deadline=30), dump(mesh)
    # that token was single-use: a second join with it is refused, and so is a made-up one
    for bad in (spare, "x" * 32 + "." + spare.partition(".")[2]):  # same fingerprint and pin
        done = mesh.join_from_hub(bad)
        assert done.returncode == 1, done.stderr
        assert "join refused" in done.stderr and "401" in done.stderr, done.stderr
    assert "intruder" not in mesh.admin("nodes")
    # an endpoint update for a, signed by anyone but a, changes nothing
    before = json.loads(mesh.admin("nodes", "--json"))
    a_entry = next(n for n in before["nodes"] if n["name"] == "a")
    out = mesh.hub.host.python(_FORGE, mesh.url, a_entry["public_key"], timeout=60)
    assert out.split() == ["401", "401"], out
    after = json.loads(mesh.admin("nodes", "--json"))
    assert next(n for n in after["nodes"] if n["name"] == "a")["endpoints"] == a_entry["endpoints"]


# Claims to be node A (its public key) but signs with a key of its own, then sends a
# request without a valid signature at all; prints the two HTTP statuses.
_FORGE = r"""
import asyncio, sys, time
import aiohttp
from nacl.signing import SigningKey
from pywg.mesh import auth

url, victim = sys.argv[1:3]
body = b'{"endpoints": ["198.18.250.1:9"], "routes": []}'

async def main():
    signed, _ = auth.sign_request(
        SigningKey.generate(), victim, "POST", "/v1/update", body, int(time.time() * 1000)
    )
    unsigned = 'PYWG-Ed25519 node="%s", time="1", sig="%s"' % (victim, auth.b64(bytes(64)))
    statuses = []
    async with aiohttp.ClientSession() as http:
        for header in (signed, unsigned):
            # ssl=False: the forger does not care whom it talks to
            async with http.post(url + "/v1/update", data=body, ssl=False,
                                 headers={"Authorization": header}) as r:
                statuses.append(r.status)
    print(*statuses)

asyncio.run(main())
"""


def test_relay_and_discovery_over_ipv6(mesh_lab: Callable[..., MeshLab]) -> None:
    """The own relay announced at an IPv6 address: STUN, associations and relayed traffic
    over IPv6."""
    mesh = mesh_lab(relay6=True)
    a_site = mesh.net.behind_nat("a", "symmetric")
    b_site = mesh.net.behind_nat("b", "symmetric")
    a, b = mesh.pair(a_site, b_site)
    mesh.wait_relayed(a, b, number=1)
    mesh.wait_relayed(b, a, number=1)
    assert a.host.wait_ping(b.addr4(), deadline=30), dump(mesh)
    assert b.host.wait_ping(a.addr6(), deadline=15), dump(mesh)
    with UdpCapture(mesh.hub.host, mesh.hub.link.b_if) as capture:
        since = time.monotonic()
        assert ping_all(a, b.addr4(), count=5), dump(mesh)
        time.sleep(0.5)
        relayed = [
            d
            for d in capture.datagrams(since=since)
            if d.payload[:1] == b"\x04" and HOME_UDP_PORT in (d.source[1], d.destination[1])
        ]
        # every ping and reply crossed the relay, over IPv6 only
        assert len(relayed) >= 4 * 5, dump(mesh)
        assert all(mesh.hub.addr6 in (d.source[0], d.destination[0]) for d in relayed)
    # each learnt its public IPv6 mapping (its NAT's outside address) over STUN
    assert f"endpoints reported: [{a_site.public_addr6}]:" in a.log_text(), dump(mesh)
