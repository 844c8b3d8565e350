"""A plain WireGuard device in the mesh, end to end: a "phone" that runs no pywg.

The phone is Debian's wireguard-go in a namespace behind a NAT router,
brought up by `wg-quick up` from nothing but the file `pywg coordinator
device add --output` wrote. The mesh (tests/mesh/conftest.py, pywg.lab.mesh)
has a gateway node on a public host, a node behind a symmetric NAT (reached
through the relay) and a subnet router with an approved LAN. The phone
reaches every node and the LAN host through its gateway, every node reaches
the phone, the QR code `device add --qr` wrote reads back (zbarimg) to the
very same file, and after `device remove` the phone reaches nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from pywg.lab.hosts import Host
from pywg.lab.mesh import MeshLab, Node, dump

pytestmark = pytest.mark.needs_lab("nft", "wg-quick", "wireguard-go", "zbarimg")

PREFIX = "pwdev"  # of the `lab` fixture's lab, where `mesh` builds
CUT_OFF = 6.0  # seconds from `device remove` to a phone that reaches nothing


def wait_endpoints(mesh: MeshLab, name: str, seconds: float = 30) -> list[str]:
    """Until node `name` has reported its endpoints to the coordinator; them."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        listing = json.loads(mesh.admin("nodes", "--json"))
        found = next(n["endpoints"] for n in listing["nodes"] if n["name"] == name)
        if found:
            return list(found)
        time.sleep(0.5)
    raise AssertionError(f"{name} reported no endpoint\n{dump(mesh)}")


# wg-quick(8) hands a DNS line to resolvconf(8) (`-a IF`); the phone's stand-in keeps
# what it was given in a file beside itself instead of touching the machine's resolver
RESOLVCONF = """#!/bin/sh
[ "$1" = "-a" ] && cat > "$(dirname "$0")/resolvconf.given"
exit 0
"""


def wg_quick(phone: Host, action: str, path: Path) -> subprocess.CompletedProcess[str]:
    """`wg-quick ACTION FILE` in the phone's namespace, wireguard-go as its WireGuard and
    the stand-in resolvconf first on its PATH."""
    stub = path.parent / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "resolvconf").write_text(RESOLVCONF)
    (stub / "resolvconf").chmod(0o755)
    return phone.run(
        "env", "WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go",
        f"PATH={stub}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
        "wg-quick", action, str(path), check=False, timeout=30,
    )  # fmt: skip


def reaches_nothing(phone: Host, targets: list[str]) -> bool:
    return not any(phone.ping(target, count=1, timeout=1) for target in targets)


