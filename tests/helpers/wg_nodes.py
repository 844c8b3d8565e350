"""WireGuard nodes in lab namespaces: pywgd or Debian's wireguard-go, configured with `wg`.

Shared by the interop, rekey, `pywg up` and wg/wg-quick tests. A node is one
daemon in one lab host, with tunnel addresses 198.19.NET.INDEX/24 and
fd19::NET:INDEX/112; a :class:`Pair` is a pywgd node and a wireguard-go node
on the two ends of one veth link. Starting the daemons and peering two nodes
are :mod:`pywg.lab.wireguard`'s; what this adds is configuring them with
`wg(8)` (``wg set``, ``wg show dump``) instead of the UAPI, and the installed
``pywgd`` script rather than ``python -m``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pywg.endpoint import format_endpoint
from pywg.keys import PresharedKey, PrivateKey, PublicKey
from pywg.lab import Host, Lab, Link, wireguard
from pywg.lab.wireguard import Impl
from pywg.system.secretfile import write_secret_file

IMPLS = ("pywgd", "wireguard-go")
PORT = 51820  # every node's listen port unless a test moves it


def pywgd_path() -> str:
    """The pywgd script of the running interpreter's environment (the venv in CI)."""
    candidate = os.path.join(sysconfig.get_path("scripts"), "pywgd")
    if os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("pywgd")
    if found is None:
        raise RuntimeError("pywgd is not installed (pip install -e .)")
    return found


def missing_tools(*tools: str) -> str | None:
    """A skip reason naming the first tool not installed, or None (the needs_* markers use it)."""
    for tool in tools:
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt install the lab tools, see .ci/run)"
    return None


def argv_for(impl: str) -> list[str]:
    """The command that starts `impl` ("pywgd" or "wireguard-go") on an interface."""
    if impl == "pywgd":
        return [pywgd_path()]
    if impl == "wireguard-go":
        return ["wireguard-go"]
    raise ValueError(impl)


@dataclass
class Node:
    host: Host
    impl: str
    ifname: str
    key: PrivateKey
    port: int
    addr4: str  # tunnel addresses, no prefix length
    addr6: str

    @property
    def public_key(self) -> PublicKey:
        return self.key.public_key

    def wg(self, *args: str, check: bool = True) -> str:
        return self.host.run("wg", *args, check=check).stdout

    def add_peer(
        self,
        other: Node,
        *,
        endpoint: str | None = None,
        allowed_ips: list[str] | None = None,
        preshared_key: PresharedKey | None = None,
        persistent_keepalive: int | None = None,
    ) -> None:
        """Add `other` as a peer with `wg set`; allowed IPs default to its /32 and /128."""
        allowed = (
            allowed_ips if allowed_ips is not None else [f"{other.addr4}/32", f"{other.addr6}/128"]
        )
        args = ["set", self.ifname, "peer", str(other.public_key), "allowed-ips", ",".join(allowed)]
        if endpoint is not None:
            args += ["endpoint", endpoint]
        if persistent_keepalive is not None:
            args += ["persistent-keepalive", str(persistent_keepalive)]
        if preshared_key is not None:
            with _secret_file(preshared_key.to_base64()) as path:
                self.wg(*args, "preshared-key", path)
        else:
            self.wg(*args)

    def dump(self) -> tuple[list[str], list[list[str]]]:
        """`wg show IFACE dump`: the interface line and one line per peer, split on tabs."""
        lines = self.wg("show", self.ifname, "dump").splitlines()
        return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]

    def peer_dump(self, other: Node) -> dict[str, str]:
        """One peer's dump fields by name."""
        names = [
            "public_key",
            "preshared_key",
            "endpoint",
            "allowed_ips",
            "latest_handshake",
            "rx_bytes",
            "tx_bytes",
            "persistent_keepalive",
        ]
        for fields in self.dump()[1]:
            if fields[0] == str(other.public_key):
                return dict(zip(names, fields, strict=True))
        raise KeyError(f"{other.impl} not a peer of {self.impl}")


