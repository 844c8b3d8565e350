"""The local UDP socket between the tunnel's data planes and a TCP session.

The tunnel holds the relay at this socket's address (``127.0.0.1``, a port
the kernel picks: `Tunnel.set_relay`), so both planes send it the tagged
messages for relayed peers; each goes to the session as a DATAGRAM frame.
Each DATAGRAM from the relay is sent from this socket to the tunnel's port,
so the planes see it come from the relay's address and untag it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from .tcp import TcpSession

LOOPBACK = "127.0.0.1"


class Bridge(asyncio.DatagramProtocol):
    """Datagrams between the tunnel's UDP port and the current session (None: dropped)."""

    def __init__(self, tunnel_port: Callable[[], int]) -> None:
        self._tunnel_port = tunnel_port  # read each time: the tunnel may rebind its socket
        self.session: TcpSession | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.to_relay = self.from_relay = self.dropped = 0

    @classmethod
    async def open(cls, tunnel_port: Callable[[], int]) -> Bridge:
        loop = asyncio.get_running_loop()
        _, bridge = await loop.create_datagram_endpoint(
            lambda: cls(tunnel_port), local_addr=(LOOPBACK, 0)
        )
        return bridge

    @property
    def endpoint(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    @property
    def tunnel(self) -> tuple[str, int]:
        """Where the tunnel's socket is, as this socket sees it."""
        return (LOOPBACK, self._tunnel_port())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        # only the tunnel's own socket may send through the relay as this node
        if (addr[0], addr[1]) != self.tunnel or self.session is None or not self.session.send(data):
            self.dropped += 1
            return
        self.to_relay += 1

    def deliver(self, message: bytes) -> None:
        """A DATAGRAM's message from the relay, to the tunnel."""
        if self.transport is not None:
            self.transport.sendto(message, self.tunnel)
            self.from_relay += 1

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
