"""pywgd next to wireguard-go where a user or a tool could tell them apart.

Each test runs the same operation on pywgd and on Debian's wireguard-go
(0.0.20220316), each in a namespace of its own, and checks that pywgd does
what wireguard-go does, or the better thing docs/daemon.md ("pywgd compared
with wireguard-go") says it does instead: interface name templates, bad
names, start-up errors, a file where the socket goes, signals, refused
listen port changes, the interface set down and up again, single allowed IPs
removed (`allowed_ip=-PREFIX`), and what both already do alike (own-key
rules, busy ports, SIGKILL, keepalives turned on, IPv6 disabled).

Where PYWG_UPSTREAM_WIREGUARD_GO names a newer wireguard-go binary (for
example one built from the upstream repository), the UAPI comparisons run
on it too: Debian's version predates `allowed_ip=-PREFIX`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from helpers.time_bounds import wait_for
from helpers.wg_nodes import (
    IMPLS,
    PORT,
    Pair,
    argv_for,
    connect_pair,
    handshake_time,
    make_pair,
    uapi_config,
)
from pywg.keys import PrivateKey
from pywg.lab import Host, Lab, wireguard
from pywg.lab.capture import UdpCapture
from pywg.lab.wireguard import WIREGUARD_GO, Impl, WgNode, endpoint
from pywg.system import uapi_client

PREFIX = "pwpar"
UAPI_DIR = Path("/var/run/wireguard")
START_TIMEOUT = 15.0
UPSTREAM = os.environ.get("PYWG_UPSTREAM_WIREGUARD_GO", "")
EINVAL, EADDRINUSE = -22, -98

pytestmark = pytest.mark.needs_lab("wg", "wireguard-go", "ping", "ss", "pywgd")


def sock_path(ifname: str) -> Path:
    return UAPI_DIR / f"{ifname}.sock"


def links(host: Host) -> list[str]:
    return [line.split(":")[1].strip() for line in host.ip("-o", "link", "show").splitlines()]


def foreground(
    host: Host, argv: list[str], ifname: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`argv -f TEMPLATE_OR_NAME` in the foreground, once socket `ifname` answers."""
    proc = host.popen(*argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_for(lambda: sock_path(ifname).exists() or proc.poll() is not None, START_TIMEOUT)
    assert proc.poll() is None, proc.communicate(timeout=5)
    assert uapi_client.errno_of(uapi_client.get(ifname)) == 0
    return proc


# -- names ----------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.time_limit(60)
def test_a_name_template_names_the_interface_socket_and_log(host: Host, impl: str) -> None:
    """`wg%d` (netdevice(7)): the kernel picks wg0, and the socket and the log say wg0."""
    base = host.lab.ifname("pw" if impl == "pywgd" else "go")
    real = f"{base}0"  # the first of the template in a fresh namespace
    proc = foreground(host, [*argv_for(impl), "-f", f"{base}%d"], real, {"LOG_LEVEL": "debug"})
    assert real in links(host)
    assert not sock_path(f"{base}%d").exists()
    assert host.run("wg", "show", real).returncode == 0
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    named = re.findall(r"^[A-Z]+: \((.*?)\) ", out.decode(errors="replace"), re.M)
    assert named and set(named) == {real}, out[-500:]
    assert not sock_path(real).exists()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.time_limit(60)
def test_bad_names_are_refused_alike(lab: Lab, impl: str) -> None:
    """Exit status 1 for a name the kernel refuses, a non-TUN's name, or one in use."""
    host = lab.host("n")
    host.ip("link", "add", "taken0", "type", "veth", "peer", "name", "taken1")
    names = [lab.ifname("pw") + "-much-too-long", "a/b", "a b", "..", "taken0"]
    if impl == "pywgd":
        names.append("")  # wireguard-go lets the kernel pick tunN; pywgd wants a name
    before = links(host)
    for name in names:
        done = host.run(*argv_for(impl), name, check=False, timeout=20)
        assert done.returncode == 1, (name, done)
        assert links(host) == before and not sock_path(name).exists(), name
        if impl == "pywgd":
            assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done
    # a name a running daemon serves: from its namespace (the TUN is busy) and from
    # another (the socket answers); the first daemon goes on
    first = lab.ifname("pw")
    assert host.run(*argv_for(impl), first, check=False, timeout=20).returncode == 0
    for where in (host, lab.host("other")):
        assert where.run(*argv_for(impl), first, check=False, timeout=20).returncode == 1
    assert uapi_client.errno_of(uapi_client.get(first)) == 0
    assert first not in links(lab.hosts["other"])


@pytest.mark.parametrize("argv", [["-f"], []], ids=["foreground", "daemonized"])
@pytest.mark.time_limit(60)
def test_a_start_up_failure_is_one_line_on_stderr(lab: Lab, argv: list[str]) -> None:
    """wireguard-go logs it on stdout; pywgd says it once, on stderr, even with LOG_LEVEL."""
    host = lab.host("f")
    host.ip("link", "add", "taken0", "type", "veth", "peer", "name", "taken1")
    env = ("env", "LOG_LEVEL=error")
    done = host.run(*env, *argv_for("pywgd"), *argv, "taken0", check=False, timeout=20)
    assert done.returncode == 1
    assert done.stdout == "", done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Failed to create TUN device" in lines[0], done.stderr


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.time_limit(60)
def test_a_file_where_the_socket_goes(host: Host, impl: str) -> None:
    """wireguard-go deletes whatever is at /var/run/wireguard/NAME.sock once nothing
    answers there; pywgd deletes only a dead socket, and refuses to start over a file."""
    ifname = host.lab.ifname("pw" if impl == "pywgd" else "go")
    sock_path(ifname).write_text("not a socket\n")
    try:
        done = host.run(*argv_for(impl), ifname, check=False, timeout=20)
        if impl == "pywgd":
            assert done.returncode == 1 and "is not a socket" in done.stderr, done
            assert sock_path(ifname).read_text() == "not a socket\n"
            assert ifname not in links(host)
        else:
            assert done.returncode == 0
            assert uapi_client.errno_of(uapi_client.get(ifname)) == 0
            host.ip("link", "del", ifname)
    finally:
        if sock_path(ifname).is_file():
            sock_path(ifname).unlink()


# -- signals ---------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.time_limit(60)
def test_hangup(host: Host, impl: str) -> None:
    """wireguard-go dies of SIGHUP and leaves its socket file; pywgd stops as on SIGTERM."""
    ifname = host.lab.ifname("pw" if impl == "pywgd" else "go")
    proc = foreground(host, [*argv_for(impl), "-f", ifname], ifname)
    proc.send_signal(signal.SIGHUP)
    proc.communicate(timeout=10)
    assert ifname not in links(host)
    if impl == "pywgd":
        assert proc.returncode == 0
        assert not sock_path(ifname).exists()
    else:
        assert proc.returncode == -signal.SIGHUP
        assert sock_path(ifname).exists()  # stale: the next start replaces it
        sock_path(ifname).unlink()


@pytest.mark.parametrize("signum", [signal.SIGUSR2, signal.SIGALRM], ids=["USR2", "ALRM"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.time_limit(60)
def test_signals_wireguard_go_ignores(host: Host, impl: str, signum: signal.Signals) -> None:
    ifname = host.lab.ifname("pw" if impl == "pywgd" else "go")
    proc = foreground(host, [*argv_for(impl), "-f", ifname], ifname)
    proc.send_signal(signum)
    time.sleep(0.5)
    assert proc.poll() is None, f"{impl} died of {signum.name}"
    assert uapi_client.errno_of(uapi_client.get(ifname)) == 0
    proc.terminate()
    proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert not sock_path(ifname).exists()


# -- the UDP port ----------------------------------------------------------------------

_HOLDER = """
import socket, sys, time
family, port = sys.argv[1], int(sys.argv[2])
if family == "4":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
else:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(family == "6"))
    s.bind(("::", port))
print("bound", flush=True)
time.sleep(60)
"""


@contextmanager
def port_held(host: Host, port: int, family: str = "both") -> Iterator[None]:
    """UDP `port` bound by another process in `host`: on IPv4 and IPv6 ("both"), or on
    "4" or "6" only."""
    proc = host.popen(sys.executable, "-c", _HOLDER, family, str(port), stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"bound"
        yield
    finally:
        proc.kill()
        proc.wait(5)


def bound_ports(host: Host) -> set[int]:
    """The local UDP ports bound in `host`'s namespace."""
    out = host.run("ss", "-Huln").stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()}


@pytest.mark.time_limit(90)
def test_a_refused_port_change_keeps_the_old_port(lab: Lab) -> None:
    """Both answer -EADDRINUSE for a busy port. pywgd keeps its port and its tunnel;
    wireguard-go has closed its socket before trying, and is left with none."""
    pair = make_pair(lab)
    connect_pair(pair)
    assert pair.pw.host.wait_ping(pair.go.addr4)
    busy = 40060
    for node in (pair.pw, pair.go):
        with port_held(node.host, busy):
            assert uapi_client.set_(node.ifname, f"listen_port={busy}\n") == EADDRINUSE
    device = uapi_config(uapi_client.get(pair.pw.ifname))["device"]
    assert device["listen_port"] == str(pair.pw.port)
    assert pair.pw.port in bound_ports(pair.pw.host)
    assert "listen_port" not in uapi_config(uapi_client.get(pair.go.ifname))["device"]
    assert pair.go.port not in bound_ports(pair.go.host)
    # wireguard-go sends nothing now; pywgd's side of the tunnel still answers
    uapi_client.set_(pair.go.ifname, f"listen_port={pair.go.port}\n")
    assert pair.go.host.wait_ping(pair.pw.addr4)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.needs_lab("setpriv")
@pytest.mark.time_limit(60)
def test_a_refused_port_says_why(host: Host, impl: str) -> None:
    """Without CAP_NET_BIND_SERVICE, port 80 cannot be bound: pywgd answers the
    kernel's EACCES, which `wg` prints; wireguard-go answers EADDRINUSE for any
    failed bind."""
    ifname = host.lab.ifname("pw" if impl == "pywgd" else "go")
    no_bind = ("setpriv", "--bounding-set=-net_bind_service", "--inh-caps=-net_bind_service")
    proc = host.popen(*no_bind, *argv_for(impl), ifname, stderr=subprocess.DEVNULL)
    assert proc.wait(START_TIMEOUT) == 0
    refused = host.run("wg", "set", ifname, "listen-port", "80", check=False)
    assert refused.returncode != 0
    reason = "Permission denied" if impl == "pywgd" else "Address already in use"
    assert reason in refused.stderr, refused.stderr
    host.run("wg", "set", ifname, "listen-port", "1080")
    assert 1080 in bound_ports(host)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.time_limit(90)
def test_the_interface_set_down_and_up_keeps_port_and_session(lab: Lab, impl: str) -> None:
    """Neither daemon stops on `ip link set down` (wireguard-go's TUN watcher reports
    no down on Linux 6): the port stays bound and the session goes on after up."""
    pair: Pair = make_pair(lab)
    connect_pair(pair)
    node = pair.node(impl)
    other = pair.other(node)
    assert node.host.wait_ping(other.addr4)
    since = handshake_time(node, other)
    node.host.ip("link", "set", node.ifname, "down")
    time.sleep(1.5)  # past wireguard-go's 1 s TUN poll and pywgd's housekeeping ticks
    assert node.port in bound_ports(node.host)
    assert uapi_config(uapi_client.get(node.ifname))["device"]["listen_port"] == str(node.port)
    node.host.ip("link", "set", node.ifname, "up")
    assert node.host.wait_ping(other.addr4)
    assert handshake_time(node, other) == since  # no new handshake was needed


# -- allowed IPs removed one by one ----------------------------------------------------

P1, P2 = "11" * 32, "22" * 32
REMOVALS = [
    (
        "one-of-two",
        [
            f"public_key={P1}\nallowed_ip=198.19.1.0/24\nallowed_ip=fd19::/64\n",
            f"public_key={P1}\nallowed_ip=-198.19.1.0/24\n",
        ],
    ),
    (
        "not-there",
        [
            f"public_key={P1}\nallowed_ip=198.19.1.0/24\n",
            f"public_key={P1}\nallowed_ip=-198.19.9.0/24\nallowed_ip=-198.19.0.0/16\n",
        ],
    ),
    (
        "another-peers",
        [
            f"public_key={P1}\nallowed_ip=198.19.1.0/24\npublic_key={P2}\nallowed_ip=198.19.2.0/24\n",
            f"public_key={P1}\nallowed_ip=-198.19.2.0/24\n",
        ],
    ),
    (
        "host-bits",
        [
            f"public_key={P1}\nallowed_ip=198.19.1.0/24\n",
            f"public_key={P1}\nallowed_ip=-198.19.1.77/24\n",
        ],
    ),
    (
        "taken-then-dropped",
        [
            f"public_key={P2}\nallowed_ip=198.19.2.0/24\npublic_key={P1}\n",
            f"public_key={P1}\nallowed_ip=198.19.2.0/24\nallowed_ip=-198.19.2.0/24\n",
        ],
    ),
    (
        "after-replace",
        [
            f"public_key={P1}\nallowed_ip=198.19.1.0/24\n",
            f"public_key={P1}\nreplace_allowed_ips=true\nallowed_ip=198.19.4.0/24\n"
            "allowed_ip=-198.19.4.0/24\nallowed_ip=198.19.5.0/24\n",
        ],
    ),
]


def _run_removal(ifname: str, requests: list[str]) -> tuple[list[int], dict[str, Any]]:
    assert uapi_client.set_(ifname, "replace_peers=true\n") == 0
    codes = [uapi_client.set_(ifname, body) for body in requests]
    return codes, uapi_config(uapi_client.get(ifname))["peers"]


@pytest.fixture(scope="module")
def bare() -> Iterator[dict[str, tuple[Host, str]]]:
    """pywgd, Debian's wireguard-go and (if named) upstream's, started as wg-quick starts
    them, each in a host of its own: name -> (host, interface)."""
    commands = {impl: argv_for(impl) for impl in IMPLS}
    if UPSTREAM:
        commands["upstream"] = [UPSTREAM]
    with Lab(PREFIX) as lab:
        found = {}
        for name, argv in commands.items():
            host = lab.host(name.replace("-", ""))
            ifname = lab.ifname("bd")
            proc = host.popen(*argv, ifname, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assert proc.wait(START_TIMEOUT) == 0, f"{name} did not start"
            found[name] = (host, ifname)
        yield found


@pytest.mark.parametrize(("case", "requests"), REMOVALS, ids=[c[0] for c in REMOVALS])
@pytest.mark.time_limit(60)
def test_single_allowed_ips_removed(
    bare: dict[str, tuple[Host, str]], case: str, requests: list[str]
) -> None:
    """`allowed_ip=-PREFIX` (upstream 0.0.20250522): each line in order; Debian's
    0.0.20220316 predates it and answers -EINVAL."""
    codes, peers = _run_removal(bare["pywgd"][1], requests)
    assert codes == [0] * len(requests)
    assert EINVAL in _run_removal(bare["wireguard-go"][1], requests)[0]
    if "upstream" in bare:
        assert _run_removal(bare["upstream"][1], requests) == (codes, peers)
    expected = {
        "one-of-two": {P1: {"fd19::/64"}},
        "not-there": {P1: {"198.19.1.0/24"}},
        "another-peers": {P1: {"198.19.1.0/24"}, P2: {"198.19.2.0/24"}},
        "host-bits": {P1: set()},
        "taken-then-dropped": {P1: set(), P2: set()},
        "after-replace": {P1: {"198.19.5.0/24"}},
    }[case]
    assert {key: set(peer["allowed_ip"]) for key, peer in peers.items()} == expected


# -- the same on both, side by side ----------------------------------------------------


def _all_alike(bare: dict[str, tuple[Host, str]], request: str) -> dict[str, Any]:
    """`request` (a set body) on every bare daemon: the same errno and then the same
    configuration everywhere (counters and handshake times aside); that configuration."""
    answers = {}
    for name, (_, ifname) in bare.items():
        code = uapi_client.set_(ifname, request)
        answers[name] = (code, uapi_config(uapi_client.get(ifname)))
    mine = answers["pywgd"]
    assert all(answer == mine for answer in answers.values()), answers  # peers in any order
    return mine[1]


@pytest.mark.time_limit(60)
def test_own_key_rules_alike(bare: dict[str, tuple[Host, str]]) -> None:
    """A device is never its own peer: a peer with our public key is ignored, and a new
    private key whose public key is a peer's removes that peer."""
    k1, k2, k3 = (PrivateKey.generate() for _ in range(3))
    p1, p2, p3 = (key.public_key.to_hex() for key in (k1, k2, k3))
    zero = "0" * 64
    config = _all_alike(bare, f"private_key={zero}\nreplace_peers=true\nlisten_port=40100\n")
    assert config == {"device": {"listen_port": "40100"}, "peers": {}}  # no key: no key line
    steps = [
        f"private_key={k1.to_hex()}\npublic_key={p2}\nallowed_ip=10.0.0.2/32\n"
        f"public_key={p3}\nallowed_ip=10.0.0.3/32\n",
        f"public_key={p1}\nallowed_ip=10.0.0.1/32\nendpoint=198.18.0.1:5\n",
        f"private_key={k2.to_hex()}\n",
        f"private_key={k3.to_hex()}\npublic_key={p3}\nallowed_ip=10.0.0.9/32\npublic_key={p1}\n",
        f"private_key={zero}\npublic_key={p2}\n",
    ]
    seen = [set(_all_alike(bare, step)["peers"]) for step in steps]
    assert seen == [{p2, p3}, {p2, p3}, {p3}, {p1}, {p1, p2}]


@pytest.mark.time_limit(60)
def test_get_reply_alike(bare: dict[str, tuple[Host, str]]) -> None:
    """Byte for byte, for a peer that never handshook: fields, order, zeros."""
    key, peer = PrivateKey.generate(), PrivateKey.generate().public_key.to_hex()
    request = (
        f"private_key={key.to_hex()}\nlisten_port=40130\nfwmark=3\nreplace_peers=true\n"
        f"public_key={peer}\nendpoint=198.18.0.9:51820\nallowed_ip=198.19.9.0/24\n"
        f"public_key={'33' * 32}\npersistent_keepalive_interval=0\n"
    )
    replies = {}
    for name, (_, ifname) in bare.items():
        assert uapi_client.set_(ifname, request) == 0
        replies[name] = uapi_client.get(ifname)
    # Go lists peers in map order: the device's lines, then each peer's, in any order
    blocks = {}
    for name, reply in replies.items():
        assert reply.endswith("\nerrno=0\n\n"), reply
        device, *peers = reply.removesuffix("errno=0\n\n").split("public_key=")
        blocks[name] = (device, sorted(peers))
    assert all(block == blocks["pywgd"] for block in blocks.values()), replies
    assert "last_handshake_time_sec=0\nlast_handshake_time_nsec=0\n" in replies["pywgd"]


@pytest.mark.parametrize("family", ["4", "6"])
@pytest.mark.time_limit(60)
def test_a_port_busy_on_one_family_is_busy_alike(
    bare: dict[str, tuple[Host, str]], family: str
) -> None:
    """Both bind IPv4 and IPv6 (pywgd one dual-stack socket, wireguard-go two): a port
    taken on either family is refused with -EADDRINUSE."""
    busy = 40110
    for name, (host, ifname) in bare.items():
        assert uapi_client.set_(ifname, "listen_port=40111\n") == 0
        with port_held(host, busy, family):
            assert uapi_client.set_(ifname, f"listen_port={busy}\n") == EADDRINUSE, name


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.time_limit(60)
def test_killed_daemon_leaves_a_socket_the_next_one_replaces(host: Host, impl: str) -> None:
    """SIGKILL: the TUN goes with the fd; the socket file stays, and is replaced."""
    ifname = host.lab.ifname("pw" if impl == "pywgd" else "go")
    proc = foreground(host, [*argv_for(impl), "-f", ifname], ifname)
    proc.kill()
    proc.communicate(timeout=10)
    assert wait_for(lambda: ifname not in links(host), 5)
    assert sock_path(ifname).exists()
    again = host.run(*argv_for(impl), ifname, check=False, timeout=20)
    assert again.returncode == 0, again
    assert uapi_client.errno_of(uapi_client.get(ifname)) == 0
    host.ip("link", "del", ifname)
    assert wait_for(lambda: not sock_path(ifname).exists(), 5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.time_limit(90)
def test_keepalive_turned_on_is_sent_at_once(lab: Lab, impl: str) -> None:
    """xplatform UAPI: turning persistent keepalive on sends one at once (a handshake
    first when there is no session); changing a running interval sends nothing."""
    pair = make_pair(lab)
    node = pair.node(impl)
    other = pair.other(node)
    other.add_peer(node)  # no endpoint: the first packet comes from `node`
    sender = (pair.underlay(node), node.port)
    with UdpCapture(other.host, pair.link.ifname(other.host)) as capture:

        def kinds_after(change: Callable[[], None]) -> list[int]:
            time.sleep(0.3)
            since = time.monotonic()
            change()
            time.sleep(1.0)
            return [d.payload[0] for d in capture.datagrams(source=sender, since=since)]

        peer = ("set", node.ifname, "peer", str(other.public_key))
        created = kinds_after(
            lambda: node.add_peer(other, endpoint=pair.endpoint(other), persistent_keepalive=25)
        )
        assert created == [1, 4], created  # initiation, then the keepalive
        node.wg(*peer, "persistent-keepalive", "0")
        assert kinds_after(lambda: node.wg(*peer, "persistent-keepalive", "10")) == [4]
        assert kinds_after(lambda: node.wg(*peer, "persistent-keepalive", "20")) == []


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.time_limit(90)
def test_ipv6_disabled_in_the_namespace(lab: Lab, impl: str) -> None:
    """disable_ipv6: both start, carry IPv4, and move to a new port."""
    a, b = lab.host("a"), lab.host("b")
    link = lab.link(a, b)
    a.sysctl("net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
    ifname = lab.ifname("pw" if impl == "pywgd" else "go")
    proc = a.popen(*argv_for(impl), ifname, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert proc.wait(START_TIMEOUT) == 0
    key = PrivateKey.generate()
    node = WgNode(lab, a, Impl(impl, tuple(argv_for(impl))), ifname, key, PORT, "198.19.1.1", "")
    node.set(f"private_key={key.to_hex()}\nlisten_port={PORT}\n")
    a.addr(ifname, f"{node.addr4}/24")
    a.link_up(ifname)
    go = wireguard.start_node(lab, b, WIREGUARD_GO, net=1, index=2)
    node.add_peer(go, endpoint=endpoint(link.b_addr4, go.port), allowed_ips=[f"{go.addr4}/32"])
    go.add_peer(node, endpoint=endpoint(link.a_addr4, node.port), allowed_ips=[f"{node.addr4}/32"])
    assert a.wait_ping(go.addr4)
    node.set("listen_port=40120\n")
    assert 40120 in bound_ports(a)
    assert a.wait_ping(go.addr4)  # go learns the new port from the authenticated reply
    assert go.peer_status(node).endpoint == endpoint(link.a_addr4, 40120)
