"""Names to addresses for the stack: literals, a pluggable resolver, and DNS over the stack.

A resolver is any `async (name) -> [address, ...]`. `DnsResolver` asks one DNS server
(the mesh's, typically) over the stack's own UDP, A and AAAA, with dnspython building and
reading the messages.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import dns.exception
import dns.message
import dns.rdatatype

Resolver = Callable[[str], Awaitable[Sequence[str]]]


class DatagramOpener(Protocol):
    """What DNS needs of a stack: its UDP endpoints."""

    async def create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], Any],
        local_addr: tuple[str, int] | None = None,
        remote_addr: tuple[str, int] | None = None,
    ) -> tuple[asyncio.DatagramTransport, Any]: ...


def literal(host: str) -> bytes | None:
    """The packed address if `host` is an IP literal (brackets allowed for IPv6)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).packed
    except ValueError:
        return None


async def resolve(host: str, resolver: Resolver | None) -> list[bytes]:
    """The packed addresses of `host`; socket.gaierror when there are none."""
    packed = literal(host)
    if packed is not None:
        return [packed]
    if resolver is None:
        raise socket.gaierror(socket.EAI_NONAME, f"{host}: no resolver for names")
    found = [p for p in (literal(a) for a in await resolver(host)) if p is not None]
    if not found:
        raise socket.gaierror(socket.EAI_NONAME, f"{host}: name unknown")
    return found


class _Answers(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.queue.full():
            self.queue.put_nowait(data)


class DnsResolver:
    """Resolve names with one DNS server reached through the stack (RFC 1035 over UDP)."""

    def __init__(
        self, stack: DatagramOpener, server: str, port: int = 53, timeout: float = 2.0
    ) -> None:
        self.stack = stack
        self.server = (server, port)
        self.timeout = timeout

    async def __call__(self, name: str) -> list[str]:
        found: list[str] = []
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            found += await self._query(name, rdtype)
        return found

    async def _query(self, name: str, rdtype: dns.rdatatype.RdataType) -> list[str]:
        query = dns.message.make_query(name, rdtype)
        transport, answers = await self.stack.create_datagram_endpoint(
            _Answers, remote_addr=self.server
        )
        try:
            transport.sendto(query.to_wire())
            async with asyncio.timeout(self.timeout):
                while True:
                    try:
                        reply = dns.message.from_wire(await answers.queue.get())
                    except dns.exception.DNSException:
                        continue
                    if query.is_response(reply):
                        break
        except TimeoutError:
            return []
        finally:
            transport.close()
        return [rd.to_text() for rrset in reply.answer if rrset.rdtype == rdtype for rd in rrset]
