"""The interface moved to another network namespace, the daemon left where it started.

The container setup of wireguard.com/netns: pywgd and its UDP socket stay in
namespace A, `ip link set IF netns B` moves the TUN into B, which gives it
its addresses and routes. The daemon must go on forwarding for B, answer
`wg` in A (its UAPI socket is A's /var/run/wireguard), honour MTU changes
made in B, and exit once the interface is deleted in B: the TUN fd, not a
name lookup in A, tells it. wireguard-go is the peer, and runs the same move
as the reference.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from helpers.time_bounds import wait_for
from helpers.wg_nodes import IMPLS, Node, Pair, connect_pair, daemon_pids, make_pair
from pywg.asyncio.tun import Tun
from pywg.lab import Host, Lab
from pywg.lab.capture import UdpCapture
from pywg.lab.transfer import PacedStream, tcp_transfer

UAPI_DIR = Path("/var/run/wireguard")
EXIT_BOUND = 5.0  # seconds from `ip link del` in B to the daemon gone

PREFIX = "pwmv"

pytestmark = pytest.mark.needs_lab("wg", "wireguard-go", "ping", "pywgd")


def move(node: Node, inner: Host) -> None:
    """Move `node`'s interface into `inner` and give it there what it had: addresses, up."""
    node.host.ip("link", "set", node.ifname, "netns", inner.netns)
    inner.addr(node.ifname, f"{node.addr4}/24")
    inner.addr(node.ifname, f"{node.addr6}/112")
    inner.link_up(node.ifname)
    inner.wait_ipv6_ready(node.ifname)


def moved_pair(lab: Lab, impl: str, backend: str | None = None) -> tuple[Pair, Node, Node, Host]:
    """pywgd (on data plane `backend`) and wireguard-go peered; `impl`'s interface then
    moved into a third namespace."""
    pair = make_pair(lab, backend=backend)
    connect_pair(pair)
    node = pair.node(impl)
    other = pair.other(node)
    assert node.host.wait_ping(other.addr4)
    inner = lab.host("inner")
    move(node, inner)
    return pair, node, other, inner


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.time_limit(120)
def test_moved_interface_keeps_forwarding_and_wg_configures_it(lab: Lab, impl: str) -> None:
    _, node, other, inner = moved_pair(lab, impl)
    assert node.host.run("ip", "link", "show", node.ifname, check=False).returncode != 0
    # several housekeeping ticks (0.5 s) while a stream flows through the moved interface
    stream = PacedStream(inner, other.host, other.addr4, port=5301, rate=500_000, seconds=4)
    result = stream.result(30)
    assert result.ok and result.max_gap < 2.0, result
    assert tcp_transfer(other.host, inner, f"{node.addr6}", 4_000_000, port=5302).ok
    assert daemon_pids(node.host, node.ifname), f"{impl} exited after the move"
    # `wg` in the daemon's namespace still reads and changes it
    assert int(node.peer_dump(other)["latest_handshake"]) > 0
    node.wg("set", node.ifname, "peer", str(other.public_key), "persistent-keepalive", "17")
    assert node.peer_dump(other)["persistent_keepalive"] == "17"
    assert inner.ping(other.addr4)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.time_limit(90)
def test_daemon_exits_when_the_moved_interface_is_deleted(lab: Lab, impl: str) -> None:
    _, node, other, inner = moved_pair(lab, impl)
    assert inner.ping(other.addr4)
    time.sleep(1.5)  # past a few housekeeping ticks: the move alone ends nothing
    assert daemon_pids(node.host, node.ifname)
    socket_file = UAPI_DIR / f"{node.ifname}.sock"
    assert socket_file.exists()
    inner.ip("link", "del", node.ifname)
    assert wait_for(lambda: not daemon_pids(node.host, node.ifname), EXIT_BOUND)
    assert not socket_file.exists()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.time_limit(90)
def test_daemon_exits_when_the_new_namespace_is_deleted(lab: Lab, impl: str) -> None:
    """The container stops: its namespace goes, and the interface with it (the kernel
    deletes a TUN of a dying namespace). Holding the namespace, say by a socket made
    there to read the MTU, would keep the interface and the daemon alive."""
    _, node, other, inner = moved_pair(lab, impl)
    inner.ip("link", "set", node.ifname, "mtu", "1380")
    assert inner.ping(other.addr4)
    time.sleep(1.5)  # the MTU was read from inside the namespace meanwhile
    subprocess.run(["ip", "netns", "del", inner.netns], check=True, timeout=10)
    try:
        assert wait_for(lambda: not daemon_pids(node.host, node.ifname), EXIT_BOUND)
    finally:
        subprocess.run(["ip", "netns", "add", inner.netns], check=True, timeout=10)  # for close


def padded_sizes(pair: Pair, src: Host, capture: UdpCapture, size: int) -> set[int]:
    """Sizes of pywgd's datagrams on the wire for one ping of an IPv4 packet of `size` bytes."""
    since = time.monotonic()
    payload = str(size - 20 - 8)  # IPv4 and ICMP headers
    src.run("ping", "-c", "1", "-W", "1", "-M", "do", "-s", payload, pair.go.addr4, check=False)
    time.sleep(0.05)
    sender = (pair.underlay(pair.pw), pair.pw.port)
    return {len(d.payload) for d in capture.datagrams(source=sender, since=since)}


@pytest.mark.parametrize("backend", ["native", "pure"])
@pytest.mark.time_limit(90)
def test_mtu_set_in_the_new_namespace_is_honoured(lab: Lab, backend: str) -> None:
    """A packet is padded to a multiple of 16 but never past the MTU (whitepaper
    §5.4.6): a 1301-byte packet goes out as 1312 (+32) while the MTU is 1420, and as
    1301 (+32) once the daemon has seen the MTU set to 1301 inside the new namespace."""
    pair, node, other, inner = moved_pair(lab, "pywgd", backend)
    wire = pair.link.ifname(other.host)
    with UdpCapture(other.host, wire) as capture:
        sizes = padded_sizes(pair, inner, capture, 1301)
        assert 1312 + 32 in sizes, sorted(sizes)
        inner.ip("link", "set", node.ifname, "mtu", "1301")
        seen: set[int] = set()

        def padded_to_the_new_mtu() -> bool:
            seen.update(padded_sizes(pair, inner, capture, 1301))
            return 1301 + 32 in seen

        assert wait_for(padded_to_the_new_mtu, 10, step=0.2), sorted(seen)


def test_tun_follows_its_fd_not_its_name(lab: Lab) -> None:
    """`Tun` reads liveness and MTU through the fd, wherever the interface went and
    whatever now bears its old name; deleting it anywhere is seen at once."""
    outer, inner = lab.host("outer"), lab.host("inner")
    name = lab.ifname()
    tun = outer.call(lambda: Tun(name, mtu=1420))
    try:
        outer.ip("link", "set", name, "netns", inner.netns)
        inner.ip("link", "set", name, "name", f"{name[:13]}m", "mtu", "1280")
        stranger = ["mtu", "9000", "type", "veth", "peer", "name", f"{name[:13]}p"]
        outer.ip("link", "add", name, *stranger)  # another interface, same name
        assert outer.call(tun.alive)
        assert outer.call(tun.current_mtu) == 1280
        assert tun.name == f"{name[:13]}m"
        inner.ip("link", "set", tun.name, "mtu", "1360")
        assert outer.call(tun.current_mtu) == 1360
        inner.ip("link", "del", tun.name)
        assert not outer.call(tun.alive)
    finally:
        tun.close()
