"""`Network`: what the proxies need of a network, and the kernel's sockets as one.

The proxies (`pywg.proxy`) reach out through a `Network` and, for port
forwards, listen on one: on the kernel's sockets here (tests, and the local
side of a forward), on a user-space stack over a WireGuard tunnel
(`pywg.netstack`) in rootless operation. Names are resolved by the network
that connects, so that a mesh name is looked up inside the mesh.

Datagrams go through `DatagramEndpoint`, a small awaitable wrapper around an
asyncio datagram transport that any `create_datagram_endpoint` can feed
(`DatagramQueue` is its protocol).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

Address = tuple[str, int]
ClientCallback = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

# Datagrams waiting to be read per endpoint; beyond it the newest are dropped,
# as a full socket buffer drops them (UDP promises no delivery).
DATAGRAM_QUEUE: Final = 256


class Listener(Protocol):
    """A listening server (asyncio.Server has this shape)."""

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


class DatagramEndpoint(Protocol):
    """An unconnected UDP endpoint: send anywhere, receive from anyone."""

    async def recvfrom(self) -> tuple[bytes, Address]:
        """The next datagram and its source; ConnectionError once closed."""
        ...

    def sendto(self, data: bytes, address: Address) -> None: ...

    def close(self) -> None: ...


class Network(Protocol):
    """Where connections go (and, for forwards, come from)."""

    async def open_connection(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TCP connection to `host` (an address or a name this network resolves)."""
        ...

    async def open_datagram(self) -> DatagramEndpoint:
        """A UDP endpoint on an ephemeral port, for any destination."""
        ...

    async def resolve(self, name: str) -> list[str]:
        """The addresses of `name` (an address is its own answer); OSError if none."""
        ...

    async def start_server(self, callback: ClientCallback, port: int) -> Listener:
        """Accept TCP connections on `port` of this network's own address."""
        ...


class DatagramQueue(asyncio.DatagramProtocol):
    """An asyncio datagram protocol that queues what arrives, for `QueuedEndpoint`."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Address] | None] = asyncio.Queue(DATAGRAM_QUEUE)
        self.dropped = 0

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if self.queue.full():
            self.dropped += 1
            return
        self.queue.put_nowait((data, (str(addr[0]), int(str(addr[1])))))

    def error_received(self, exc: Exception) -> None:
        """ICMP errors of earlier sends: UDP does not report them to the sender."""

    def connection_lost(self, exc: Exception | None) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class QueuedEndpoint:
    """A `DatagramEndpoint` over any asyncio datagram transport fed by a `DatagramQueue`."""

    def __init__(self, transport: asyncio.DatagramTransport, protocol: DatagramQueue) -> None:
        self.transport = transport
        self.protocol = protocol

    async def recvfrom(self) -> tuple[bytes, Address]:
        item = await self.protocol.queue.get()
        if item is None:
            self.protocol.queue.put_nowait(None)  # for any other reader
            raise ConnectionError("datagram endpoint closed")
        return item

    def sendto(self, data: bytes, address: Address) -> None:
        self.transport.sendto(data, address)

    def close(self) -> None:
        self.transport.close()


class KernelNetwork:
    """The kernel's sockets as a `Network`; servers listen on `host` (loopback by default)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host

    async def open_connection(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port)

    async def open_datagram(self) -> DatagramEndpoint:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # both families
            sock.bind(("::", 0))
        except OSError:
            sock.close()
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("0.0.0.0", 0))
        transport, protocol = await loop.create_datagram_endpoint(DatagramQueue, sock=sock)
        return DualStackEndpoint(transport, protocol, sock.family)

    async def resolve(self, name: str) -> list[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    async def start_server(self, callback: ClientCallback, port: int) -> Listener:
        return await asyncio.start_server(callback, self.host, port)


class DualStackEndpoint(QueuedEndpoint):
    """A `QueuedEndpoint` on one AF_INET6 socket serving both families (v4-mapped)."""

    def __init__(
        self, transport: asyncio.DatagramTransport, protocol: DatagramQueue, family: int
    ) -> None:
        super().__init__(transport, protocol)
        self.family = family

    async def recvfrom(self) -> tuple[bytes, Address]:
        data, (host, port) = await super().recvfrom()
        return data, (host.removeprefix("::ffff:") if "." in host else host, port)

    def sendto(self, data: bytes, address: Address) -> None:
        host, port = address
        if self.family == socket.AF_INET6 and ":" not in host:
            host = "::ffff:" + host
        self.transport.sendto(data, (host, port))
