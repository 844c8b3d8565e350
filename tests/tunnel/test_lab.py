"""The namespace lab (pywg.lab): hosts, links, routing, transfers, NATs, loss, the relay
and, above all, cleanup.

Needs root and iproute2; skipped otherwise. Every lab here uses the prefix
"pwt" and a random tag, so two test runs at once never collide.
"""

from __future__ import annotations

import itertools
import math
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pywg.lab import (
    Host,
    Internet,
    Lab,
    LabError,
    Loss,
    Relay,
    RelayEnds,
    add_nat,
    cleanup_stale,
    tcp_transfer,
)
from pywg.lab import hosts as labmod
from pywg.lab.capture import receive_until

pytestmark = pytest.mark.needs_lab

PREFIX = "pwt"


def netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_two_hosts_ping_both_ways() -> None:
    with Lab(PREFIX) as lab:
        a, b = lab.host("a"), lab.host("b")
        link = lab.link(a, b)
        assert (link.a_addr4, link.b_addr4) == ("198.18.1.1", "198.18.1.2")
        assert (link.a_addr6, link.b_addr6) == ("fd18::1:1", "fd18::1:2")
        assert a.netns.startswith(f"{PREFIX}-{os.getpid()}-") and a.netns.endswith("-a")
        assert "198.18.1.1/24" in a.ip("addr", "show", "dev", link.a_if)
        assert "fd18::1:2/112" in b.ip("addr", "show", "dev", link.b_if)
        # v6 must work at once: no DAD, and link() waited for IPv6 to see the carrier
        start = time.monotonic()
        assert a.ping(link.b_addr6, count=1, timeout=5)
        assert time.monotonic() - start < 0.9, "first IPv6 ping needed a neighbour retransmit"
        assert a.ping(link.b_addr4, count=2)
        assert b.ping(link.a_addr4, count=2)
        assert b.ping(link.a_addr6, count=2)


def test_python_ping_fallback_matches() -> None:
    with Lab(PREFIX) as lab:
        a, b = lab.host("a"), lab.host("b")
        link = lab.link(a, b)
        for address in (link.b_addr4, link.b_addr6):
            assert labmod._python_ping(a, address, 2, 5)
        start = time.monotonic()
        assert not labmod._python_ping(a, "198.18.1.77", 1, 1)  # nobody there
        assert not labmod._python_ping(a, "fd18::1:77", 1, 1)
        assert time.monotonic() - start < 10


def test_link_options_and_subnets() -> None:
    with Lab(PREFIX) as lab:
        a, b, c = lab.host("a"), lab.host("b"), lab.host("c")
        first = lab.link(a, b, v6=False, mtu=1420)
        second = lab.link(a, c, subnet=7, v4=False)
        third = lab.link(b, c)
        assert (first.subnet, second.subnet, third.subnet) == (1, 7, 2)
        assert "mtu 1420" in b.ip("link", "show", "dev", first.b_if)
        with pytest.raises(LabError):
            _ = first.a_addr6
        with pytest.raises(LabError):
            _ = second.a_addr4
        # each end by host: its side, interface and addresses
        assert (second.side(a), second.side(c)) == (1, 2)
        assert (second.ifname(a), second.ifname(c)) == (second.a_if, second.b_if)
        assert (third.address(b), third.address(c, 6)) == (third.a_addr4, third.b_addr6)
        with pytest.raises(LabError, match="not an end"):
            second.address(b)
        with pytest.raises(LabError):
            second.address(c, 4)  # no IPv4 on this link
        with pytest.raises(LabError):
            lab.link(a, b, subnet=7)  # already used
        with pytest.raises(LabError):
            lab.host("a")  # already used
        assert a.ping(first.b_addr4, count=1)
        assert c.ping(second.a_addr6, count=1)


def test_receive_until_drains_every_socket_and_stops() -> None:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        got: list[bytes] = []
        stop = threading.Event()
        reader = threading.Thread(target=receive_until, args=(stop, socks[:2], got.append))
        reader.start()
        for i in range(5):  # several per socket: each wakeup drains what is there
            for target in socks[:2]:
                socks[2].sendto(b"%d" % i, target.getsockname())
        end = time.monotonic() + 5
        while len(got) < 10 and time.monotonic() < end:
            time.sleep(0.01)
        stop.set()
        reader.join(2)
        assert not reader.is_alive() and sorted(got) == sorted([b"%d" % i for i in range(5)] * 2)
        reader = threading.Thread(
            target=receive_until, args=(threading.Event(), socks[:1], got.append)
        )
        reader.start()
        socks[0].close()  # closed under it: the reader ends by itself
        reader.join(2)
        assert not reader.is_alive()
    finally:
        for sock in socks:
            sock.close()


