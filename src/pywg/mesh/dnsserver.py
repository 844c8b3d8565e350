"""The node's DNS server: UDP and TCP port 53 on its tunnel addresses (`pywg.mesh.dns`).

Each query goes through `dns.answer` against the current zone (`zone`, an
attribute the node replaces whenever the roster changes). Names outside
the zone are passed to the upstream servers (the machine's own, from
/etc/resolv.conf: `pywg.system.resolver.nameservers`), in order, each given
FORWARD_TIMEOUT; UDP queries go upstream over UDP (a truncated answer is
passed back truncated, and the client asks again over TCP, RFC 7766 §5),
TCP queries over TCP. No upstream answering: SERVFAIL. dnspython's query
functions do the upstream exchange (a random source port and id checked,
RFC 5452 §9.2); at most MAX_FORWARDS run at once, and what comes beyond is
dropped (the client asks again).

A TCP connection may carry several queries, each a 2-byte length and the
message (RFC 1035 §4.2.2, RFC 7766 §6.2.1); it is closed after TCP_IDLE
seconds without one. The sockets are bound with IP_FREEBIND, so a tunnel
address still in duplicate address detection (RFC 4862 §5.4) does not fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Sequence
from typing import Any, Final, cast

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode

from . import dns as names

PORT: Final = 53
FORWARD_TIMEOUT: Final = 2.0
MAX_FORWARDS: Final = 128
MAX_TCP: Final = 64  # connections at once
TCP_IDLE: Final = 10.0
IP_FREEBIND: Final = 15  # linux/in.h
IPV6_FREEBIND: Final = 78  # linux/in6.h

log = logging.getLogger("pywg.mesh")


class DnsServer:
    """Answers for `zone` on `addresses` port `port`, forwarding the rest to `upstreams`."""

    def __init__(
        self,
        zone: names.Zone,
        upstreams: Sequence[str],
        port: int = PORT,
        upstream_port: int = PORT,
    ) -> None:
        self.zone = zone
        self.upstreams = list(upstreams)
        self.port = port
        self.upstream_port = upstream_port
        self._transports: list[asyncio.DatagramTransport] = []
        self._servers: list[asyncio.Server] = []
        self._forwards = asyncio.Semaphore(MAX_FORWARDS)
        self._tcp = asyncio.Semaphore(MAX_TCP)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, addresses: Sequence[str]) -> None:
        """Listen on UDP and TCP `port` of each address; OSError if one cannot be bound."""
        loop = asyncio.get_running_loop()
        try:
            for address in addresses:
                udp = _bound(address, self.port, socket.SOCK_DGRAM)
                transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp)
                self._transports.append(transport)
                tcp = _bound(address, self.port, socket.SOCK_STREAM)
                tcp.listen(16)
                self._servers.append(await asyncio.start_server(self._serve_tcp, sock=tcp))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        self._transports, self._servers = [], []

    def spawn_udp(
        self, transport: asyncio.DatagramTransport, data: bytes, source: tuple[Any, ...]
    ) -> None:
        reply = names.answer(self.zone, data)
        if isinstance(reply, bytes):
            transport.sendto(reply, source)
        elif isinstance(reply, names.Forward) and not self._forwards.locked():
            task = asyncio.ensure_future(self._forward_udp(transport, reply.query, source))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _forward_udp(
        self,
        transport: asyncio.DatagramTransport,
        query: dns.message.Message,
        source: tuple[Any, ...],
    ) -> None:
        reply = await self.forward(query, tcp=False)
        if not transport.is_closing():
            transport.sendto(reply, source)

    async def forward(self, query: dns.message.Message, *, tcp: bool) -> bytes:
        """The upstream answer to `query`, for a client over TCP or UDP; SERVFAIL if none."""
        async with self._forwards:
            for upstream in self.upstreams:
                try:
                    if tcp:
                        response = await dns.asyncquery.tcp(
                            query, upstream, FORWARD_TIMEOUT, self.upstream_port
                        )
                    else:
                        response = await dns.asyncquery.udp(
                            query,
                            upstream,
                            FORWARD_TIMEOUT,
                            self.upstream_port,
                            ignore_unexpected=True,
                        )
                    return names.render(response, query, tcp=tcp)
                except (dns.exception.DNSException, OSError, EOFError, ValueError) as exc:
                    log.debug("DNS upstream %s: %r", upstream, exc)
        return names.response_to(query, dns.rcode.SERVFAIL, tcp=tcp)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._tcp.locked():
            writer.close()
            return
        async with self._tcp:
            try:
                while True:
                    size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), TCP_IDLE))
                    data = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE)
                    reply = names.answer(self.zone, data, tcp=True)
                    if isinstance(reply, names.Forward):
                        reply = await self.forward(reply.query, tcp=True)
                    if reply is None:
                        break
                    writer.write(len(reply).to_bytes(2, "big") + reply)
                    await writer.drain()
            except (TimeoutError, asyncio.IncompleteReadError, OSError):
                pass
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's: no subclass

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self.transport is not None:
            self.server.spawn_udp(self.transport, data, addr)


def _bound(address: str, port: int, kind: int) -> socket.socket:
    """A socket of type `kind` bound to (address, port), freebind, non-blocking."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        sock.bind((address, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
