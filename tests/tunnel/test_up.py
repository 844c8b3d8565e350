"""`pywg up`, `pywg show`, `pywg demo` and the library's Tunnel, against Debian's wireguard-go.

Everything runs in lab namespaces; the real peer is wireguard-go configured with `wg`.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.wg_nodes import Node, start_node
from pywg.keys import PrivateKey
from pywg.lab import Host, Lab, Link

pytestmark = pytest.mark.needs_root  # `pywg up` refuses to start without root
needs_peer = pytest.mark.needs_lab("wireguard-go", "wg")  # a wireguard-go peer in a lab

PYWG = [sys.executable, "-m", "pywg"]


@pytest.fixture
def tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pywg-up-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _lab_with_peer(lab: Lab) -> tuple[Host, Host, Link, Node]:
    a, b = lab.host("a"), lab.host("b")
    link = lab.link(a, b)
    peer = start_node(lab, b, "wireguard-go", net=7, index=2, port=51822)
    return a, b, link, peer


def _write_config(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


def _interface_exists(host: Host, name: str) -> bool:
    return host.run("ip", "link", "show", "dev", name, check=False).returncode == 0


def _start_up(host: Host, conf: Path) -> subprocess.Popen[bytes]:
    proc = host.popen(*PYWG, "up", str(conf), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc


def _wait_up(host: Host, name: str, proc: subprocess.Popen[bytes]) -> str:
    """Wait for `pywg up` to print that the interface is up (after PostUp ran); what it printed."""
    assert proc.stdout is not None
    seen = b""
    end = time.monotonic() + 20
    while time.monotonic() < end and b" is up" not in seen:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
    if b" is up" not in seen:
        proc.kill()
        rest = proc.communicate(timeout=5)[0]
        pytest.fail(f"pywg up did not come up: {(seen + rest).decode(errors='replace')}")
    assert _interface_exists(host, name)
    assert os.path.exists(f"/var/run/wireguard/{name}.sock")
    return seen.decode(errors="replace")


def _stop(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGINT) -> tuple[int, str]:
    proc.send_signal(sig)
    out = proc.communicate(timeout=20)[0].decode(errors="replace")
    return proc.returncode, out


@needs_peer
def test_up_with_wireguard_go_peer_hostname_routes_hooks_and_clean_exit(tmp: Path) -> None:
    with Lab("pwu") as lab:
        a, _, link, peer = _lab_with_peer(lab)
        name = lab.ifname("up")
        key = PrivateKey.generate()
        # a host name for the endpoint, resolved through the namespace's own /etc/hosts
        etc = Path("/etc/netns") / a.netns
        etc.mkdir(parents=True)
        try:
            (etc / "hosts").write_text(f"{link.b_addr4} peer.lab.test\n")
            _write_config(
                tmp / f"{name}.conf",
                f"""# a homelab client
[Interface]
PrivateKey = {key.to_base64()}
Address = 198.19.7.1/24, fd19::7:1/112
ListenPort = 51821
MTU = 1380
PostUp = echo up %i > {tmp}/postup
PostDown = echo down %i > {tmp}/postdown

[Peer]
PublicKey = {peer.public_key}
AllowedIPs = 198.19.7.2/32, fd19::7:2/128, 198.19.50.0/24
Endpoint = peer.lab.test:51822
PersistentKeepalive = 25
""",
            )
            peer.add_peer(
                Node(a, "pywg", name, key, 51821, "198.19.7.1", "fd19::7:1"),
                endpoint=None,
                allowed_ips=["198.19.7.1/32", "fd19::7:1/128"],
            )
            proc = _start_up(a, tmp / f"{name}.conf")
            printed = _wait_up(a, name, proc)
            assert (tmp / "postup").read_text() == f"up {name}\n"
            assert "mtu 1380" in a.ip("link", "show", "dev", name)
            addrs = a.ip("address", "show", "dev", name)
            assert "198.19.7.1/24" in addrs and "fd19::7:1/112" in addrs
            assert "198.19.50.0/24 dev " + name in a.ip("-4", "route", "show")
            assert a.wait_ping(peer.addr4, deadline=10)
            assert a.wait_ping(peer.addr6, deadline=10)
            # the peer learned our endpoint; both `wg` and `pywg show` read our state
            fields = peer.peer_dump(Node(a, "pywg", name, key, 51821, "", ""))
            assert fields["endpoint"] == f"{link.a_addr4}:51821"
            dump = a.run("wg", "show", name, "dump").stdout.splitlines()
            iface, peer_line = dump[0].split("\t"), dump[1].split("\t")
            assert iface[1] == str(key.public_key) and iface[2] == "51821"
            assert peer_line[0] == str(peer.public_key)
            assert peer_line[2] == f"{link.b_addr4}:51822"  # the host name, resolved
            assert peer_line[7] == "25" and int(peer_line[4]) > 0
            shown = a.run(*PYWG, "show", name).stdout
            assert f"peer: {peer.public_key}" in shown and "latest handshake" in shown
            assert key.to_base64() not in shown
            code, out = _stop(proc)
            assert code == 0, out
            # the handshake may be printed before or after "is up" was read
            assert f"handshake with {peer.public_key}" in printed + out
            assert not _interface_exists(a, name)
            assert not os.path.exists(f"/var/run/wireguard/{name}.sock")
            assert (tmp / "postdown").read_text() == f"down {name}\n"
        finally:
            shutil.rmtree(etc, ignore_errors=True)


@needs_peer
def test_up_default_route_uses_fwmark_policy_routing_and_cleans_rules(tmp: Path) -> None:
    with Lab("pwu") as lab:
        a, _, link, peer = _lab_with_peer(lab)
        name = lab.ifname("up")
        key = PrivateKey.generate()
        _write_config(
            tmp / f"{name}.conf",
            f"""[Interface]