def test_ifname_unique_and_short() -> None:
    with Lab(PREFIX) as one, Lab(PREFIX) as two:
        names = [one.ifname("wg") for _ in range(50)] + [two.ifname("wg") for _ in range(50)]
        names.append(one.ifname("a-very-long-interface-base"))
        assert len(set(names)) == len(names)
        for name in names:
            assert 1 <= len(name) <= 15, name
            assert all(ch.isalnum() or ch in "_=+.-" for ch in name), name
        # a UAPI socket a daemon left behind is removed at close
        Path("/var/run/wireguard").mkdir(parents=True, exist_ok=True)
        leftover = Path("/var/run/wireguard") / f"{names[0]}.sock"
        leftover.touch()
    assert not leftover.exists()


def test_tcp_transfer_20mb_v4_and_v6() -> None:
    with Lab(PREFIX) as lab:
        a, b = lab.host("a"), lab.host("b")
        link = lab.link(a, b)
        for address in (link.b_addr4, link.b_addr6):
            result = tcp_transfer(a, b, address, 20 << 20, timeout=25)
            assert result.ok, result
            assert result.sent_bytes == result.received_bytes == 20 << 20
            assert result.sent_sha256 == result.received_sha256
            assert result.seconds > 0
        # the data depends on the seed, not just the length
        other = tcp_transfer(b, a, link.a_addr4, 1 << 20, seed=1, timeout=15)
        same = tcp_transfer(b, a, link.a_addr4, 1 << 20, seed=0, timeout=15)
        assert other.ok and same.ok and other.sent_sha256 != same.sent_sha256


def test_tcp_transfer_failure_is_a_lab_error() -> None:
    with Lab(PREFIX) as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.link(a, b)
        start = time.monotonic()
        with pytest.raises(LabError, match="receiver"):  # b does not own this address
            tcp_transfer(a, b, "198.18.1.1", 1000, timeout=10)
        assert time.monotonic() - start < 10


def test_run_errors_name_the_command() -> None:
    with Lab(PREFIX) as lab:
        a = lab.host("a")
        with pytest.raises(LabError) as info:
            a.run("ip", "link", "show", "dev", "nosuchdev0")
        assert "nosuchdev0" in str(info.value) and "exit" in str(info.value)
        assert a.run("false", check=False).returncode == 1
        assert a.python("import sys; print(sys.argv[1:])", "x", "y").strip() == "['x', 'y']"
        with pytest.raises(LabError, match="boom"):
            a.python("raise SystemExit('boom')")
        with pytest.raises(LabError, match="timed out"):
            a.run("sleep", "5", timeout=0.5)
        with pytest.raises(LabError):
            a.sysctl("kernel.hostname=nope")  # not per-namespace: refused


def test_cleanup_on_exception() -> None:
    names: list[str] = []
    with pytest.raises(ZeroDivisionError), Lab(PREFIX) as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.link(a, b)
        names = [a.netns, b.netns]
        assert set(names) <= netns_list()
        _ = 1 / 0
    assert names and not set(names) & netns_list()
    lab.close()  # idempotent
    with pytest.raises(LabError):
        lab.host("c")


def test_close_kills_processes() -> None:
    lab = Lab(PREFIX)
    try:
        a = lab.host("a")
        sleeper = a.popen("sleep", "60")
        stubborn = a.popen(
            sys.executable,
            "-c",
            "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            " print('ready', flush=True); time.sleep(60)",
            stdout=subprocess.PIPE,
        )
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
        # a daemon that forked away from anything popen tracks
        escaped = int(
            a.python(
                "import subprocess; p = subprocess.Popen(['sleep', '60'], start_new_session=True,"
                " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)"
            )
        )
        assert alive(escaped)
        netns = a.netns
    finally:
        start = time.monotonic()
        lab.close()
    assert sleeper.returncode == -signal.SIGTERM
    assert stubborn.returncode == -signal.SIGKILL
    assert time.monotonic() - start < labmod.KILL_GRACE + 5
    for _ in range(100):  # the escaped one is killed, then reaped by init
        if not alive(escaped):
            break
        time.sleep(0.05)
    assert not alive(escaped)
    assert netns not in netns_list()


