"""WireGuard nodes in lab namespaces: pywgd or Debian's wireguard-go, configured with `wg`.

Shared by the interop and wg/wg-quick tests. A node is one daemon in one lab
host, with tunnel addresses 198.19.NET.INDEX/24 and fd19::NET:INDEX/112.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
import tempfile
from dataclasses import dataclass, field

from pywg import labwg
from pywg.keys import PresharedKey, PrivateKey, PublicKey
from pywg.lab import Host, Lab
from pywg.labwg import Impl

IMPLS = ("pywgd", "wireguard-go")


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
    """A skip reason naming the first tool not installed, or None."""
    for tool in tools:
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt install the lab tools, see .ci/run)"
    return None


def argv_for(impl: str) -> list[str]:
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
    peers: dict[str, PublicKey] = field(default_factory=dict)

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


class _secret_file:
    """A 0600 temporary file holding one line, removed on exit (keys never on argv)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.path = ""

    def __enter__(self) -> str:
        fd, self.path = tempfile.mkstemp(prefix="pywg-key-")
        os.fchmod(fd, 0o600)
        os.write(fd, self.text.encode() + b"\n")
        os.close(fd)
        return self.path

    def __exit__(self, *exc: object) -> None:
        os.unlink(self.path)


def start_node(
    lab: Lab,
    host: Host,
    impl: str,
    *,
    net: int,
    index: int,
    port: int = 51820,
    mtu: int = 1420,
    env: dict[str, str] | None = None,
) -> Node:
    """Start a daemon (it daemonizes itself, as wg-quick runs it), key it, address it, up."""
    spec = Impl("pywgd", (pywgd_path(),)) if impl == "pywgd" else Impl.parse(impl)
    node = labwg.start_node(lab, host, spec, net=net, index=index, port=port, mtu=mtu, env=env)
    return Node(host, impl, node.ifname, node.key, port, node.addr4, node.addr6)


def connect(
    a: Node,
    b: Node,
    *,
    a_endpoint: str | None,
    b_endpoint: str | None,
    preshared_key: PresharedKey | None = None,
    persistent_keepalive: int | None = None,
) -> None:
    """Make a and b peers; `a_endpoint` is where b reaches a (None: b learns it)."""
    a.add_peer(
        b,
        endpoint=b_endpoint,
        preshared_key=preshared_key,
        persistent_keepalive=persistent_keepalive,
    )
    b.add_peer(
        a,
        endpoint=a_endpoint,
        preshared_key=preshared_key,
        persistent_keepalive=persistent_keepalive,
    )


def endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
