"""The access policy end to end: real `pywg coordinator serve`, `pywg join` and a phone.

One mesh (pywg.lab.mesh, no relay: every host is public) for every check:
nodes ``srv`` and ``cli``; ``bad``, a modified agent that ignores the
rules its roster gives it (its own filter stays off, as a node that tampers
with its copy would have it); ``phone``, a plain WireGuard device
(wireguard-go, `wg-quick`) with ``srv`` as its gateway. Each runs TCP and
UDP echo services (tests/helpers/policy_probe.py). Without a policy every
probe passes; with one (`pywg coordinator policy set`):

- allowed TCP, UDP and ICMP pass with their replies, the rest is dropped at
  the receiver, over IPv4 and IPv6; nodes that may not talk are not peers;
- ``bad`` reaches only what ``srv`` lets in, though its own filter is off
  (and others reach all of ``bad``: the tampering is real);
- the phone is held to its rules by its gateway, both ways, also towards
  ``bad``, whose own filter would let anything in;
- a live change (`policy set` while a connection runs) applies within
  LIVE_CHANGE seconds, measured, and the running allowed connection goes on.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.policy_probe import EchoServices, HeldConnection, Probe, expect, tcp_echo, udp_echo
from pywg.lab.hosts import Host
from pywg.lab.mesh import MeshLab, Node, dump

pytestmark = pytest.mark.needs_lab("wg-quick", "wireguard-go")

LIVE_CHANGE = 2.0  # seconds from `policy set` to every node enforcing it (docs/policy.md)
TCP, UDP = (8080, 9090), (5353, 5454)
# an agent that ignores the rules of its roster: its tunnel's filter is never set
TAMPERED = (
    sys.executable,
    "-c",
    "import sys\n"
    "from pywg.asyncio.tunnel import Tunnel\n"
    "Tunnel.set_inbound_rules = lambda self, rules: None\n"
    "from pywg.cmd.main import main\n"
    "sys.exit(main())\n",
)
POLICY = """{
  "rules": [
    {"from": ["cli"], "to": ["srv:8080/tcp", "srv:5353/udp", "srv:*/icmp", "phone:*/icmp"]},
    {"from": ["bad"], "to": ["srv:8080/tcp"]},
    {"from": ["phone"], "to": ["bad:8080/tcp"]},
  ],
}
"""
# the live change: cli may reach srv's TCP 9090 now, and no longer its UDP 5353
CHANGED = POLICY.replace('"srv:5353/udp"', '"srv:9090/tcp"')


def wait_for(what: str, check: Callable[[], bool], seconds: float, mesh: MeshLab) -> float:
    """Poll `check` until true; the seconds it took (AssertionError after `seconds`)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"{what}: not within {seconds} s\n{dump(mesh)}")
        time.sleep(0.05)
    return time.monotonic() - start


def peers(node: Node) -> int:
    return len([line for line in node.wg("peers").splitlines() if line])