def test_forwarding_through_a_router() -> None:
    with Lab(PREFIX) as lab:
        a, r, b = lab.host("a"), lab.host("r"), lab.host("b")
        left, right = lab.link(a, r), lab.link(r, b)
        a.route(right.prefix4, via=left.b_addr4)
        a.route(right.prefix6, via=left.b_addr6)
        b.route("default", via=right.a_addr4)
        b.route("::/0", via=right.a_addr6)
        assert not a.ping(right.b_addr4, count=1, timeout=1)  # r does not forward yet
        r.forwarding()
        assert a.wait_ping(right.b_addr4, deadline=10)
        assert a.wait_ping(right.b_addr6, deadline=10)
        assert b.ping(left.a_addr4, count=2)
        assert b.ping(left.a_addr6, count=2)
        result = tcp_transfer(b, a, left.a_addr6, 4 << 20, timeout=20)
        assert result.ok
        r.forwarding(False)
        assert not a.ping(right.b_addr6, count=1, timeout=1)


def test_wait_ping_is_bounded() -> None:
    with Lab(PREFIX) as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.link(a, b)
        start = time.monotonic()
        assert not a.wait_ping("198.18.99.9", deadline=1.5)  # no route at all
        assert not a.wait_ping("198.18.1.99", deadline=1.5)  # on-link, nobody answers
        assert time.monotonic() - start < 8


@pytest.mark.needs_lab("nft")
def test_nft_ruleset_in_a_namespace() -> None:
    with Lab(PREFIX) as lab:
        a, b = lab.host("a"), lab.host("b")
        link = lab.link(a, b)
        assert a.ping(link.b_addr4, count=1)
        b.nft(
            textwrap.dedent(
                """
                table inet pywglab {
                    chain input {
                        type filter hook input priority 0; policy accept;
                        icmp type echo-request drop
                    }
                }
                """
            )
        )
        assert "pywglab" in b.run("nft", "list", "tables").stdout
        assert "pywglab" not in a.run("nft", "list", "tables").stdout
        assert not a.ping(link.b_addr4, count=1, timeout=1)
        assert a.ping(link.b_addr6, count=1)  # only ICMPv4 is dropped
        b.nft("delete table inet pywglab\n")
        assert a.ping(link.b_addr4, count=1)
        with pytest.raises(LabError, match="nft"):
            b.nft("this is not nft syntax\n")


_OTHER_PROCESS = """
import sys
from pywg.lab import Lab
with Lab("pwt") as lab:
    a, b = lab.host("a"), lab.host("b")
    link = lab.link(a, b)
    print(a.netns, flush=True)
    sys.stdin.readline()  # hold the lab until the test says go
    print("ok" if a.wait_ping(link.b_addr6, deadline=5) else "fail", flush=True)
"""


