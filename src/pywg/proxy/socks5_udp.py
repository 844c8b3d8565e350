"""SOCKS5 UDP ASSOCIATE (RFC 1928 §7): datagrams relayed between a client and a `Network`.

For each association the server binds a relay socket on the address the
client's control connection came to, and opens one endpoint on the network.
A datagram from the client carries the §7 header naming its destination
(resolved by the network when it is a name); the payload goes there, and
what comes back is sent to the client behind a header naming its source.

Only the client may use the association: datagrams must come from the
control connection's peer address, and from the port the request named (or,
if it named none, the port of the first one). Fragments (FRAG != 0) are
dropped, as §7 allows a server that does not reassemble. The association
ends with its control connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from typing import Final

from . import socks5
from .limits import Gate, Limits
from .network import Address, DatagramEndpoint, DatagramQueue, Network, QueuedEndpoint
from .socks5 import Request, Socks5Error

log = logging.getLogger("pywg.proxy")

NAME_CACHE: Final = 64  # resolved destination names kept per association


class UdpRelay:
    """Serves the UDP associations of one SOCKS5 server, at most `max_udp_associations`."""

    def __init__(self, network: Network, limits: Limits) -> None:
        self.network = network
        self.gate = Gate(limits.max_udp_associations)

    async def associate(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer the request and relay until the control connection closes."""
        if not self.gate.enter():
            writer.write(socks5.encode_reply(socks5.GENERAL_FAILURE))
            await writer.drain()
            return
        try:
            await self._serve(request, reader, writer)
        finally:
            self.gate.leave()

    async def _serve(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        local = writer.get_extra_info("sockname")
        peer = writer.get_extra_info("peername")
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            DatagramQueue, local_addr=(local[0], 0)
        )
        client_side = QueuedEndpoint(transport, protocol)
        try:
            outside = await self.network.open_datagram()
        except OSError:
            client_side.close()
            writer.write(socks5.encode_reply(socks5.GENERAL_FAILURE))
            await writer.drain()
            return
        bound = transport.get_extra_info("sockname")
        association = Association(self.network, client_side, outside, peer[0], request.port)
        writer.write(socks5.encode_reply(socks5.SUCCEEDED, str(bound[0]), int(bound[1])))
        await writer.drain()
        try:
            await association.run(reader)
        finally:
            client_side.close()
            outside.close()


class Association:
    """One client's association: the two endpoints and who may use them."""

    def __init__(
        self,
        network: Network,
        client_side: DatagramEndpoint,
        outside: DatagramEndpoint,
        client_host: str,
        client_port: int,
    ) -> None:
        self.network = network
        self.client_side = client_side
        self.outside = outside
        self.client_host = _plain(client_host)
        self.client_port = client_port or None  # 0: the first datagram's port
        self._names: dict[str, str] = {}
        self.dropped = 0

    async def run(self, control: asyncio.StreamReader) -> None:
        """Relay both ways until the control connection ends (§7)."""
        tasks = [
            asyncio.ensure_future(self._from_client()),
            asyncio.ensure_future(self._to_client()),
            asyncio.ensure_future(_until_closed(control)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _from_our_client(self, source: Address) -> bool:
        host, port = source
        if _plain(host) != self.client_host:
            return False
        if self.client_port is None:
            self.client_port = port
        return port == self.client_port

    async def _from_client(self) -> None:
        while True:
            data, source = await self.client_side.recvfrom()
            if not self._from_our_client(source):
                self.dropped += 1
                continue
            try:
                datagram = socks5.parse_udp_datagram(data)
            except Socks5Error:
                self.dropped += 1
                continue
            if datagram.fragment:  # §7: no reassembly here, so fragments are dropped
                self.dropped += 1
                continue
            address = await self._address(datagram.host, datagram.atyp)
            if address is None:
                self.dropped += 1
                continue
            self.outside.sendto(datagram.payload, (address, datagram.port))

    async def _to_client(self) -> None:
        while True:
            data, (host, port) = await self.outside.recvfrom()
            if self.client_port is None:
                continue  # nobody to send it to yet
            reply = socks5.encode_udp_datagram(_plain(host), port, data)
            self.client_side.sendto(reply, (self.client_host, self.client_port))

    async def _address(self, host: str, atyp: int) -> str | None:
        """The destination address: as given, or a name resolved by the network (cached)."""
        if atyp != socks5.ATYP_DOMAIN:
            return host
        if host in self._names:
            return self._names[host]
        try:
            addresses = await self.network.resolve(host)
        except OSError as exc:
            log.debug("socks5 udp: %s does not resolve: %s", host, exc)
            return None
        if not addresses:
            return None
        if len(self._names) >= NAME_CACHE:
            self._names.pop(next(iter(self._names)))
        self._names[host] = addresses[0]
        return addresses[0]


def _plain(host: str) -> str:
    """An address without its IPv4-mapped IPv6 form (a dual-stack socket's view)."""
    with contextlib.suppress(ValueError):
        address = ipaddress.ip_address(host.partition("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(address)
    return host


async def _until_closed(control: asyncio.StreamReader) -> None:
    """Read the control connection to its end (a client sends nothing more on it)."""
    while await control.read(4096):
        pass
