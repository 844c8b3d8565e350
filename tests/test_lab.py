"""The namespace lab (pywg.lab): hosts, links, routing, transfers and, above all, cleanup.

Needs root and iproute2; skipped otherwise. Every lab here uses the prefix
"pwt" and a random tag, so two test runs at once never collide.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pywg.lab import Lab, LabError, cleanup_stale, tcp_transfer, unavailable_reason
from pywg.lab import hosts as labmod

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or "")

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
        with pytest.raises(LabError):
            lab.link(a, b, subnet=7)  # already used
        with pytest.raises(LabError):
            lab.host("a")  # already used
        assert a.ping(first.b_addr4, count=1)
        assert c.ping(second.a_addr6, count=1)


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


@pytest.mark.skipif(shutil.which("nft") is None, reason="nftables (`nft`) not installed")
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