def test_concurrent_labs_do_not_collide() -> None:
    other = subprocess.Popen(
        [sys.executable, "-c", _OTHER_PROCESS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None and other.stdin is not None
        other_netns = other.stdout.readline().strip()
        with Lab(PREFIX) as lab:
            a, b = lab.host("a"), lab.host("b")
            link = lab.link(a, b)  # same host names, subnets and addresses
            assert other_netns in netns_list() and a.netns != other_netns
            other.stdin.write("go\n")
            other.stdin.flush()
            assert a.ping(link.b_addr6, count=2)
            assert other.stdout.readline().strip() == "ok"
        assert other.wait(15) == 0
    finally:
        if other.poll() is None:
            other.kill()
            other.wait(5)
    assert other_netns not in netns_list()


def test_cleanup_stale_removes_only_dead_labs() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"{PREFIX}-{dead.pid}-{secrets.token_hex(3)}-x"
    subprocess.run(["ip", "netns", "add", stale], check=True, timeout=10)
    try:
        with Lab(PREFIX) as lab:
            live = lab.host("a").netns
            removed = cleanup_stale(PREFIX)
            assert stale in removed and live not in removed
            assert live in netns_list()
        assert stale not in netns_list()
    finally:
        if stale in netns_list():
            subprocess.run(["ip", "netns", "del", stale], check=False, timeout=10)


# -- NATs, loss and the relay -------------------------------------------------------------

needs_nft = pytest.mark.needs_lab("nft")
SO_RCVBUFFORCE = 33  # not in Python's socket module; root may exceed rmem_max with it
RECEIVE_IDLE = 0.5  # seconds of quiet after which a receiver has everything
Received = tuple[bytes, tuple[str, int], float]  # payload, source, time.monotonic()


_open_sockets: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    """Sockets made by udp_socket() are closed after each test (they keep a namespace alive)."""
    yield
    while _open_sockets:
        _open_sockets.pop().close()


def udp_socket(host: Host, address: str, port: int = 0) -> socket.socket:
    """A UDP socket of this process in `host`, bound, with a large buffer and a timeout."""
    sock = host.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM)
    _open_sockets.append(sock)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    sock.bind((address, port))
    sock.settimeout(RECEIVE_IDLE)
    return sock


def receive(sock: socket.socket, *, limit: int = 100_000, deadline: float = 20) -> list[Received]:
    """Everything `sock` receives until RECEIVE_IDLE s pass without any (bounded)."""
    got: list[Received] = []
    end = time.monotonic() + deadline
    while len(got) < limit and time.monotonic() < end:
        try:
            data, source = sock.recvfrom(65536)
        except TimeoutError:
            break
        got.append((data, (source[0], source[1]), time.monotonic()))
    return got


def source_of(sender: socket.socket, receiver: socket.socket, payload: bytes = b"hi") -> int:
    """The source port `receiver` sees `sender`'s datagram come from (after any NAT)."""
    host, port = receiver.getsockname()[:2]
    sender.sendto(payload, (host, port))
    data, source = receiver.recvfrom(65536)
    assert data == payload
    return int(source[1])


def arrives(sender: socket.socket, receiver: socket.socket, to: tuple[str, int]) -> bool:
    """Whether a datagram `sender` sends to `to` reaches `receiver` (within RECEIVE_IDLE s)."""
    payload = secrets.token_bytes(8)
    sender.sendto(payload, to)
    return any(data == payload for data, _, _ in receive(receiver, limit=10))


@needs_nft
def test_nat_endpoint_independent_keeps_one_mapping_and_filters() -> None:
    with Lab(PREFIX) as lab:
        net = Internet(lab)
        a = net.behind_nat("a", "endpoint-independent")
        s1, s2, s3 = net.public("s1"), net.public("s2"), net.public("s3")
        assert a.nat is not None and a.public_addr4 != a.addr4
        for family in ("addr4", "addr6"):
            inside = udp_socket(a.host, getattr(a, family), 5555)
            r1, r2, r3 = (udp_socket(s.host, getattr(s, family), 7000) for s in (s1, s2, s3))
            # RFC 4787 REQ-1: the same mapping for both destinations; and port preserved
            assert source_of(inside, r1) == source_of(inside, r2) == 5555
            public = (getattr(a, "public_" + family), 5555)
            outside = {(m.inside[1], m.outside, m.remote[0]) for m in a.nat.mappings()}
            for s in (s1, s2):
                assert (5555, public, getattr(s, family)) in outside, outside
            # filtering: answers from where the inside sent to come in, nothing else does
            assert arrives(r1, inside, public)
            assert arrives(r2, inside, public)
            assert not arrives(r3, inside, public)  # never contacted
            other_port = udp_socket(s1.host, getattr(s1, family), 7001)
            assert not arrives(other_port, inside, public)  # the address, but not the port
            assert arrives(r1, inside, public)  # and the mapping still works
        # nor can the outside route at an inside address through the NAT router
        net.host.route(a.link.prefix4, via=a.nat.public_addr4)
        inside = udp_socket(a.host, a.addr4, 5556)
        core = udp_socket(net.host, a.nat.outside.a_addr4)
        assert not arrives(core, inside, (a.addr4, 5556))
        assert arrives(inside, core, core.getsockname())  # while the inside gets out


@needs_nft
def test_nat_without_firewall_lets_an_early_packet_clash_with_a_mapping() -> None:
    with Lab(PREFIX) as lab:
        net = Internet(lab, v6=False)
        a = net.behind_nat("a", firewall=False)
        b = net.behind_nat("b", firewall=False)
        sa, sb = udp_socket(a.host, a.addr4, 5555), udp_socket(b.host, b.addr4, 5555)
        a_public, b_public = (a.public_addr4, 5555), (b.public_addr4, 5555)
        # b sends to a's mapping before a sent to b: a's router takes it in (no drop) ...
        assert not arrives(sb, sa, a_public)
        # ... so a's first datagram to b leaves from another port, and never reaches b
        assert not arrives(sa, sb, b_public)
        assert a.nat is not None and b.nat is not None
        (to_b,) = [m for m in a.nat.mappings() if m.remote == b_public]
        assert to_b.outside[1] != 5555, to_b
        # a datagram that dies past its own router (TTL 2) opens a mapping and clashes with
        # nothing at the other end: then both ways work at the ports preserved
        sa2, sb2 = udp_socket(a.host, a.addr4, 6666), udp_socket(b.host, b.addr4, 6666)
        sb2.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 2)
        sb2.sendto(b"opener", (a.public_addr4, 6666))
        sb2.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 64)
        assert arrives(sa2, sb2, (b.public_addr4, 6666))
        assert arrives(sb2, sa2, (a.public_addr4, 6666))


