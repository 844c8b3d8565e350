"""A stand-in home relay for lab tests and benchmarks of the relayed data path.

It forwards tagged WireGuard messages (`pywg.relayed`, docs/relay.md) as
`pywg relay serve` does, but learns where each node is from a plain hello
(`hello(node_id)`, sent from the node's WireGuard socket) instead of a
signed association: what it measures and tests is the data path only. With
`native` the relay's own native forwarding loop (`pywg._fast.relay`) does
the forwarding; otherwise a loop in Python forwards each datagram.

`start_node` runs the other side: a `pywg.asyncio.Tunnel` process whose one
peer is reached through the stand-in at its relayed endpoint (or directly,
for comparison), which says hello to the stand-in until it is ended.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Final

from .hosts import Host

HELLO: Final = b"\x00HELLO"  # first byte 0: the native loop hands it up, as it does STUN

_SOCKET = r"""
import socket, sys
sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
for option in (32, 33):  # SO_SNDBUFFORCE, SO_RCVBUFFORCE: as pywg relay serve's socket
    sock.setsockopt(socket.SOL_SOCKET, option, 4 << 20)
sock.bind(("::", int(sys.argv[1])))
HELLO = b"\x00HELLO"
"""

_NATIVE = (
    _SOCKET
    + r"""
import select
from pywg._fast.relay import NativeRelay
relay = NativeRelay(sock, print)
relay.start()
print("ready", flush=True)
while True:
    select.select([relay.hand_fd], [], [])
    for data, source in relay.received():
        if data[:6] == HELLO:
            relay.set_node(int.from_bytes(data[6:9], "big"), source)
"""
)

_PYTHON = (
    _SOCKET
    + r"""
where, who = {}, {}
print("ready", flush=True)
while True:
    data, source = sock.recvfrom(65535)
    if data[:6] == HELLO:
        node = int.from_bytes(data[6:9], "big")
        where[node], who[source] = source, node
    elif data[:1] in (b"\x01", b"\x02", b"\x03", b"\x04") and source in who:
        to = where.get(int.from_bytes(data[1:4], "big"))
        if to is not None:
            sock.sendto(data[:1] + who[source].to_bytes(3, "big") + data[4:], to)
"""
)


def hello(node_id: int) -> bytes:
    """What a node sends the stand-in from its WireGuard socket to name its id."""
    return HELLO + node_id.to_bytes(3, "big")


def start_standin_relay(host: Host, port: int, *, native: bool) -> subprocess.Popen[bytes]:
    """The stand-in relay on UDP `port` (every address) in `host`, once it listens."""
    proc = host.popen(
        sys.executable, "-c", _NATIVE if native else _PYTHON, str(port), stdout=subprocess.PIPE
    )
    if proc.stdout is None or proc.stdout.readline().strip() != b"ready":
        proc.kill()
        raise RuntimeError("the stand-in relay did not start")
    return proc


# argv: ifname key my_id peer_key peer_id relay_host relay_port peer_host addr peer_addr;
# peer_host "relay": the peer at its relayed endpoint through relay 1, else at peer_host
_NODE = r"""
import asyncio, json, subprocess, sys
from pywg import relayed
from pywg.asyncio.tunnel import Tunnel
from pywg.events import HandshakeCompleted
from pywg.keys import PrivateKey
from pywg.lab import standin_relay

ifname, key, my_id, peer_key, peer_id, relay_host, relay_port, peer_host, addr, peer_addr = (
    sys.argv[1:11])

async def main():
    async with Tunnel(ifname, private_key=PrivateKey.from_base64(key), listen_port=51820) as t:
        subprocess.run(["ip", "addr", "add", addr + "/24", "dev", ifname], check=True)
        subprocess.run(["ip", "link", "set", ifname, "up"], check=True)
        relay = (relay_host, int(relay_port))
        if peer_host == "relay":
            t.set_relay(1, relay)
            endpoint = relayed.endpoint(1, int(peer_id))
        else:
            endpoint = (peer_host, 51820)
        hello = standin_relay.hello(int(my_id))
        t.add_peer(peer_key, [peer_addr + "/32"], endpoint, persistent_keepalive=1)
        while True:
            t.send_datagram(hello, relay)
            try:
                if isinstance(await asyncio.wait_for(t.next_event(), 1.0), HandshakeCompleted):
                    break
            except TimeoutError:
                pass
        peer = next(iter(t.device.peers.values()))
        print(json.dumps({"endpoint": list(peer.endpoint), "native": t.native}), flush=True)
        while True:  # the stand-in's mapping of this node stays fresh
            t.send_datagram(hello, relay)
            await asyncio.sleep(2)

asyncio.run(main())
"""


@dataclass(frozen=True)
class NodeEnd:
    """One end of a tunnel through the stand-in: `node_id`, private key (base64),
    tunnel address."""

    node_id: int
    key: str
    address: str


def start_node(
    host: Host,
    ifname: str,
    me: NodeEnd,
    peer: NodeEnd,
    peer_public_key: str,
    relay: tuple[str, int],
    *,
    peer_host: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A Tunnel process on `host` (interface `ifname`) with `peer` as its one peer: through
    relay 1, the stand-in at `relay`, or at `peer_host` directly. Start both ends, then
    `node_up` each."""
    return host.popen(
        sys.executable, "-c", _NODE, ifname, me.key, str(me.node_id), peer_public_key,
        str(peer.node_id), relay[0], str(relay[1]), peer_host or "relay", me.address,
        peer.address, stdout=subprocess.PIPE, env=env,
    )  # fmt: skip


def node_up(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Once a `start_node` process's first handshake is done: what it said then
    (`endpoint`: where it holds the peer; `native`: whether the C plane runs it)."""
    line = proc.stdout.readline() if proc.stdout is not None else b""
    try:
        up: dict[str, Any] = json.loads(line)
    except ValueError:
        proc.kill()
        raise RuntimeError(f"the tunnel node did not come up: {line!r}") from None
    return up
