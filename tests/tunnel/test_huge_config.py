"""Huge configurations through `wg setconf`: pywgd next to Debian's wireguard-go.

Two shapes, each applied with `wg setconf` and read back with
`wg show IFACE allowed-ips`, with exact contents: one peer with 130,000
allowed IPs (65,000 IPv4 /16s and 65,000 IPv6 /128s), and 1,000 peers with
50 allowed IPs each. The time of `wg setconf` and `wg show`, and the daemon's
peak RSS, are printed for both daemons (run with `-s` to see them; the
figures in docs/daemon.md come from here). A huge set request with one bad
line at its end leaves pywgd's configuration as it was (UAPI atomicity), and
pywgd's data plane keeps forwarding while a huge configuration is added.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_network

import pytest

from helpers.wg_nodes import Node, connect_pair, make_pair, start_node
from pywg.keys import PrivateKey, PublicKey
from pywg.lab import Lab
from pywg.system.secretfile import write_secret_file

PREFIX = "pwbig"
WG_TIMEOUT = 30.0  # seconds for one `wg` run on a huge configuration
# Peak RSS of pywgd with 130,000 allowed IPs is 75-78 MiB (docs/daemon.md);
# the bound is generous, it is there to catch a copy per line or a leak.
PYWGD_PEAK_RSS_LIMIT = 400 << 20

pytestmark = [pytest.mark.needs_lab("wg", "wireguard-go", "pywgd"), pytest.mark.time_limit(60)]

Shape = dict[PublicKey, list[str]]  # allowed IPs by peer


def one_peer_shape() -> Shape:
    """One peer, 130,000 allowed IPs: IPv4 /16s and IPv6 /128s, mixed."""
    nets: list[str] = []
    for n in range(65_000):
        nets.append(f"{n >> 8}.{n & 255}.0.0/16")
        nets.append(f"fd19::{n >> 16:x}:{n & 0xFFFF:x}/128")
    return {PrivateKey.generate().public_key: nets}


def many_peers_shape() -> Shape:
    """1,000 peers with 50 allowed IPs each (25 IPv4 /32s and 25 IPv6 /128s)."""
    shape: Shape = {}
    for p in range(1_000):
        nets = [f"10.{p >> 8}.{p & 255}.{k}/32" for k in range(25)]
        nets += [f"fd19::{p:x}:{k:x}/128" for k in range(25)]
        shape[PrivateKey.generate().public_key] = nets
    return shape


SHAPES = {"1x130000": one_peer_shape, "1000x50": many_peers_shape}


def config_text(node: Node, shape: Shape) -> str:
    """A wg(8) configuration file for `shape` (AllowedIPs repeated, 500 per line)."""
    lines = ["[Interface]", f"PrivateKey = {node.key.to_base64()}", f"ListenPort = {node.port}"]
    for public_key, nets in shape.items():
        lines += ["", "[Peer]", f"PublicKey = {public_key}"]
        lines += [f"AllowedIPs = {', '.join(nets[i : i + 500])}" for i in range(0, len(nets), 500)]
    return "\n".join(lines) + "\n"


@contextmanager
def config_file(text: str) -> Iterator[str]:
    """`text` in a 0600 file (it holds a private key) in a private temporary directory."""
    with tempfile.TemporaryDirectory(prefix="pywg-conf-") as directory:
        path = os.path.join(directory, "wg.conf")
        write_secret_file(path, text)
        yield path


def allowed_ips(node: Node) -> tuple[Shape, float]:
    """`wg show IFACE allowed-ips` as a shape, and how long it took."""
    started = time.monotonic()
    out = node.host.run("wg", "show", node.ifname, "allowed-ips", timeout=WG_TIMEOUT).stdout
    elapsed = time.monotonic() - started
    shape: Shape = {}
    for line in out.splitlines():
        key, _, nets = line.partition("\t")
        shape[PublicKey.from_base64(key)] = [] if nets == "(none)" else nets.split(" ")
    return shape, elapsed


def canonical(shape: Shape) -> dict[PublicKey, set[str]]:
    """Each peer's allowed IPs as a set of canonical texts (`wg` prints fd19::/128)."""
    return {key: {str(ip_network(net)) for net in nets} for key, nets in shape.items()}


def daemon_pid(ifname: str) -> int:
    """The daemon serving `ifname`: the process whose last argument is that name."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if len(argv) >= 2 and argv[-2:] in ([ifname.encode(), b""], [ifname.encode()]):
            return int(entry)
    raise LookupError(f"no daemon for {ifname}")


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of `pid`, in bytes."""
    with open(f"/proc/{pid}/status") as handle:
        fields = dict(line.split(":", 1) for line in handle)
    return {name: int(fields[name].split()[0]) << 10 for name in ("VmRSS", "VmHWM")}