PrivateKey = {key.to_base64()}
Address = 198.19.7.1/24
[Peer]
PublicKey = {peer.public_key}
AllowedIPs = 0.0.0.0/0
Endpoint = {link.b_addr4}:51822
""",
        )
        peer.add_peer(
            Node(a, "pywg", name, key, 0, "198.19.7.1", "fd19::7:1"),
            allowed_ips=["198.19.7.1/32"],
        )
        proc = _start_up(a, tmp / f"{name}.conf")
        try:
            _wait_up(a, name, proc)
            rules = a.ip("-4", "rule", "show")
            assert "not from all fwmark 0xca6c lookup 51820" in rules
            assert "suppress_prefixlength 0" in rules
            assert a.run("wg", "show", name, "fwmark").stdout.strip() == "0xca6c"
            assert f"default dev {name}" in a.ip("-4", "route", "show", "table", "51820")
            # everything goes through the tunnel, yet the tunnel's own packets do not loop
            assert a.wait_ping(peer.addr4, deadline=10)
        finally:
            code, out = _stop(proc, signal.SIGTERM)
        assert code == 0, out
        rules = a.ip("-4", "rule", "show")
        assert "51820" not in rules and "suppress_prefixlength" not in rules


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[Interface]\nPrivateKey = nope\n", ":2: PrivateKey"),
        ("[Interface]\nListenPort = 70000\n", ":2: ListenPort"),
        ("[Interfaec]\n", ":1:"),
        ("[Interface]\nAddress = 198.19.0.1/24\n[Peer]\nAllowedIPs = 198.19.0.2/32\n", ":3:"),
    ],
)
def test_up_bad_config_is_one_clear_line(tmp: Path, text: str, expected: str) -> None:
    conf = tmp / "wgbad.conf"
    _write_config(conf, text)
    done = subprocess.run([*PYWG, "up", str(conf)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pywg up: "), done.stderr
    assert expected in lines[0]


def test_up_missing_file_and_bad_interface_name(tmp: Path) -> None:
    done = subprocess.run(
        [*PYWG, "up", str(tmp / "absent.conf")], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1 and "absent.conf" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    for name in ("this-name-is-far-too-long", "wg%d"):  # a kernel template names no interface
        conf = tmp / f"{name}.conf"
        _write_config(conf, f"[Interface]\nPrivateKey = {PrivateKey.generate().to_base64()}\n")
        done = subprocess.run([*PYWG, "up", str(conf)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 1 and "--name" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.needs_lab("wg")
@pytest.mark.time_limit(60)
def test_up_takes_a_config_of_more_than_one_mib(tmp: Path) -> None:
    """80,000 allowed IPs (1.3 MiB of configuration) come up and read back whole."""
    nets = [f"10.{n >> 8 & 255}.{n & 255}.0/24" for n in range(40_000)]
    nets += [f"fd19::{n + 1:x}/128" for n in range(40_000)]
    peer = PrivateKey.generate().public_key
    text = f"[Interface]\nPrivateKey = {PrivateKey.generate().to_base64()}\nTable = off\n"
    text += f"\n[Peer]\nPublicKey = {peer}\n"
    text += "".join(
        f"AllowedIPs = {', '.join(nets[i : i + 100])}\n" for i in range(0, len(nets), 100)
    )
    assert len(text) > 1 << 20
    with Lab("pwu") as lab:
        a = lab.host("a")
        name = lab.ifname("big")
        _write_config(tmp / f"{name}.conf", text)
        proc = _start_up(a, tmp / f"{name}.conf")
        _wait_up(a, name, proc)
        shown = a.run("wg", "show", name, "allowed-ips").stdout
        assert shown.split("\t", 1)[1].split() == nets
        code, out = _stop(proc)
        assert code == 0, out


@pytest.mark.needs_root("setpriv")
def test_up_without_root_says_so(tmp: Path) -> None:
    conf = tmp / "wgnr.conf"
    _write_config(conf, f"[Interface]\nPrivateKey = {PrivateKey.generate().to_base64()}\n")
    conf.chmod(0o644)
    tmp.chmod(0o755)
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *PYWG, "up", str(conf)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "root" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


_LIBRARY_SCRIPT = r"""
import asyncio, json, sys
from pywg import HandshakeCompleted, PrivateKey
from pywg.asyncio import Tunnel, run