def daemon_pids(host: Host, ifname: str) -> list[int]:
    """The processes in `host`'s namespace whose command line names `ifname`."""
    out = subprocess.run(
        ["ip", "netns", "pids", host.netns], capture_output=True, text=True, timeout=10
    ).stdout
    found = []
    for word in out.split():
        try:
            cmdline = Path(f"/proc/{word}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if ifname.encode() in cmdline:
            found.append(int(word))
    return found


@contextlib.contextmanager
def _secret_file(text: str) -> Iterator[str]:
    """A 0600 file holding one line, in a private temporary directory (keys never on argv)."""
    with tempfile.TemporaryDirectory(prefix="pywg-key-") as directory:
        path = os.path.join(directory, "key")
        write_secret_file(path, text + "\n")
        yield path


def start_node(
    lab: Lab,
    host: Host,
    impl: str,
    *,
    net: int,
    index: int,
    port: int = PORT,
    mtu: int = 1420,
    env: dict[str, str] | None = None,
) -> Node:
    """Start a daemon (it daemonizes itself, as wg-quick runs it), key it, address it, up."""
    spec = Impl(impl, tuple(argv_for(impl)))
    node = wireguard.start_node(lab, host, spec, net=net, index=index, port=port, mtu=mtu, env=env)
    return Node(host, impl, node.ifname, node.key, port, node.addr4, node.addr6)


# -- two nodes on one link ------------------------------------------------------------


@dataclass
class Pair:
    """A pywgd host and a wireguard-go host on one veth link (subnet 1), daemons up."""

    link: Link
    family: int  # underlay address family used for endpoints
    pw: Node  # on the link's a side (198.18.1.1, fd18::1:1), tunnel 198.19.1.1
    go: Node  # on the link's b side (198.18.1.2, fd18::1:2), tunnel 198.19.1.2

    def node(self, impl: str) -> Node:
        return self.pw if impl == "pywgd" else self.go

    def other(self, node: Node) -> Node:
        return self.go if node is self.pw else self.pw

    def underlay(self, node: Node) -> str:
        return self.link.address(node.host, self.family)

    def endpoint(self, node: Node) -> str:
        """Where the other node reaches `node`, as `wg` writes it."""
        return format_endpoint((self.underlay(node), node.port))


def make_pair(lab: Lab, family: int = 4, backend: str | None = None) -> Pair:
    """pywgd and wireguard-go linked; `backend`: pywgd's data plane, `native`, `pure`, or
    `native-no-offload` (the C plane with TUN and UDP offloads off: PYWG_OFFLOAD=0)."""
    pw_host, go_host = lab.host("pw"), lab.host("go")
    link = lab.link(pw_host, go_host)
    env = None
    if backend is not None:
        env = {"PYWG_BACKEND": backend.removesuffix("-no-offload")}
        if backend.endswith("-no-offload"):
            env["PYWG_OFFLOAD"] = "0"
    pw = start_node(lab, pw_host, "pywgd", net=1, index=1, port=PORT, env=env)
    go = start_node(lab, go_host, "wireguard-go", net=1, index=2, port=PORT)
    return Pair(link, family, pw, go)


def connect_pair(pair: Pair, **kwargs: Any) -> None:
    """Peer the two nodes, each knowing the other's endpoint (`pywg.lab.wireguard.connect`)."""
    wireguard.connect(pair.pw, pair.go, pair.link, family=pair.family, **kwargs)


def handshake_time(node: Node, other: Node) -> int:
    """`latest_handshake` of `other` in `node`'s dump: Unix seconds, 0 for never."""
    return int(node.peer_dump(other)["latest_handshake"])


# What a `get=1` reply reports that changes by itself: left out of comparisons.
VOLATILE = frozenset(
    {"last_handshake_time_sec", "last_handshake_time_nsec", "tx_bytes", "rx_bytes"}
)


def uapi_config(text: str) -> dict[str, Any]:
    """A successful `get=1` reply as comparable data: device keys, and peers by public key.

    Counters and handshake times are left out; allowed IPs become a set. A
    peer listed twice, or a reply that is not errno=0, fails the test.
    """
    assert text.endswith("errno=0\n\n"), text[-200:]
    device: dict[str, str] = {}
    peers: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        if not line or line.startswith("errno="):
            continue
        key, _, value = line.partition("=")
        if key == "public_key":
            assert value not in peers, f"peer listed twice: {value}"
            current = peers[value] = {"allowed_ip": frozenset()}
        elif current is None:
            device[key] = value
        elif key == "allowed_ip":
            current["allowed_ip"] = current["allowed_ip"] | {value}
        elif key not in VOLATILE:
            current[key] = value
    return {"device": device, "peers": peers}
