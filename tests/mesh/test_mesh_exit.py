"""Exit nodes end to end: `pywg join --advertise-exit-node`, `--exit-node`, `pywg set`.

A public lab host, "web", stands for the internet: a TCP server on it
answers every connection with the source address it sees, and writes each
one down. A node ("c", behind its own NAT) sends its internet traffic
through exit node x1 (behind a NAT) or x2 (public), both masquerading it;
what web sees tells which way the traffic went, IPv4 and IPv6. The mesh
and c's own LAN stay reachable directly; exits switch and stop at run time
(`pywg set`, the control socket); with the exit killed or removed nothing
from c reaches web at all (the kill switch; a node started with
--exit-node-allow-leak goes out directly instead), and c leaves no rule,
route or nftables table behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from pywg.lab.mesh import PYWG, MeshLab, Node, dump

pytestmark = [pytest.mark.needs_lab("nft"), pytest.mark.time_limit(90)]

PORT = 8080
SERVER = """
import socket, sys
sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
sock.bind(("::", int(sys.argv[1])))
sock.listen(16)
while True:
    conn, peer = sock.accept()
    seen = peer[0].removeprefix("::ffff:")
    with open(sys.argv[2], "a") as log:
        log.write(seen + "\\n")
    conn.sendall(seen.encode())
    conn.close()
"""
CLIENT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as sock:
        print(sock.recv(100).decode())
except OSError as exc:
    print("failed:", exc)
"""


def seen_from(node: Node, address: str) -> str:
    """The source address the internet host at `address` sees for a connection from `node`
    ("failed: ..." when none is made)."""
    done = node.host.run(sys.executable, "-c", CLIENT, address, str(PORT), timeout=15)
    return done.stdout.strip()


def wait_seen(node: Node, address: str, want: str, seconds: float = 15) -> str:
    end = time.monotonic() + seconds
    got = ""
    while time.monotonic() < end:
        got = seen_from(node, address)
        if got == want:
            break
        time.sleep(0.3)
    return got


def pywg_set(node: Node, exit_node: str) -> subprocess.CompletedProcess[str]:
    return node.host.run(
        *PYWG, "set", "--exit-node", exit_node, "--state", str(node.state), check=False, timeout=20
    )


def policy_state(node: Node) -> str:
    """The node's rules, its routes in the exit table and its nftables tables."""
    parts = [node.host.ip(family, "rule", "show") for family in ("-4", "-6")]
    parts += [node.host.ip(f, "route", "show", "table", "all") for f in ("-4", "-6")]
    parts.append(node.host.run("nft", "list", "tables", timeout=10).stdout)
    return "\n".join(parts)


def test_exit_nodes_switch_stop_and_never_leak(mesh_lab: Callable[..., MeshLab]) -> None:
    mesh = mesh_lab()
    web = mesh.net.public("web")
    log = mesh.tmp / "web.log"
    web.host.popen(sys.executable, "-c", SERVER, str(PORT), str(log))
    x1_site = mesh.net.behind_nat("x1", "endpoint-independent")
    x2_site = mesh.net.public("x2")
    c_site = mesh.net.behind_nat("c", "endpoint-independent")
    x1 = mesh.node("x1", x1_site, extra=("--advertise-exit-node",))
    x2 = mesh.node("x2", x2_site, extra=("--advertise-exit-node",))
    mesh.wait_up(x1, 1)
    # pending until approved; then the roster marks them
    listing = json.loads(mesh.admin("nodes", "--json"))["nodes"]
    assert {n["name"]: n["pending_routes"] for n in listing}["x1"] == ["0.0.0.0/0", "::/0"]
    mesh.admin("approve", "x1", "--exit-node")
    mesh.admin("approve", "x2", "0.0.0.0/0", "::/0")
    assert [n["exit_node"] for n in json.loads(mesh.admin("nodes", "--json"))["nodes"]] == [
        True,
        True,
    ]
    c = mesh.node("c", c_site, extra=("--exit-node", "x1"))
    mesh.wait_up(c, 2)
    # through x1: web sees x1's NAT, IPv4 and IPv6
    assert wait_seen(c, web.addr4, x1_site.public_addr4) == x1_site.public_addr4, dump(mesh)
    assert wait_seen(c, web.addr6, x1_site.public_addr6) == x1_site.public_addr6, dump(mesh)
    # the mesh and c's own LAN (its router's inside address) directly
    assert c.host.wait_ping(x2.addr4(), deadline=20), dump(mesh)
    assert c.host.ping(x2.addr6()), dump(mesh)
    assert c.host.ping(c_site.link.a_addr4) and c.host.ping(c_site.link.a_addr6)
    # switched to x2, then to none, at run time
    done = pywg_set(c, "x2")
    assert done.returncode == 0 and "through exit node x2" in done.stdout, done.stderr
    assert wait_seen(c, web.addr4, x2_site.public_addr4) == x2_site.public_addr4, dump(mesh)
    assert wait_seen(c, web.addr6, x2_site.public_addr6) == x2_site.public_addr6, dump(mesh)
    assert pywg_set(c, "none").returncode == 0
    assert wait_seen(c, web.addr4, c_site.public_addr4) == c_site.public_addr4, dump(mesh)
    assert wait_seen(c, web.addr6, c_site.public_addr6) == c_site.public_addr6, dump(mesh)
    refused = pywg_set(c, "web")
    assert refused.returncode == 1 and "not an approved exit node" in refused.stderr
    assert pywg_set(c, "x1").returncode == 0
    assert wait_seen(c, web.addr4, x1_site.public_addr4) == x1_site.public_addr4, dump(mesh)
    # x1 dies (SIGKILL): nothing from c reaches web, not even around the tunnel
    assert x1.proc is not None
    x1.proc.kill()
    x1.proc.wait(10)
    x1.proc = None
    before = log.read_text().splitlines()
    for address in (web.addr4, web.addr6):
        assert seen_from(c, address).startswith("failed"), dump(mesh)
    assert not c.host.ping(web.addr4, count=2, timeout=3)
    # x1 removed from the mesh: no peer holds the default routes; still nothing (c hears
    # of it: the coordinator is reached around the tunnel)
    mesh.admin("remove", "x1")
    end = time.monotonic() + 15
    while "x1 is not an approved exit node" not in c.log_text() and time.monotonic() < end:
        time.sleep(0.3)
    assert "internet traffic is stopped" in c.log_text(), dump(mesh)
    for address in (web.addr4, web.addr6):
        assert seen_from(c, address).startswith("failed"), dump(mesh)
    assert log.read_text().splitlines() == before, "c's traffic leaked to the internet"
    assert c.host.ping(x2.addr4()), dump(mesh)  # the mesh still works
    # a node that allows the leak goes out directly while its exit is gone
    d_site = mesh.net.behind_nat("d", "endpoint-independent")
    d = mesh.node("d", d_site, extra=("--exit-node", "x1", "--exit-node-allow-leak"))
    mesh.wait_up(d, 2)
    assert wait_seen(d, web.addr4, d_site.public_addr4) == d_site.public_addr4, dump(mesh)
    assert "internet traffic goes out directly meanwhile" in d.log_text()
    # stopped: no rule, exit table route or nftables table left
    on = policy_state(c)
    assert "not from all fwmark 0xca6c lookup 51820" in on and "pywg_exit" in on, on
    assert "fwmark: 0xca6c" in c.wg(), c.wg()  # the WireGuard socket's mark
    mesh.stop(c)
    left = policy_state(c)
    assert "51820" not in left and "suppress_prefixlength" not in left, left
    assert "pywg_exit" not in left, left
