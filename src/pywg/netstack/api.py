"""`Stack`: the asyncio face of the network stack, in the manner of asyncio's own.

    stack = Stack(link, addresses=["100.64.0.2", "fd00::2"])
    reader, writer = await stack.open_connection("100.64.0.1", 80)
    server = await stack.start_server(handle, port=8080)
    transport, protocol = await stack.create_datagram_endpoint(MyProtocol, remote_addr=(...))
    rtt = await stack.ping("100.64.0.1")

Streams are asyncio's own `StreamReader`/`StreamWriter` on a `TcpTransport`, so code
written for asyncio's sockets runs on the stack as it is.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pywg.netstack import icmp, ip, udp
from pywg.netstack.datagram import UdpTransport
from pywg.netstack.listener import Listener, ProtocolFactory
from pywg.netstack.resolve import resolve
from pywg.netstack.server import Server
from pywg.netstack.stack import EPHEMERAL, StackCore
from pywg.netstack.transport import TcpTransport

_P = TypeVar("_P", bound=asyncio.BaseProtocol)
_D = TypeVar("_D", bound=asyncio.DatagramProtocol)
ClientConnected = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None]
STREAM_LIMIT = 2**16  # asyncio.streams' default


class Stack(StackCore):
    """A user-space IPv4/IPv6 stack on a `PacketLink` (see the module docstring)."""

    async def resolve(self, host: str) -> list[bytes]:
        """The packed addresses of `host` (a literal, or a name through the resolver)."""
        return await resolve(host, self.resolver)

    async def _pick(self, host: str) -> bytes:
        """The first address of `host` that one of our addresses can reach."""
        families = {len(a.packed) for a in self.addresses}
        for addr in await self.resolve(host):
            if len(addr) in families:
                return addr
        raise OSError(f"{host}: no address of a family this stack has")

    async def create_connection(
        self, protocol_factory: Callable[[], _P], host: str, port: int
    ) -> tuple[TcpTransport, _P]:
        """Open a TCP connection (as `loop.create_connection`)."""
        remote = await self._pick(host)
        local = self.source_for(remote)
        if not self.has_room():
            raise OSError("too many connections")
        lport = self.free_port(local, remote, port)
        key = (local, lport, remote, port)
        conn = self.new_connection(key, self.sequencer.isn(key, self.loop.time()))
        protocol = protocol_factory()
        waiter: asyncio.Future[None] = self.loop.create_future()
        transport = TcpTransport(self.loop, conn, protocol, waiter)
        conn.connect(transport, self.loop.time())
        self.touched(conn)
        self._flush()
        try:
            await waiter
        except BaseException:
            conn.abort()
            raise
        return transport, protocol

    async def open_connection(
        self, host: str, port: int, *, limit: int = STREAM_LIMIT
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A (reader, writer) pair on a new TCP connection (as `asyncio.open_connection`)."""
        reader = asyncio.StreamReader(limit=limit, loop=self.loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=self.loop)
        transport, _ = await self.create_connection(lambda: protocol, host, port)
        return reader, asyncio.StreamWriter(transport, protocol, reader, self.loop)

    async def create_server(
        self, protocol_factory: ProtocolFactory, port: int, *, backlog: int = 256
    ) -> Server:
        """Listen on `port` on all the stack's addresses (as `loop.create_server`).

        `backlog` bounds the handshakes held at once; past it, SYN cookies answer.
        """
        if port in self.listeners:
            raise OSError(f"port {port} is already listened on")
        listener = Listener(self, port, protocol_factory, backlog)
        self.listeners[port] = listener
        return Server(listener, self._unlisten)

    async def start_server(
        self,
        client_connected_cb: ClientConnected,
        port: int,
        *,
        limit: int = STREAM_LIMIT,
        backlog: int = 256,
    ) -> Server:
        """Call `client_connected_cb(reader, writer)` per connection (as `asyncio.start_server`)."""

        def factory() -> asyncio.StreamReaderProtocol:
            reader = asyncio.StreamReader(limit=limit, loop=self.loop)
            return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=self.loop)

        return await self.create_server(factory, port, backlog=backlog)

    def _unlisten(self, listener: Listener) -> None:
        if self.listeners.get(listener.port) is listener:
            del self.listeners[listener.port]

    async def create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], _D],
        local_addr: tuple[str, int] | None = None,
        remote_addr: tuple[str, int] | None = None,
        **options: Any,
    ) -> tuple[UdpTransport, _D]:
        """A UDP endpoint (as `loop.create_datagram_endpoint`); port 0 or none picks one.

        The endpoint listens on all the stack's addresses. asyncio's socket options
        (`family`, `proto`, `flags`, `reuse_port`, `allow_broadcast`, `sock`) have no
        meaning here: given with a value other than their default, they are refused.
        """
        unsupported = sorted(
            name for name, value in options.items() if value not in (None, 0, False)
        )
        if unsupported:
            raise ValueError(f"unsupported datagram endpoint options: {', '.join(unsupported)}")
        port = local_addr[1] if local_addr else 0
        if port == 0:
            port = next(
                p for p in random.sample(EPHEMERAL, len(EPHEMERAL)) if p not in self.udp_ports
            )
        elif port in self.udp_ports:
            raise OSError(f"UDP port {port} is in use")
        remote = None
        if remote_addr is not None:
            remote = (await self._pick(remote_addr[0]), int(remote_addr[1]))
        protocol = protocol_factory()
        transport = UdpTransport(
            self.loop, port, protocol, self._udp_send, self._udp_release, remote
        )
        self.udp_ports[port] = transport
        protocol.connection_made(transport)
        return transport, protocol

    def _udp_send(self, sport: int, dst: bytes, dport: int, data: bytes) -> None:
        src = self.source_for(dst)
        self._send_ip(src, dst, ip.PROTO_UDP, udp.build(src, dst, sport, dport, data))

    def _udp_release(self, port: int) -> None:
        self.udp_ports.pop(port, None)

    async def ping(
        self, host: str, *, timeout: float = 2.0, payload: bytes = b"pywg-netstack"
    ) -> float:
        """Send one ICMP(v6) echo request and wait for the reply: the round trip in seconds."""
        dst = await self._pick(host)
        src = self.source_for(dst)
        ident, seq = random.randrange(1 << 16), random.randrange(1 << 16)
        waiter: asyncio.Future[None] = self.loop.create_future()
        self.pings[(ident, seq)] = waiter
        version = 4 if len(dst) == 4 else 6
        proto = ip.PROTO_ICMP if version == 4 else ip.PROTO_ICMPV6
        started = self.loop.time()
        self._send_ip(
            src,
            dst,
            proto,
            icmp.build_echo(src, dst, icmp.request_kind(version), ident, seq, payload),
        )
        try:
            async with asyncio.timeout(timeout):
                await waiter
        finally:
            self.pings.pop((ident, seq), None)
        return self.loop.time() - started

    def close(self) -> None:
        """Reset every connection, stop listening, close UDP endpoints, detach from the link."""
        for listener in list(self.listeners.values()):
            listener.close()
        self.listeners.clear()
        for conn in list(self.connections.values()):
            conn.abort()
        for transport in list(self.udp_ports.values()):
            transport.close()
        self._flush()
        self.link.set_receiver(None)

    def __repr__(self) -> str:
        return f"<Stack {[str(a) for a in self.addresses]} connections={len(self.connections)}>"
