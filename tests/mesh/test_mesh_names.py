"""Names in a real mesh: `pywg join` answers NAME.mesh.internal and keeps /etc/hosts current.

The coordinator and the nodes run as processes on lab hosts (`pywg.lab.mesh`).
Each node's host has its own /etc/hosts and /etc/resolv.conf
(`pywg.lab.etc.private_etc`: `ip netns exec` binds them over the machine's),
the resolv.conf naming a stand-in upstream DNS server on a lab host that
knows one name. What is checked is what a program on the node sees:
`getent hosts` (glibc, through /etc/hosts), `dig` at the node's tunnel
addresses, and the hosts file after the node exits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from pywg.lab.etc import private_etc, upstream_dns
from pywg.lab.hosts import Host
from pywg.lab.mesh import MeshLab, Node, dump
from pywg.mesh.state import NODE_FILE

pytestmark = pytest.mark.needs_lab("nft", "dig", "getent")

PREFIX = "pwname"
UPSTREAM_NAME = "www.upstream.test"
UPSTREAM_ADDRESS = "192.0.2.80"
HOSTS_BEFORE = "127.0.0.1\tlocalhost\n::1\tlocalhost\n192.0.2.7\tprinter.lan  # kept\n"


def dig(host: Host, server: str, name: str, rdtype: str = "A", *extra: str) -> str:
    done = host.run(
        "dig", f"@{server}", name, rdtype, "+time=2", "+tries=2", *extra, check=False, timeout=15
    )
    assert done.returncode == 0, f"dig: {done.returncode} {done.stdout} {done.stderr}"
    return done.stdout


def short(host: Host, server: str, name: str, rdtype: str = "A", *extra: str) -> list[str]:
    return dig(host, server, name, rdtype, "+short", *extra).split()


def getent(host: Host, database: str, name: str) -> list[str]:
    """The addresses `getent DATABASE NAME` gives (none if the name is unknown)."""
    done = host.run("getent", database, name, check=False, timeout=10)
    assert done.returncode in (0, 2), f"getent: {done.returncode} {done.stderr}"  # 2: no name
    return sorted({line.split()[0] for line in done.stdout.splitlines() if line.strip()})


def wait_for(check: Callable[[], bool], seconds: float, step: float = 0.05) -> float | None:
    """Seconds until `check()` held (None: not within `seconds`)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if check():
            return time.monotonic() - start
        time.sleep(step)
    return None


def named_node(mesh: MeshLab, stack: ExitStack, name: str, upstream: str) -> Node:
    """`pywg join` on a public site whose host has its own /etc/hosts and a resolv.conf
    naming `upstream`. The node is given those files' own paths (--hosts-file,
    --resolv-conf), so it cannot reach the machine's files even if a bind mount of
    `ip netns exec` were missing; the programs the test runs there see them as /etc's."""
    site = mesh.net.public(name)
    resolv = f"nameserver {upstream}\n"
    files = {"hosts": HOSTS_BEFORE, "resolv.conf": resolv}
    etc = stack.enter_context(private_etc(site.host, files))
    extra = ("--hosts-file", str(etc / "hosts"), "--resolv-conf", str(etc / "resolv.conf"))
    return mesh.node(name, site, extra=(*extra, "--resolver", "hosts"))


def hosts_file(node: Node) -> str:
    return node.host.run("cat", "/etc/hosts").stdout  # as a program there sees it


@pytest.mark.time_limit(90)
def test_names_resolve_follow_the_roster_and_leave_hosts_as_it_was(
    mesh: MeshLab,
) -> None:
    machine_hosts = Path("/etc/hosts").read_bytes()
    upstream = mesh.net.public("dns")
    upstream_dns(upstream.host, upstream.addr4, "upstream.test", {"www": UPSTREAM_ADDRESS})
    with ExitStack() as stack:
        a = named_node(mesh, stack, "a", upstream.addr4)
        b = named_node(mesh, stack, "b", upstream.addr4)
        mesh.wait_up(a, 1)
        mesh.wait_up(b, 1)
        host = a.host

        # the OS resolver (glibc, /etc/hosts) and the DNS server on both tunnel addresses
        assert wait_for(lambda: b.addr4() in getent(host, "ahosts", "b.mesh.internal"), 5), dump(
            mesh
        )
        assert getent(host, "ahosts", "b.mesh.internal") == sorted([b.addr4(), b.addr6()])
        assert getent(host, "hosts", "b.mesh.internal")[0] in (b.addr4(), b.addr6())
        for server in (a.addr4(), a.addr6()):
            assert short(host, server, "b.mesh.internal", "A") == [b.addr4()], dump(mesh)
            assert short(host, server, "b.mesh.internal", "AAAA") == [b.addr6()]
        assert short(host, a.addr4(), "A.Mesh.Internal", "AAAA", "+tcp") == [a.addr6()]
        assert "status: NXDOMAIN" in dig(host, a.addr4(), "nobody.mesh.internal")
        nodata = dig(host, a.addr4(), "b.mesh.internal", "MX")
        assert "status: NOERROR" in nodata and "ANSWER: 0" in nodata and "SOA" in nodata
        # b's server answers a over the tunnel
        assert short(host, b.addr4(), "a.mesh.internal", "A") == [a.addr4()], dump(mesh)
        # other names: passed to the upstream resolv.conf named, over UDP and TCP
        assert short(host, a.addr4(), UPSTREAM_NAME) == [UPSTREAM_ADDRESS], dump(mesh)
        assert short(host, a.addr6(), UPSTREAM_NAME, "A", "+tcp") == [UPSTREAM_ADDRESS]
        assert "status: REFUSED" in dig(host, a.addr4(), "elsewhere.test")  # upstream's answer
        assert getent(host, "hosts", UPSTREAM_NAME) == [UPSTREAM_ADDRESS]
        assert "printer.lan  # kept" in hosts_file(a)

        # a new node resolves on a within 2 s of its join (its node file written)
        c = named_node(mesh, stack, "c", upstream.addr4)
        joined = c.state / NODE_FILE
        assert wait_for(joined.exists, 30, step=0.02) is not None, dump(mesh)
        seconds = wait_for(lambda: short(host, a.addr4(), "c.mesh.internal") != [], 5)
        assert seconds is not None and seconds < 2.0, (seconds, dump(mesh))
        print(f"c resolves on a {seconds:.2f} s after its join")
        assert wait_for(lambda: getent(host, "ahosts", "c.mesh.internal") != [], 2), dump(mesh)
        mesh.wait_up(c, 2)

        # removed: it stops resolving, in DNS and in /etc/hosts
        mesh.admin("remove", "c")
        gone = wait_for(lambda: "NXDOMAIN" in dig(host, a.addr4(), "c.mesh.internal"), 5)
        assert gone is not None, dump(mesh)
        assert wait_for(lambda: getent(host, "ahosts", "c.mesh.internal") == [], 2), dump(mesh)
        assert short(host, a.addr4(), "b.mesh.internal") == [b.addr4()]
        mesh.stop(c)

        # on exit each hosts file is as it was
        for node in (a, b):
            assert "# BEGIN pywg" in hosts_file(node)
            mesh.stop(node)
            assert hosts_file(node) == HOSTS_BEFORE, dump(mesh)
        assert getent(host, "hosts", "b.mesh.internal") == []
    assert Path("/etc/hosts").read_bytes() == machine_hosts
    assert not (Path("/etc/netns") / a.host.netns).exists()
