"""The netstack against the kernel's own TCP/IP: a TUN device in a lab namespace is the
`PacketLink`, the kernel is the peer on the other side of it. Connections both ways,
both IP versions, and pings each way."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import Sequence

import pytest

from pywg.asyncio.tun import Tun
from pywg.lab import Host
from pywg.netstack import Stack
from pywg.packetlink import Receiver
from pywg.system import netns

PREFIX = "pwnsk"
pytestmark = [pytest.mark.needs_lab("ping"), pytest.mark.time_limit(40)]

KERNEL = ("10.77.0.1", "fd77::1")
STACK = ("10.77.0.2", "fd77::2")
MTU = 1420


class TunLink:
    """A TUN fd as a `PacketLink`: what the kernel routes into the TUN reaches the stack."""

    def __init__(self, tun: Tun) -> None:
        self.tun = tun
        self.receiver: Receiver | None = None
        asyncio.get_running_loop().add_reader(tun.fd, self._readable)

    @property
    def mtu(self) -> int:
        return MTU

    def set_receiver(self, receiver: Receiver | None) -> None:
        self.receiver = receiver

    def send(self, packets: Sequence[bytes]) -> None:
        for packet in packets:
            self.tun.write(packet)

    def _readable(self) -> None:
        batch = []
        while len(batch) < 64 and (packet := self.tun.read()) is not None:
            batch.append(packet)
        if batch and self.receiver is not None:
            self.receiver(batch)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.tun.fd)
        self.tun.close()


def kernel_side(host: Host) -> Tun:
    """A TUN in the host's namespace holding the kernel's addresses; the stack's are behind it."""
    tun = netns.run_in(host.netns, lambda: Tun("nsk0", mtu=MTU))
    host.run("ip", "addr", "add", f"{KERNEL[0]}/24", "dev", "nsk0")
    host.run("ip", "addr", "add", f"{KERNEL[1]}/64", "dev", "nsk0", "nodad")
    host.run("ip", "link", "set", "nsk0", "up")
    return tun


async def kernel_hash_server(host: Host, family: int, address: str) -> socket.socket:
    """A kernel TCP socket in the namespace that answers SHA-256 of what it reads to EOF."""
    sock = netns.socket_in(host.netns, family, socket.SOCK_STREAM)
    sock.bind((address, 8080))
    sock.listen(16)
    sock.setblocking(False)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        digest = hashlib.sha256()
        while chunk := await reader.read(1 << 16):
            digest.update(chunk)
        writer.write(digest.digest())
        await writer.drain()
        writer.close()

    await asyncio.start_server(handle, sock=sock)
    return sock


@pytest.mark.parametrize("version", [4, 6])
def test_the_kernel_and_the_stack_talk_tcp_both_ways(host: Host, version: int) -> None:
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    kernel, ours = (KERNEL[0], STACK[0]) if version == 4 else (KERNEL[1], STACK[1])

    async def main() -> None:
        link = TunLink(kernel_side(host))
        stack = Stack(link, STACK)
        await kernel_hash_server(host, family, kernel)
        data = os.urandom(8 << 20)
        # the stack opens, the kernel accepts
        reader, writer = await stack.open_connection(kernel, 8080)
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        assert await reader.read() == hashlib.sha256(data).digest()
        writer.close()
        # the kernel opens, the stack accepts
        got = hashlib.sha256()

        async def sink(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while chunk := await r.read(1 << 16):
                got.update(chunk)
            w.write(b"done")
            w.close()

        await stack.start_server(sink, 9090)
        client = netns.socket_in(host.netns, family, socket.SOCK_STREAM)
        client.setblocking(False)
        await asyncio.get_running_loop().sock_connect(client, (ours, 9090))
        k_reader, k_writer = await asyncio.open_connection(sock=client)
        k_writer.write(data)
        await k_writer.drain()
        k_writer.write_eof()
        assert await k_reader.read() == b"done"
        assert got.digest() == hashlib.sha256(data).digest()
        k_writer.close()
        stack.close()
        link.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_pings_both_ways(host: Host) -> None:
    async def main() -> None:
        link = TunLink(kernel_side(host))
        stack = Stack(link, STACK)
        for address in KERNEL:
            assert await stack.ping(address) < 1
        for address in STACK:
            ping = await asyncio.create_subprocess_exec(
                *host.exec_argv("ping", "-c", "1", "-W", "2", address),
                stdout=asyncio.subprocess.DEVNULL,
            )
            assert await ping.wait() == 0, address
        link.close()

    asyncio.run(asyncio.wait_for(main(), 20))
