"""A user-space end in the lab: `pywg.netstack` on a `UserspaceTunnel` to a TUN node.

The rootless path measured and tested against the kernel: host "a" holds no
interface, only this process's UDP socket (a `UserspaceTunnel` in a's
namespace, its packets on a `pywg.netstack.Stack` at 198.19.1.1); host "b"
runs a daemon (`pywgd` by default) on a TUN at 198.19.1.2, with a kernel TCP
server behind it (:func:`start_kernel_server`: an echo, or a sink that
answers the SHA-256 of what it read). With ``relay=True`` a third host "r"
carries the datagrams through the lab's fault relay (`pywg.lab.relay`)::

    with Lab("pwx") as lab:
        path = StackPath.build(lab, relay=True)
        path.relay.faults(loss=0.05, hold=0.05, dup=0.05)
        start_kernel_server(path.server, "echo", path.peer.addr4, 7)
        async def main():
            async with path.userspace() as stack:
                reader, writer = await stack.open_connection(path.peer.addr4, 7)
        path.client.call(lambda: asyncio.run(main()))   # a's namespace

`client.call` runs the event loop on a thread inside a's namespace, so the
tunnel's UDP socket lives there.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final, Literal

from ..asyncio.userspace import UserspaceTunnel
from ..keys import PrivateKey
from ..netstack import Stack, TcpConfig
from .hosts import Host, Lab, LabError
from .relay import Relay, RelayEnds
from .wireguard import PYWGD, Impl, WgNode, endpoint, start_node

PORT: Final = 51820
STACK_ADDRESS: Final = "198.19.1.1"  # the user-space end's; start_node(net=1, index=2) is .2
MTU: Final = 1420

_SERVER = r"""
import asyncio, hashlib, sys
mode, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])

async def echo(reader, writer):
    while chunk := await reader.read(1 << 18):
        writer.write(chunk)
        await writer.drain()
    writer.close()

async def sink(reader, writer):
    digest, total = hashlib.sha256(), 0
    while chunk := await reader.read(1 << 18):
        digest.update(chunk)
        total += len(chunk)
    writer.write(digest.digest() + total.to_bytes(8, "big"))
    await writer.drain()
    writer.close()

async def source(reader, writer):
    left = int.from_bytes(await reader.readexactly(8), "big")
    block = bytes(1 << 18)
    while left > 0:
        writer.write(block[:left])
        left -= len(block)
        await writer.drain()
    writer.close()

async def main():
    handlers = {"echo": echo, "sink": sink, "source": source}
    server = await asyncio.start_server(handlers[mode], address, port, backlog=4096)
    print("ready", flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


def start_kernel_server(
    host: Host, mode: Literal["echo", "sink", "source"], address: str, port: int
) -> subprocess.Popen[bytes]:
    """A kernel TCP server in `host` on `address`:`port`: "echo" sends back what it reads;
    "sink" reads to EOF and answers SHA-256 (32 bytes) and the byte count (8, big endian);
    "source" reads a count (8 bytes, big endian) and sends that many zero bytes.
    Returns once it listens; the lab stops it at close."""
    proc = host.popen(sys.executable, "-c", _SERVER, mode, address, str(port),
                      stdout=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise LabError(f"the kernel {mode} server in {host.name} did not start")
    return proc


@dataclass
class StackPath:
    """Host `client` (the user-space end's namespace), `server` with `peer` on its TUN,
    and `relay` between them (or None: a direct link)."""

    client: Host
    server: Host
    peer: WgNode
    key: PrivateKey  # the user-space end's
    endpoint: tuple[str, int]  # where the user-space end sends: the relay's or the peer's
    relay: Relay | None = None

    @classmethod
    def build(
        cls, lab: Lab, *, relay: bool = False, impl: Impl = PYWGD, seed: int = 1
    ) -> StackPath:
        a, b = lab.host("a"), lab.host("b")
        peer_end: tuple[str, int]
        if relay:
            r = lab.host("r")
            left, right = lab.link(a, r, v6=False), lab.link(r, b, v6=False)
            ends = RelayEnds(
                left=(left.b_addr4, PORT), right=(right.a_addr4, PORT),
                a=(left.a_addr4, PORT), b=(right.b_addr4, PORT),
            )  # fmt: skip
            fault_relay: Relay | None = Relay(r, ends, seed=seed)
            ours, peer_end = ends.left, ends.right
        else:
            link = lab.link(a, b, v6=False)
            fault_relay = None
            ours, peer_end = (link.b_addr4, PORT), (link.a_addr4, PORT)
        peer = start_node(lab, b, impl, net=1, index=2, port=PORT, mtu=MTU)
        key = PrivateKey.generate()
        peer.set(
            f"public_key={key.public_key.to_hex()}\nallowed_ip={STACK_ADDRESS}/32\n"
            f"endpoint={endpoint(*peer_end)}\n"
        )
        return cls(a, b, peer, key, ours, fault_relay)

    @contextlib.asynccontextmanager
    async def userspace(self, tcp: TcpConfig | None = None) -> AsyncIterator[Stack]:
        """The user-space tunnel (UDP port PORT) to the peer and a stack on it at
        STACK_ADDRESS; call inside the client's namespace (`client.call`)."""
        tunnel = UserspaceTunnel("lab", private_key=self.key, listen_port=PORT, mtu=MTU)
        async with tunnel:
            tunnel.add_peer(self.peer.public_key, [f"{self.peer.addr4}/32"], self.endpoint)
            stack = Stack(tunnel.link, addresses=[f"{STACK_ADDRESS}/24"], tcp=tcp)
            try:
                yield stack
            finally:
                stack.close()


__all__ = ["STACK_ADDRESS", "StackPath", "start_kernel_server"]
