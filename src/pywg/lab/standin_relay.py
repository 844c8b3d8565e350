"""A stand-in home relay for lab tests and benchmarks of the relayed data path.

It forwards tagged WireGuard messages (`pywg.relayed`, docs/relay.md) as
`pywg relay serve` does, but learns where each node is from a plain hello
(`hello(node_id)`, sent from the node's WireGuard socket) instead of a
signed association: what it measures and tests is the data path only. With
`native` the relay's own native forwarding loop (`pywg._fast.relay`) does
the forwarding; otherwise a loop in Python forwards each datagram.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Final

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
