"""A user-space stack over a tunnel's `PacketLink`, as the proxies' `Network`.

`pywg.netstack.Stack(link, addresses=...)` speaks TCP, UDP and ICMP over a
`PacketLink` with an asyncio API; `StackNetwork` turns it into a `Network`:
connections and datagrams leave through the tunnel, servers listen at the
node's tunnel addresses. `StackLike` is the part of the stack's API used
here, so the proxies depend on that shape only; `make_stack` is the one
place that imports the stack itself.

Names: an address is used as it is; a name goes to `resolver` (the mesh's
DNS through the stack, where the command has one) and otherwise fails as a
name that does not resolve, since the machine's own resolver would leak
the lookup outside the tunnel.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from ..packetlink import PacketLink
from .network import ClientCallback, DatagramEndpoint, DatagramQueue, Listener, QueuedEndpoint

Resolver = Callable[[str], Awaitable[list[str]]]


class StackLike(Protocol):
    """What the proxies use of `pywg.netstack.Stack`."""

    async def open_connection(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...

    async def start_server(self, client_connected_cb: ClientCallback, port: int) -> Any: ...

    async def create_datagram_endpoint(
        self, protocol_factory: Callable[[], asyncio.DatagramProtocol], **kwargs: Any
    ) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]: ...

    def close(self) -> None: ...


StackFactory = Callable[[PacketLink, Sequence[str]], StackLike]


class NetstackMissing(RuntimeError):
    """This build has no user-space stack (`pywg.netstack`)."""


def make_stack(link: PacketLink, addresses: Sequence[str]) -> StackLike:
    """The user-space stack on `link` with the node's tunnel `addresses` (CIDR or bare)."""
    try:
        from pywg.netstack import Stack  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise NetstackMissing(
            f"--userspace needs pywg.netstack, the user-space TCP/IP stack ({exc})"
        ) from None
    stack: StackLike = Stack(link, addresses=list(addresses))
    return stack


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class StackNetwork:
    """`Network` over a user-space stack."""

    def __init__(self, stack: StackLike, resolver: Resolver | None = None) -> None:
        self.stack = stack
        self._resolver = resolver

    async def resolve(self, name: str) -> list[str]:
        if is_address(name):
            return [name]
        if self._resolver is None:
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: no resolver in the tunnel")
        addresses = await self._resolver(name)
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: no address")
        return addresses

    async def open_connection(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        (address, *_) = await self.resolve(host)
        return await self.stack.open_connection(address, port)

    async def open_datagram(self) -> DatagramEndpoint:
        transport, protocol = await self.stack.create_datagram_endpoint(DatagramQueue)
        assert isinstance(protocol, DatagramQueue)
        return QueuedEndpoint(transport, protocol)

    async def start_server(self, callback: ClientCallback, port: int) -> Listener:
        listener: Listener = await self.stack.start_server(callback, port)
        return listener
