"""A huge set request over the UAPI socket keeps the event loop answering.

130,000 allowed IPs (IPv4 /16s and IPv6 /128s, the shape of
tests/tunnel/test_huge_config.py) are written to a real `UapiServer` whose
device mirrors into a `NativePlane`, while a task on the same loop samples how
late its 1 ms sleeps wake up: that lateness is how long a handshake message
or a timer would wait. The set must apply and the longest stall stay far
below what a handshake tolerates (the whole request takes about 30 ms here;
the pure-Python table and line-by-line parser stall the loop for about 0.6 s).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from pathlib import Path

import pytest

from pywg import _fast
from pywg.backend import BACKEND
from pywg.device import Device
from pywg.keys import PrivateKey
from pywg.uapi import UapiSession

pytestmark = [
    pytest.mark.skipif(
        not _fast.AVAILABLE or BACKEND != "native", reason="the native backend is not selected"
    ),
    pytest.mark.time_limit(60),
]

if _fast.AVAILABLE:
    from pywg._fast.plane import NativePlane

# Generous for a shared 2-CPU machine: measured 25 ms; line by line in Python, 0.6 s.
LONGEST_STALL = 0.3


class MirroringTunnel:
    """What `UapiServer` needs of a `Tunnel`: sessions on a device, a mirror after each."""

    name = "pwhuge"
    closed = False

    def __init__(self, device: Device, plane: NativePlane) -> None:
        self.device, self.plane = device, plane

    def uapi_session(self) -> UapiSession:
        return UapiSession(self.device, clock=time.monotonic)

    def refresh(self) -> None:
        self.plane.traffic(self.device, time.monotonic())

    def changed(self) -> None:
        self.plane.sync(self.device)


def huge_request() -> tuple[bytes, list[str]]:
    nets = []
    for n in range(65_000):
        nets.append(f"{n >> 8}.{n & 255}.0.0/16")
        nets.append(f"fd19::{n >> 16:x}:{n & 0xFFFF:x}/128")
    lines = ["set=1", f"private_key={PrivateKey.generate().to_hex()}", "replace_peers=true"]
    lines += [f"public_key={PrivateKey.generate().public_key.to_hex()}", "replace_allowed_ips=true"]
    lines += [f"allowed_ip={net}" for net in nets]
    return ("\n".join(lines) + "\n\n").encode(), nets


def send(path: str, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(path)
        sock.sendall(request)
        reply = b""
        while not reply.endswith(b"\n\n"):
            reply += sock.recv(65536)
    return reply


def test_a_set_of_130000_allowed_ips_never_stalls_the_loop_for_long(
    plane: NativePlane, tmp_path: Path
) -> None:
    from pywg.asyncio.uapi_server import UapiServer

    request, nets = huge_request()
    device = Device()

    async def main() -> tuple[bytes, float]:
        server = UapiServer(MirroringTunnel(device, plane), directory=str(tmp_path))  # type: ignore[arg-type]
        await server.start()
        loop, stalls, done = asyncio.get_running_loop(), [0.0], threading.Event()

        async def sample() -> None:
            while not done.is_set():
                start = loop.time()
                await asyncio.sleep(0.001)
                stalls.append(loop.time() - start - 0.001)

        sampler = asyncio.create_task(sample())
        try:
            reply = await asyncio.to_thread(send, server.path, request)
        finally:
            done.set()
            await sampler
            server.close()
        return reply, max(stalls)

    reply, longest = asyncio.run(main())
    assert reply == b"errno=0\n\n"
    [peer] = device.peers
    assert device.allowed_ips(peer) == [str(ipaddress.ip_network(net)) for net in nets]
    probe = bytes([200, 7, 1, 2])
    assert plane.route(probe) is device.route(probe) is not None
    assert longest < LONGEST_STALL, f"the loop stalled for {longest * 1000:.0f} ms"