def add_phone(mesh: MeshLab, tmp_path: Path, srv: Node) -> tuple[Host, str, str]:
    """The phone, up through gateway srv; its host and addresses."""
    phone = mesh.net.public("phone").host
    port = srv.wg("listen-port").strip()
    conf = tmp_path / f"{mesh.lab.ifname('ph')}.conf"  # wg-quick names the interface after it
    mesh.admin(
        "device", "add", "phone", "--gateway", "srv", "--no-dns", "--no-qr",
        "--endpoint", f"{srv.site.addr4}:{port}", "--output", str(conf),
    )  # fmt: skip
    up = phone.run(
        "env", "WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go", "wg-quick", "up", str(conf),
        check=False, timeout=30,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    phone.wait_ipv6_ready(conf.stem)
    (device,) = json.loads(mesh.admin("nodes", "--json"))["devices"]
    phone4, phone6 = device["addresses"]
    for node in mesh.nodes.values():  # every node routes the phone's addresses to srv
        assert node.host.wait_ping(phone4, deadline=15), (node.name, dump(mesh))
        assert node.host.wait_ping(phone6, deadline=15), (node.name, dump(mesh))
    return phone, phone4, phone6


def probes(srv: Node, cli: Node, bad: Node, phone: Host, phone_addrs: list[str]) -> list[Probe]:
    """Every probe of policy POLICY, over IPv4 and IPv6, with the outcome it should have."""
    found: list[Probe] = []
    for v, (s, c, b, p) in enumerate(
        zip(
            [srv.addr4(), srv.addr6()],
            [cli.addr4(), cli.addr6()],
            [bad.addr4(), bad.addr6()],
            phone_addrs,
            strict=True,
        )
    ):
        ip = f"IPv{4 + 2 * v}"
        found += [
            (f"cli -> srv tcp 8080 {ip}", lambda s=s: tcp_echo(cli.host, s, 8080), True),
            (f"cli -> srv tcp 9090 {ip}", lambda s=s: tcp_echo(cli.host, s, 9090), False),
            (f"cli -> srv udp 5353 {ip}", lambda s=s: udp_echo(cli.host, s, 5353), True),
            (f"cli -> srv udp 5454 {ip}", lambda s=s: udp_echo(cli.host, s, 5454), False),
            (f"cli -> srv ping {ip}", lambda s=s: cli.host.ping(s, count=1, timeout=1), True),
            (f"srv -> cli tcp 8080 {ip}", lambda c=c: tcp_echo(srv.host, c, 8080), False),
            (f"srv -> cli ping {ip}", lambda c=c: srv.host.ping(c, count=1, timeout=1), False),
            (f"cli -> bad ping {ip}", lambda b=b: cli.host.ping(b, count=1, timeout=1), False),
            # bad's own filter is off: it reaches only what srv lets in; srv reaches it all
            (f"bad -> srv tcp 8080 {ip}", lambda s=s: tcp_echo(bad.host, s, 8080), True),
            (f"bad -> srv tcp 9090 {ip}", lambda s=s: tcp_echo(bad.host, s, 9090), False),
            (f"bad -> srv udp 5353 {ip}", lambda s=s: udp_echo(bad.host, s, 5353), False),
            (f"srv -> bad tcp 9090 {ip}", lambda b=b: tcp_echo(srv.host, b, 9090), True),
            # the phone enforces nothing; its gateway srv holds it both ways
            (f"phone -> bad tcp 8080 {ip}", lambda b=b: tcp_echo(phone, b, 8080), True),
            (f"phone -> bad tcp 9090 {ip}", lambda b=b: tcp_echo(phone, b, 9090), False),
            (f"bad -> phone tcp 8080 {ip}", lambda p=p: tcp_echo(bad.host, p, 8080), False),
            (f"cli -> phone ping {ip}", lambda p=p: cli.host.ping(p, count=1, timeout=1), True),
            (f"cli -> phone tcp 8080 {ip}", lambda p=p: tcp_echo(cli.host, p, 8080), False),
            (f"phone -> srv tcp 8080 {ip}", lambda s=s: tcp_echo(phone, s, 8080), False),
        ]
    return found


@pytest.mark.time_limit(60)
def test_policy_through_the_mesh(mesh_lab: Callable[..., MeshLab], tmp_path: Path) -> None:
    mesh = mesh_lab(own_relay=False, tls=False)
    srv = mesh.node("srv", mesh.net.public("srv"))
    cli = mesh.node("cli", mesh.net.public("cli"))
    bad = mesh.node("bad", mesh.net.public("bad"), command=TAMPERED)
    for node in (srv, cli, bad):
        mesh.wait_up(node, 2)
    phone, *phone_addrs = add_phone(mesh, tmp_path, srv)
    services = [EchoServices(h, tcp=TCP, udp=UDP) for h in (srv.host, cli.host, bad.host, phone)]
    try:
        checks = probes(srv, cli, bad, phone, phone_addrs)
        # no policy: everything passes
        failed = expect((what, probe, True) for what, probe, _ in checks)
        assert not failed, "\n".join([*failed, dump(mesh)])

        policy = tmp_path / "policy.json"
        policy.write_text(POLICY)
        mesh.admin("policy", "set", str(policy))
        took = wait_for(
            "the first policy",
            lambda: (
                peers(cli) == 1
                and peers(bad) == 1
                and not tcp_echo(cli.host, srv.addr4(), 9090, 0.3)
            ),
            LIVE_CHANGE + 3,
            mesh,
        )
        print(f"first policy in force after {took:.2f} s")
        failed = expect(checks)
        assert not failed, "\n".join([*failed, dump(mesh)])
        live_change(mesh, srv, cli, tmp_path)
    finally:
        for service in services:
            service.close()


def live_change(mesh: MeshLab, srv: Node, cli: Node, tmp_path: Path) -> None:
    """CHANGED in force within LIVE_CHANGE s, measured from `policy set`'s return; an
    allowed connection open across it goes on."""
    held = [HeldConnection(cli.host, address, 8080) for address in (srv.addr4(), srv.addr6())]
    try:
        changed = tmp_path / "changed.json"
        changed.write_text(CHANGED)
        mesh.admin("policy", "set", str(changed))
        took = wait_for(
            "the changed policy",
            lambda: (
                all(tcp_echo(cli.host, a, 9090, 0.2) for a in (srv.addr4(), srv.addr6()))
                and not any(udp_echo(cli.host, a, 5353, 0.2) for a in (srv.addr4(), srv.addr6()))
            ),
            LIVE_CHANGE,
            mesh,
        )
        print(f"live policy change in force after {took:.2f} s")
        assert all(connection.echoes() for connection in held), dump(mesh)
    finally:
        for connection in held:
            connection.close()