@needs_nft
def test_nat_symmetric_maps_each_destination_apart() -> None:
    with Lab(PREFIX) as lab:
        net = Internet(lab, v6=False)
        a = net.behind_nat("a", "symmetric")
        s1, s2 = net.public("s1"), net.public("s2")
        inside = udp_socket(a.host, a.addr4, 5555)
        r1, r2 = udp_socket(s1.host, s1.addr4, 7000), udp_socket(s2.host, s2.addr4, 7000)
        port1, port2 = source_of(inside, r1), source_of(inside, r2)
        # RFC 4787 §4.1 address and port-dependent mapping: one per destination
        assert port1 != port2, (port1, port2)
        assert source_of(inside, r1) == port1  # stable for its flow
        assert {m.outside[1] for m in a.nat.mappings()} == {port1, port2}
        # filtering: each mapping answers only its own destination
        assert arrives(r1, inside, (a.public_addr4, port1))
        assert not arrives(r2, inside, (a.public_addr4, port1))
        assert arrives(r2, inside, (a.public_addr4, port2))


@needs_nft
def test_nat_reboot_forgets_mappings() -> None:
    with Lab(PREFIX) as lab:
        net = Internet(lab, v6=False)
        moving = net.behind_nat("a", "endpoint-independent", ports=(20000, 20099))
        keeping = net.behind_nat("b")  # port preserving
        s = net.public("s")
        r = udp_socket(s.host, s.addr4, 7000)
        for site in (moving, keeping):
            assert site.nat is not None
            inside = udp_socket(site.host, site.addr4, 5555)
            before = source_of(inside, r)
            mapped = (site.public_addr4, before)
            assert arrives(r, inside, mapped)
            assert len(site.nat.mappings()) == 1
            site.nat.reboot()
            assert site.nat.mappings() == []
            assert not arrives(r, inside, mapped), "the NAT still knew the flow after a reboot"
            after = source_of(inside, r)  # the same socket, the same destination
            if site is moving:
                assert 20000 <= before <= 20099 and 20100 <= after <= 20199, (before, after)
                assert site.nat.ports == (20100, 20199)
            else:
                assert before == after == 5555  # a port-preserving NAT maps it the same again
            assert [m.outside for m in site.nat.mappings()] == [(site.public_addr4, after)]
            assert arrives(r, inside, (site.public_addr4, after))


@needs_nft
def test_nat_udp_timeout_expires_mappings() -> None:
    with Lab(PREFIX) as lab:
        net = Internet(lab, v6=False)
        a = net.behind_nat("a", udp_timeout=1)
        s = net.public("s")
        inside, r = udp_socket(a.host, a.addr4, 5555), udp_socket(s.host, s.addr4, 7000)
        port = source_of(inside, r)
        assert a.nat is not None and a.nat.mappings()
        end = time.monotonic() + 10
        while a.nat.mappings() and time.monotonic() < end:
            time.sleep(0.2)
        assert a.nat.mappings() == [], "the mapping outlived its 1 s timeout"
        assert not arrives(r, inside, (a.public_addr4, port))