name, peer_key, peer_endpoint, peer_addr = sys.argv[1:5]
key = PrivateKey.from_base64(sys.argv[5])

async def ping(addr):
    p = await asyncio.create_subprocess_exec(
        "ping", "-c", "1", "-W", "1", addr,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await p.wait() == 0

async def main():
    result = {}
    async with Tunnel(name, private_key=key, listen_port=51821) as tunnel:
        for cmd in (["ip", "address", "add", "198.19.7.1/24", "dev", name],
                    ["ip", "link", "set", "dev", name, "up"]):
            p = await asyncio.create_subprocess_exec(*cmd)
            assert await p.wait() == 0
        host, port = peer_endpoint.rsplit(":", 1)
        tunnel.add_peer(peer_key, ["198.19.7.2/32"], endpoint=(host, int(port)))
        pinger = asyncio.ensure_future(ping(peer_addr))
        event = await asyncio.wait_for(tunnel.next_event(), 10)
        result["event"] = type(event).__name__
        result["initiator"] = isinstance(event, HandshakeCompleted) and event.initiator
        result["first_ping"] = await pinger
        (stats,) = tunnel.stats()
        result["stats"] = [str(stats.public_key), stats.rx_bytes > 0, stats.tx_bytes > 0,
                           stats.last_handshake_time is not None, list(stats.allowed_ips)]
        tunnel.remove_peer(peer_key)
        result["after_remove"] = await ping(peer_addr)
        tunnel.add_peer(peer_key, ["198.19.7.2/32"], endpoint=(host, int(port)))
        ok = False
        for _ in range(20):
            if await ping(peer_addr):
                ok = True
                break
        result["after_readd"] = ok
    result["closed"] = tunnel.closed
    print(json.dumps(result))

run(main())
"""


@needs_peer
def test_library_tunnel_events_stats_and_runtime_peer_changes() -> None:
    with Lab("pwu") as lab:
        a, _, link, peer = _lab_with_peer(lab)
        name = lab.ifname("lib")
        key = PrivateKey.generate()
        peer.add_peer(
            Node(a, "pywg", name, key, 51821, "198.19.7.1", "fd19::7:1"),
            allowed_ips=["198.19.7.1/32"],
        )
        out = a.python(
            _LIBRARY_SCRIPT,
            name,
            str(peer.public_key),
            f"{link.b_addr4}:51822",
            peer.addr4,
            key.to_base64(),
            timeout=90,
        )
        result = json.loads(out.strip().splitlines()[-1])
        assert result["event"] == "HandshakeCompleted" and result["initiator"] is True
        assert result["first_ping"] is True
        assert result["stats"] == [str(peer.public_key), True, True, True, ["198.19.7.2/32"]]
        assert result["after_remove"] is False
        assert result["after_readd"] is True
        assert result["closed"] is True
        assert not _interface_exists(a, name)


@pytest.mark.needs_lab
def test_demo_runs_a_real_tunnel() -> None:
    done = subprocess.run(
        [*PYWG, "demo", "--megabytes", "5"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(", intact") == 2
    assert "all answered" in done.stdout and "latest handshake" in done.stdout
    assert "private key: (hidden)" in done.stdout


@pytest.mark.needs_lab("unshare")
def test_missing_tun_device_is_one_clear_line(tmp: Path) -> None:
    """With /dev/net/tun hidden (a private mount namespace), both commands say what is wrong."""
    conf = tmp / "wgnotun.conf"
    _write_config(conf, f"[Interface]\nPrivateKey = {PrivateKey.generate().to_base64()}\n")
    hide = 'mount -t tmpfs none /dev/net && exec "$@"'
    daemon = [sys.executable, "-m", "pywg.cmd.daemon", "-f", "wgnotun"]
    with Lab("pwu") as lab:  # inside a namespace, so even a failure to hide cannot matter
        host = lab.host("a")
        for argv in ([*PYWG, "up", str(conf)], daemon):
            unshare = ["unshare", "-m", "--propagation", "private", "sh", "-c", hide, "sh"]
            done = host.run(*unshare, *argv, check=False)
            assert done.returncode == 1, done.stderr
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and "/dev/net/tun" in lines[0] and "modprobe tun" in lines[0]
    assert not os.path.exists("/var/run/wireguard/wgnotun.sock")