@pytest.mark.time_limit(90)
def test_phone_through_a_gateway(mesh: MeshLab, tmp_path: Path) -> None:
    g_site = mesh.net.public("g")
    d_site = mesh.net.behind_nat("d", "endpoint-independent")
    lan = mesh.lab.host("lan")
    lan_link = mesh.lab.link(d_site.host, lan)
    nodes: list[Node] = [
        mesh.node("g", g_site, extra=("--advertise-exit-node",)),  # an exit, approved later
        mesh.node("a", mesh.net.behind_nat("a", "symmetric")),
        mesh.node("d", d_site, routes=lan_link.prefix4),
    ]
    g, a, _ = nodes
    for node in nodes:
        mesh.wait_up(node, 2)
    mesh.admin("approve", "d", lan_link.prefix4)
    gateway_endpoint = wait_endpoints(mesh, "g")[0]
    assert gateway_endpoint.startswith(g_site.addr4 + ":")

    phone_site = mesh.net.behind_nat("phone", "symmetric")
    phone = phone_site.host
    ifname = mesh.lab.ifname("ph")
    conf = tmp_path / f"{ifname}.conf"  # wg-quick names the interface after the file
    qr = tmp_path / "phone.png"
    mesh.admin("device", "add", "phone", "--gateway", "g", "--output", str(conf), "--qr", str(qr))
    text = conf.read_text()
    assert f"Endpoint = {gateway_endpoint}\n" in text
    assert lan_link.prefix4 in text
    # by default the phone asks g's name server and searches the mesh domain
    assert f"DNS = {g.addr4()}, {g.addr6()}, mesh.internal\n" in text
    assert conf.stat().st_mode & 0o077 == 0 and qr.stat().st_mode & 0o077 == 0
    # the QR code is exactly the file (zbarimg ends what it read with a newline)
    read = subprocess.run(["zbarimg", "--raw", "-q", str(qr)], capture_output=True, timeout=30)
    assert read.returncode == 0, read.stderr
    assert read.stdout.decode() == text + "\n"

    listing = json.loads(mesh.admin("nodes", "--json"))
    (device,) = listing["devices"]
    phone4, phone6 = device["addresses"]
    up = wg_quick(phone, "up", conf)
    try:
        assert up.returncode == 0, up.stderr
        assert "wireguard-go" in up.stderr  # the userspace WireGuard, as on a phone
        phone.wait_ipv6_ready(ifname)
        # the phone reaches every node (IPv4, IPv6) and the approved LAN, through g
        targets = [addr for node in nodes for addr in (node.addr4(), node.addr6())]
        for target in [*targets, lan_link.b_addr4]:
            assert phone.wait_ping(target, deadline=20), (target, dump(mesh))
        # and every node reaches the phone
        for node in nodes:
            assert node.host.wait_ping(phone4, deadline=15), (node.name, dump(mesh))
            assert node.host.wait_ping(phone6, deadline=15), (node.name, dump(mesh))
        assert phone_site.public_addr4 in g.endpoints()[device["public_key"]]
        # wg-quick gave the DNS line to resolvconf; that server answers the mesh's names
        given = (tmp_path / "bin" / "resolvconf.given").read_text()
        assert f"nameserver {g.addr4()}" in given and "search mesh.internal" in given, given
        dig = phone.run("dig", "+short", f"@{g.addr4()}", "a.mesh.internal", "A", timeout=20)
        assert dig.stdout.split() == [a.addr4()], dig.stdout
        # removed: within seconds it reaches nothing, and its gateway holds it no more
        mesh.admin("device", "remove", "phone")
        removed = time.monotonic()
        while not reaches_nothing(phone, [g.addr4()]):
            assert time.monotonic() - removed < CUT_OFF, dump(mesh)
        print(f"cut off {time.monotonic() - removed:.1f} s after device remove")
        assert reaches_nothing(phone, [*targets, lan_link.b_addr4])
        assert device["public_key"] not in g.wg("peers")
        assert not a.host.ping(phone4, count=1, timeout=1)
        assert "device phone removed" in g.log_text()
    finally:
        down = wg_quick(phone, "down", conf)
    assert down.returncode == 0, down.stderr
    exit_device(mesh, phone, tmp_path)


def exit_device(mesh: MeshLab, phone: Host, tmp_path: Path) -> None:
    """The same phone as an exit device of g: its internet traffic (IPv4 and IPv6) leaves
    through g, masqueraded (the internet has no route back to a mesh address), and the
    mesh is still reached; the masquerade goes with the device."""
    g, a = mesh.nodes["g"], mesh.nodes["a"]
    web = mesh.net.public("web")
    conf = tmp_path / f"{mesh.lab.ifname('ex')}.conf"
    mesh.admin("approve", "g", "--exit-node")  # a device's exit must be an approved exit
    mesh.admin("device", "add", "tab", "--exit-node", "g", "--output", str(conf), "--no-qr")
    assert "AllowedIPs = 0.0.0.0/0, ::/0\n" in conf.read_text()
    up = wg_quick(phone, "up", conf)
    try:
        assert up.returncode == 0, up.stderr
        assert phone.wait_ping(web.addr4, deadline=20), dump(mesh)
        assert phone.wait_ping(web.addr6, deadline=10), dump(mesh)
        assert phone.wait_ping(a.addr4(), deadline=10), dump(mesh)
        assert "pywg_dev_" in g.host.run("nft", "list", "tables").stdout
        mesh.admin("device", "remove", "tab")
        end = time.monotonic() + CUT_OFF
        while "pywg_dev_" in g.host.run("nft", "list", "tables").stdout:
            assert time.monotonic() < end, dump(mesh)
            time.sleep(0.2)
        assert not phone.ping(web.addr4, count=1, timeout=1)
    finally:
        down = wg_quick(phone, "down", conf)
    assert down.returncode == 0, down.stderr