def test_nat_arguments_checked() -> None:
    with Lab(PREFIX) as lab:
        r, a, b = lab.host("r"), lab.host("a"), lab.host("b")
        inside, outside, elsewhere = lab.link(r, a), lab.link(r, b), lab.link(a, b)
        with pytest.raises(LabError, match="kind"):
            add_nat(r, inside, outside, "full-cone")  # type: ignore[arg-type]
        with pytest.raises(LabError, match="window"):
            add_nat(r, inside, outside, ports=(1000, 2000))
        with pytest.raises(LabError, match="not an end"):
            add_nat(r, inside, elsewhere)
        with pytest.raises(LabError, match="two different"):
            add_nat(r, inside, inside)


def send_numbered(sock: socket.socket, to: tuple[str, int], count: int, rate: float) -> None:
    """`count` datagrams (8-byte sequence number, 8-byte send time in µs), `rate` per second."""
    start = time.monotonic()
    for i in range(count):
        wait = start + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        sent = int(time.monotonic() * 1e6)
        sock.sendto(i.to_bytes(8, "big") + sent.to_bytes(8, "big") + bytes(48), to)


@needs_nft
def test_loss_drops_about_the_share_asked() -> None:
    with Lab(PREFIX) as lab:
        a, b = lab.host("a"), lab.host("b")
        link = lab.link(a, b, v6=False)
        rx, other, tx = (
            udp_socket(b, link.b_addr4, 7000),
            udp_socket(b, link.b_addr4, 7001),
            udp_socket(a, link.a_addr4),
        )
        n = 2000

        def check(loss: Loss, percent: float, sent: int, got: int) -> None:
            # binomial: 4.5 standard deviations either side fail once in ~150,000 runs
            expected = n * (1 - percent / 100)
            spread = 4.5 * math.sqrt(n * percent / 100 * (1 - percent / 100))
            assert abs(got - expected) <= spread, (got, expected, spread)
            assert loss.counts() == (sent, sent - got)  # nothing lost but what nft dropped

        loss = b.loss(link.b_if, 10, direction="in", port=7000)
        send_numbered(tx, (link.b_addr4, 7000), n, rate=20_000)
        send_numbered(tx, (link.b_addr4, 7001), 200, rate=20_000)  # another port: no loss
        check(loss, 10, n, len(receive(rx)))
        assert len(receive(other)) == 200
        loss.remove()
        assert "pywg_loss" not in b.run("nft", "list", "tables").stdout

        loss = a.loss(link.a_if, 30, direction="out")  # UDP only: ping still passes
        assert a.ping(link.b_addr4, count=3, timeout=5)
        send_numbered(tx, (link.b_addr4, 7000), n, rate=20_000)
        check(loss, 30, n, len(receive(rx)))
        loss.remove()

        everything = b.loss(link.b_if, 100, direction="both", protocol=None)
        assert not a.ping(link.b_addr4, count=1, timeout=1)
        assert not b.ping(link.a_addr4, count=1, timeout=1)
        assert everything.counts()[1] >= 2
        everything.remove()
        assert a.ping(link.b_addr4, count=1)
        nothing = b.loss(link.b_if, 0, protocol=None)
        assert a.ping(link.b_addr4, count=2)
        assert nothing.counts()[0] >= 2 and nothing.counts()[1] == 0
        with pytest.raises(LabError):
            b.loss(link.b_if, 101)
        with pytest.raises(LabError):
            b.loss(link.b_if, 5, protocol=None, port=7000)


def relay_lab(lab: Lab) -> tuple[Relay, RelayEnds, socket.socket, socket.socket]:
    """a -- r -- b with a relay in r; sockets in a and b at the relay's ends."""
    a, r, b = lab.host("a"), lab.host("r"), lab.host("b")
    left, right = lab.link(a, r, v6=False), lab.link(r, b, v6=False)
    ends = RelayEnds(
        left=(left.b_addr4, 6000),
        right=(right.a_addr4, 6000),
        a=(left.a_addr4, 6001),
        b=(right.b_addr4, 6002),
    )
    relay = Relay(r, ends, seed=7)
    return relay, ends, udp_socket(a, *ends.a), udp_socket(b, *ends.b)


def latencies(got: list[Received]) -> list[float]:
    return [at - int.from_bytes(data[8:16], "big") / 1e6 for data, _, at in got]


def timed(sender: socket.socket, to: tuple[str, int], rx: socket.socket, n: int) -> list[Received]:
    """Send `n` numbered datagrams at 200/s from a thread while `rx` receives them."""
    thread = threading.Thread(target=send_numbered, args=(sender, to, n, 200.0), daemon=True)
    thread.start()
    try:
        return receive(rx, limit=n)
    finally:
        thread.join(10)


