"""WireGuard implementations running in lab hosts (part of `pywg.lab`).

Any implementation with wireguard-go's command line (`IMPL [-f] INTERFACE`,
daemonizing, a UAPI socket at /var/run/wireguard/INTERFACE.sock) can be
started in a lab host and configured over that socket with pywg's own UAPI
client, so neither `wg` nor wg-quick is needed::

    with Lab() as lab:
        a, b = lab.host("a"), lab.host("b")
        link = lab.link(a, b)
        left = start_node(lab, a, PYWGD, net=1, index=1)
        right = start_node(lab, b, WIREGUARD_GO, net=1, index=2)
        connect(left, right, link)          # each gets the other as a peer
        assert a.wait_ping(right.addr4)

Tunnel addresses are 198.19.NET.INDEX/24 and fd19::NET:INDEX/112 (the lab
rules' tunnel ranges).
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Protocol, Self, TypeVar

from ..endpoint import format_endpoint
from ..keys import PresharedKey, PrivateKey, PublicKey
from ..status import InterfaceStatus, PeerStatus, parse_get
from ..system import uapi_client
from .hosts import Host, Lab, LabError, Link

__all__ = [
    "PYWGD",
    "START_TIMEOUT",
    "WIREGUARD_GO",
    "Impl",
    "PeerNode",
    "WgNode",
    "connect",
    "endpoint",
    "start_node",
    "wait_handshake",
]

START_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class Impl:
    """An implementation: a display name and the command that starts its daemon."""

    name: str
    argv: tuple[str, ...]
    # The environment variable that makes its protocol time run N times fast
    # (pywgd: PYWG_TIME_SCALE), so that tests can scale timers; None: cannot.
    time_scale_env: str | None = None

    @classmethod
    def parse(cls, spec: str) -> Impl:
        """`pywgd`, `wireguard-go`, or any command line taking INTERFACE last."""
        if spec == "pywgd":
            return PYWGD
        argv = tuple(shlex.split(spec))
        if not argv:
            raise ValueError("empty implementation command")
        return cls(os.path.basename(argv[0]), argv)


PYWGD = Impl("pywgd", (sys.executable, "-m", "pywg.cmd.daemon"), "PYWG_TIME_SCALE")
WIREGUARD_GO = Impl("wireguard-go", ("wireguard-go",))


@dataclass
class WgNode:
    """One daemon in one lab host, with its key, port and tunnel addresses."""

    lab: Lab
    host: Host
    impl: Impl
    ifname: str
    key: PrivateKey
    port: int
    addr4: str
    addr6: str

    @property
    def public_key(self) -> PublicKey:
        return self.key.public_key

    def set(self, body: str) -> None:
        """A UAPI set request (the lines after `set=1`); raises LabError on a non-zero errno."""
        code = uapi_client.set_(self.ifname, body)
        if code != 0:
            raise LabError(f"{self.impl.name} {self.ifname}: set answered errno={code}")

    def status(self) -> InterfaceStatus:
        return parse_get(self.ifname, uapi_client.get(self.ifname))

    def peer_status(self, other: WgNode) -> PeerStatus:
        for peer in self.status().peers:
            if peer.public_key == str(other.public_key):
                return peer
        raise LabError(f"{other.ifname} is not a peer of {self.ifname}")

    def add_peer(
        self,
        other: WgNode,
        *,
        endpoint: str | None = None,
        allowed_ips: list[str] | None = None,
        preshared_key: PresharedKey | None = None,
        persistent_keepalive: int = 0,
    ) -> None:
        allowed = allowed_ips if allowed_ips is not None else other.host_routes()
        lines = [f"public_key={other.public_key.to_hex()}", "replace_allowed_ips=true"]
        lines += [f"allowed_ip={network}" for network in allowed]
        if endpoint is not None:
            lines.append(f"endpoint={endpoint}")
        if preshared_key is not None:
            lines.append(f"preshared_key={preshared_key.to_hex()}")
        lines.append(f"persistent_keepalive_interval={persistent_keepalive}")  # 0: off
        self.set("\n".join(lines) + "\n")

    def host_routes(self) -> list[str]:
        return [f"{self.addr4}/32", f"{self.addr6}/128"]


def endpoint(address: str, port: int) -> str:
    """`address`:`port` as wg(8) and the UAPI write it (:func:`pywg.endpoint.format_endpoint`)."""
    return format_endpoint((address, port))


def start_node(
    lab: Lab,
    host: Host,
    impl: Impl,
    *,
    net: int,
    index: int,
    port: int = 51820,
    mtu: int = 1420,
    env: dict[str, str] | None = None,
) -> WgNode:
    """Start `impl` in `host` (it daemonizes), give it a key and port, address it, bring it up."""
    ifname = lab.ifname("pw" if impl is PYWGD else "wg")
    # stderr to a file, not a pipe: a daemon child may keep it open (LOG_LEVEL), and
    # wireguard-go's banner about kernel support is noise unless the start fails
    with tempfile.TemporaryFile() as errors:
        proc = host.popen(*impl.argv, ifname, env=env, stderr=errors)
        try:
            code = proc.wait(timeout=START_TIMEOUT)
        except Exception as exc:  # TimeoutExpired: the parent never returned
            raise LabError(f"{impl.name} {ifname} did not start in {START_TIMEOUT:.0f} s") from exc
        if code != 0:
            errors.seek(0)
            tail = errors.read()[-500:].decode(errors="replace").strip()
            raise LabError(f"{impl.name} {ifname} exited with status {code} at start: {tail}")
    key = PrivateKey.generate()
    node = WgNode(
        lab, host, impl, ifname, key, port, f"198.19.{net}.{index}", f"fd19::{net}:{index}"
    )
    node.set(f"private_key={key.to_hex()}\nlisten_port={port}\n")
    host.addr(ifname, f"{node.addr4}/24")
    host.addr(ifname, f"{node.addr6}/112")
    host.link_up(ifname, mtu=mtu)
    host.wait_ipv6_ready(ifname)
    return node


class PeerNode(Protocol):
    """A daemon in a lab host that can be given a peer: :class:`WgNode`, or a test's own."""

    @property
    def host(self) -> Host: ...

    @property
    def port(self) -> int: ...

    def add_peer(
        self,
        other: Self,
        *,
        endpoint: str | None = None,
        preshared_key: PresharedKey | None = None,
        persistent_keepalive: int = 0,
    ) -> None: ...


N = TypeVar("N", bound=PeerNode)


def connect(
    a: N,
    b: N,
    link: Link | None,
    *,
    family: int = 4,
    preshared_key: PresharedKey | None = None,
    persistent_keepalive: int = 0,
) -> None:
    """Make a and b peers of each other; with `link`, both know the other's endpoint on it."""
    a_ep = b_ep = None
    if link is not None:
        a_ep = endpoint(link.address(a.host, family), a.port)
        b_ep = endpoint(link.address(b.host, family), b.port)
    for node, other, other_ep in ((a, b, b_ep), (b, a, a_ep)):
        node.add_peer(
            other,
            endpoint=other_ep,
            preshared_key=preshared_key,
            persistent_keepalive=persistent_keepalive,
        )


def wait_handshake(a: WgNode, b: WgNode, *, deadline: float = 10) -> bool:
    """Ping b from a until a reports a handshake with b (bounded)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        a.host.ping(b.addr4, count=1, timeout=1)
        if a.peer_status(b).last_handshake:
            return True
    return False
