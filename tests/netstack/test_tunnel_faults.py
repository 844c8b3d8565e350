"""The netstack over a real tunnel under faults: the rootless path against the kernel's TCP.

Host a holds only this process's `UserspaceTunnel` with a `pywg.netstack`
stack on it (`pywg.lab.userspace.StackPath`); host b runs pywgd on a TUN
with a kernel TCP echo server behind it; the WireGuard datagrams between
them cross the lab's fault relay in host r, 5 % lost, 5 % held back (so
they arrive out of order) and 5 % duplicated, each way. One connection
carries data both ways at once and what comes back must be what went out.
"""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from pywg.lab import Lab
from pywg.lab.userspace import StackPath, start_kernel_server

pytestmark = pytest.mark.needs_lab()

PREFIX = "pwnsf"
ECHO_PORT = 7
CHUNK = 1 << 16


async def echo_through(path: StackPath, nbytes: int) -> tuple[str, str, int]:
    """Send `nbytes` of random data through the echo while reading it back; SHA-256 of
    what was sent and of what came back, and the bytes that came back."""
    async with path.userspace() as stack:
        reader, writer = await stack.open_connection(path.peer.addr4, ECHO_PORT)
        sent = hashlib.sha256()

        async def send() -> None:
            block = os.urandom(1 << 20)
            for index in range(nbytes // CHUNK):  # every chunk differs: it starts with its index
                start = index * CHUNK % (len(block) - CHUNK)
                chunk = index.to_bytes(8, "big") + block[start + 8 : start + CHUNK]
                sent.update(chunk)
                writer.write(chunk)
                await writer.drain()
            writer.write_eof()

        sender = asyncio.ensure_future(send())
        got, total = hashlib.sha256(), 0
        while data := await reader.read(1 << 18):
            got.update(data)
            total += len(data)
        await sender
        writer.close()
        return sent.hexdigest(), got.hexdigest(), total


def run_under_faults(nbytes: int, timeout: float) -> None:
    with Lab(PREFIX) as lab:
        path = StackPath.build(lab, relay=True, seed=11)
        assert path.relay is not None
        path.relay.faults(loss=0.05, hold=0.05, dup=0.05)
        start_kernel_server(path.server, "echo", path.peer.addr4, ECHO_PORT)

        async def bounded() -> tuple[str, str, int]:
            return await asyncio.wait_for(echo_through(path, nbytes), timeout)

        sent, got, total = path.client.call(lambda: asyncio.run(bounded()))
        assert (total, got) == (nbytes, sent)
        stats = path.relay.stats()
        assert stats["lost"] and stats["held"] and stats["duplicated"], stats
        assert stats["to_a"] > nbytes // 1500 and stats["to_b"] > nbytes // 1500


@pytest.mark.time_limit(30)
def test_4_mb_each_way_through_the_tunnel_under_faults() -> None:
    run_under_faults(4 << 20, timeout=20)


@pytest.mark.slow
@pytest.mark.time_limit(600)
def test_100_mb_each_way_through_the_tunnel_under_faults() -> None:
    run_under_faults(100 << 20, timeout=560)