def test_relay_delays_each_direction() -> None:
    with Lab(PREFIX) as lab:
        relay, ends, a, b = relay_lab(lab)
        with relay:
            n, delay = 40, 0.1
            relay.faults(to="b", delay=delay)
            towards_b = timed(a, ends.left, b, n)
            towards_a = timed(b, ends.right, a, n)
            late, early = latencies(towards_b), latencies(towards_a)
            print(
                f"\nrelay delay {delay} s: median {statistics.median(late):.4f} s, "
                f"undelayed {statistics.median(early):.4f} s"
            )
            assert len(late) == len(early) == n
            assert min(late) >= delay - 0.001, min(late)  # never early
            assert statistics.median(late) <= delay + 0.03
            assert statistics.median(early) <= 0.03  # the other way is not delayed
            seq = [int.from_bytes(data[:8], "big") for data, _, _ in towards_b]
            assert seq == list(range(n))  # a fixed delay keeps the order
            # jitter: spread over [delay, delay + jitter] (the top allowing for scheduling)
            relay.faults(delay=0.05, jitter=0.05)
            jittered = sorted(latencies(timed(a, ends.left, b, n)))
            assert jittered[0] >= 0.05 - 0.001
            assert jittered[int(0.9 * n)] <= 0.1 + 0.03
            assert jittered[-1] - jittered[0] >= 0.02, jittered
            assert relay.stats()["delayed"] == 2 * n
        assert relay.proc.returncode == 0


def timed_burst(
    sender: socket.socket, to: tuple[str, int], rx: socket.socket, n: int
) -> list[Received]:
    """Send `n` numbered datagrams (5000/s), then receive them."""
    send_numbered(sender, to, n, 5000.0)
    return receive(rx, limit=10 * n)


def test_relay_loss_reordering_and_duplicates() -> None:
    with Lab(PREFIX) as lab:
        relay, ends, a, b = relay_lab(lab)
        n = 1000
        relay.faults(to="b", loss=0.2)
        got = len(timed_burst(a, ends.left, b, n))
        stats = relay.stats()
        assert abs(got - 0.8 * n) <= 4.5 * math.sqrt(n * 0.2 * 0.8), got
        assert stats["lost"] == n - got and stats["to_b"] == n

        relay.faults(to="b", hold=0.1, dup=0.1)
        received = timed_burst(a, ends.left, b, n)
        after = relay.stats()
        seq = [int.from_bytes(data[:8], "big") for data, _, _ in received]
        duplicated = after["duplicated_to_b"] - stats["duplicated_to_b"]
        assert set(seq) == set(range(n)), "the relay lost datagrams with loss off"
        assert len(seq) == n + duplicated and duplicated > n * 0.05
        overtaken = sum(1 for x, y in itertools.pairwise(seq) if y < x)
        assert overtaken > n * 0.05, overtaken
        assert after["held"] - stats["held"] > n * 0.05

        relay.faults()  # off: in order, once each
        seq = [int.from_bytes(data[:8], "big") for data, _, _ in timed_burst(a, ends.left, b, 200)]
        assert seq == list(range(200))
        with pytest.raises(LabError):
            relay.faults(loss=1.5)
        with pytest.raises(LabError, match="unknown command"):
            relay.command("nonsense")


def test_relay_records_and_replays() -> None:
    with Lab(PREFIX) as lab:
        relay, ends, a, b = relay_lab(lab)
        relay.record("b", 5)
        transport = [b"\x04\x00\x00\x00" + i.to_bytes(8, "little") + bytes(32) for i in range(7)]
        for message in [b"\x01\x00\x00\x00" + bytes(144), b"\x04\x00\x00\x00" + bytes(28)]:
            a.sendto(message, ends.left)  # a handshake and a keepalive: not recorded
        for message in transport:
            a.sendto(message, ends.left)
        assert len(receive(b)) == 9
        assert relay.stats()["recorded_now"] == {"a": 0, "b": 5}
        assert relay.replay("b") == 5
        replayed = receive(b)
        assert [data for data, _, _ in replayed] == transport[:5]
        assert {source for _, source, _ in replayed} == {ends.right}
        assert relay.replay("b", source="other") == 5
        assert {source for _, source, _ in receive(b)} == {ends.left}  # a stranger's address
        assert relay.stats()["replayed"] == 10
