"""A stand-in for `pywg.netstack.Stack` in command tests: kernel sockets, echo on the link.

It has the shape `pywg.proxy.stacknet.StackLike` names: connections,
servers and datagram endpoints go to the kernel's loopback (so the proxies
and forwards of a command can be exercised before a real stack exists),
and ICMP echo requests to its first address that arrive on the tunnel's
link are answered there (so the tunnel's encrypted path is exercised too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from helpers.icmp import echo_reply_to
from pywg.packetlink import PacketLink


class KernelStack:
    def __init__(
        self, link: PacketLink, addresses: Sequence[str], *, redirect: str | None = None
    ) -> None:
        """`redirect`: connect there whatever the address asked for (a mesh address
        stands for a service on this machine's loopback)."""
        self.link = link
        self.addresses = list(addresses)
        self.address = addresses[0].partition("/")[0]
        self.redirect = redirect
        self.closed = False
        self.servers: dict[int, asyncio.Server] = {}  # tunnel port -> the kernel's server
        link.set_receiver(self._receive)

    def _receive(self, packets: Sequence[bytes]) -> None:
        replies = [r for p in packets if (r := echo_reply_to(p, self.address)) is not None]
        if replies:
            self.link.send(replies)

    async def open_connection(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.redirect or host, port)

    async def start_server(self, client_connected_cb: Any, port: int) -> asyncio.Server:
        server = await asyncio.start_server(client_connected_cb, "127.0.0.1", 0)
        self.servers[port] = server
        return server

    async def create_datagram_endpoint(
        self, protocol_factory: Callable[[], asyncio.DatagramProtocol], **kwargs: Any
    ) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            protocol_factory, local_addr=("127.0.0.1", 0), **kwargs
        )
        return transport, protocol

    def close(self) -> None:
        self.closed = True
        self.link.set_receiver(None)