@dataclass
class Figures:
    impl: str
    setconf: float  # seconds
    show: float
    rss_before: int  # bytes
    peak_rss: int

    def __str__(self) -> str:
        mib = 1 << 20
        return (
            f"{self.impl:>12}: wg setconf {self.setconf:5.2f} s, wg show allowed-ips "
            f"{self.show:5.2f} s, RSS {self.rss_before / mib:5.0f} -> peak "
            f"{self.peak_rss / mib:5.0f} MiB"
        )


def apply_and_read_back(lab: Lab, impl: str, shape: Shape) -> Figures:
    """Start `impl`, `wg setconf` the shape, check `wg show allowed-ips` gives it back."""
    node = start_node(lab, lab.host(impl.replace("-", "")), impl, net=1, index=1)
    pid = daemon_pid(node.ifname)
    rss_before = memory(pid)["VmRSS"]
    with config_file(config_text(node, shape)) as path:
        started = time.monotonic()
        node.host.run("wg", "setconf", node.ifname, path, timeout=WG_TIMEOUT)
        setconf = time.monotonic() - started
    got, show = allowed_ips(node)
    assert sum(map(len, got.values())) == sum(map(len, shape.values()))
    assert canonical(got) == canonical(shape)
    return Figures(impl, setconf, show, rss_before, memory(pid)["VmHWM"])


@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_huge_setconf_applies_and_reads_back_exactly(lab: Lab, shape_name: str) -> None:
    shape = SHAPES[shape_name]()
    figures = [apply_and_read_back(lab, impl, shape) for impl in ("pywgd", "wireguard-go")]
    print(f"\n{shape_name} allowed IPs:")
    for line in figures:
        print(line)
    assert figures[0].peak_rss < PYWGD_PEAK_RSS_LIMIT


def uapi_request(ifname: str, request: bytes) -> bytes:
    """Send one raw UAPI request (`wg` checks lines itself, so cannot send a bad one)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(WG_TIMEOUT)
        sock.connect(f"/var/run/wireguard/{ifname}.sock")
        sock.sendall(request)
        reply = b""
        while not reply.endswith(b"\n\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply


def test_huge_set_with_one_bad_line_at_its_end_changes_nothing(lab: Lab) -> None:
    node = start_node(lab, lab.host("pywgd"), "pywgd", net=1, index=1)
    shape = many_peers_shape()
    with config_file(config_text(node, shape)) as path:
        node.host.run("wg", "setconf", node.ifname, path, timeout=WG_TIMEOUT)
    before, _ = allowed_ips(node)
    [(newcomer, nets)] = one_peer_shape().items()
    lines = ["set=1", "replace_peers=true", f"public_key={newcomer.to_hex()}"]
    lines += [f"allowed_ip={net}" for net in nets]
    lines.append("allowed_ip=198.19.0.0/33")  # the one bad line, after 130,000 good ones
    reply = uapi_request(node.ifname, ("\n".join(lines) + "\n\n").encode())
    assert reply == b"errno=-22\n\n"
    after, _ = allowed_ips(node)
    assert after == before


def test_pywgd_forwards_while_it_adds_130000_allowed_ips(lab: Lab) -> None:
    """Pings through the tunnel every 10 ms, before, while and after `wg addconf` gives
    pywgd a second peer with 130,000 allowed IPs (none of them the tunnel's), are all
    answered: the C plane keeps its routes until the new table is swapped in whole."""
    pair = make_pair(lab)
    connect_pair(pair)
    pw, go = pair.pw, pair.go
    assert go.host.wait_ping(pw.addr4)
    newcomer = PrivateKey.generate().public_key
    nets = [f"10.{n >> 8}.{n & 255}.0/24" for n in range(65_000)]
    nets += [f"fd20::{n >> 16:x}:{n & 0xFFFF:x}/128" for n in range(65_000)]
    text = f"[Peer]\nPublicKey = {newcomer}\n" + "".join(
        f"AllowedIPs = {', '.join(nets[i : i + 500])}\n" for i in range(0, len(nets), 500)
    )
    ping = go.host.popen(
        "ping",
        "-n",
        "-q",
        "-i",
        "0.01",
        "-c",
        "200",
        "-W",
        "1",
        pw.addr4,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    time.sleep(0.5)
    with config_file(text) as path:
        pw.host.run("wg", "addconf", pw.ifname, path, timeout=WG_TIMEOUT)
    out = ping.communicate(timeout=30)[0].decode()
    assert "200 packets transmitted, 200 received" in out, out
    got, _ = allowed_ips(pw)
    assert len(got[newcomer]) == len(nets) and len(got[go.public_key]) == 2
