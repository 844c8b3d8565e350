"""UDP endpoints, ICMP(v6) echo and name resolution (over the stack's own UDP) between
two netstacks."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import dns.message
import dns.rrset
import pytest

from helpers.packet_links import stack_pair
from pywg.lab.relay import Faults
from pywg.netstack import DnsResolver, Stack

pytestmark = pytest.mark.time_limit(30)


def run(coro: Any, timeout: float = 20.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


class Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.put_nowait((data, addr))


class Echo(Collect):
    def datagram_received(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)


@pytest.mark.parametrize("host", ["10.0.0.2", "fd00::2"])
def test_ping_is_answered(host: str) -> None:
    async def main() -> None:
        a, _b, _, _ = stack_pair()
        assert 0 <= await a.ping(host) < 1

    run(main())


def test_ping_without_a_reply_times_out() -> None:
    async def main() -> None:
        a, _b, link_a, _ = stack_pair()
        link_a.faults = Faults(loss=1.0)
        with pytest.raises(TimeoutError):
            await a.ping("10.0.0.2", timeout=0.05)
        assert not a.pings

    run(main())


@pytest.mark.parametrize("host", ["10.0.0.2", "fd00::2"])
def test_udp_datagrams_both_ways(host: str) -> None:
    async def main() -> None:
        a, b, _, _ = stack_pair()
        await b.create_datagram_endpoint(Echo, local_addr=("0.0.0.0", 9))
        transport, client = await a.create_datagram_endpoint(Collect, remote_addr=(host, 9))
        for size in (0, 1, 1000, 1300):
            transport.sendto(bytes([size % 256]) * size)
            data, addr = await client.got.get()
            assert data == bytes([size % 256]) * size and addr[:2] == (host, 9)
        assert transport.get_extra_info("peername")[:2] == (host, 9)
        transport.close()
        assert not any(p == transport.port for p in a.udp_ports)

    run(main())


def test_a_connected_endpoint_ignores_other_senders() -> None:
    async def main() -> None:
        a, b, _, _ = stack_pair()
        server, _ = await b.create_datagram_endpoint(Collect, local_addr=("0.0.0.0", 9))
        client, proto = await a.create_datagram_endpoint(
            Collect, local_addr=("0.0.0.0", 5000), remote_addr=("10.0.0.2", 10)
        )
        server.sendto(b"not from port 10", ("10.0.0.1", 5000))
        await asyncio.sleep(0.01)
        assert proto.got.empty()
        client.close()

    run(main())


async def serve_dns(stack: Stack, names: dict[str, list[str]]) -> None:
    """A tiny DNS server on the stack's UDP port 53 (the mesh DNS stands in this way)."""

    class Server(Collect):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            question = query.question[0]
            rdtype = dns.rdatatype.to_text(question.rdtype)
            name = question.name.to_text().rstrip(".")
            family = 4 if rdtype == "A" else 6
            found = [a for a in names.get(name, []) if (":" in a) == (family == 6)]
            if found:
                reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", rdtype, *found))
            assert self.transport is not None
            self.transport.sendto(reply.to_wire(), addr)

    await stack.create_datagram_endpoint(Server, local_addr=("0.0.0.0", 53))


def test_names_resolve_through_dns_over_the_stack() -> None:
    async def main() -> None:
        a, b, _, _ = stack_pair()
        await serve_dns(b, {"nas.mesh": ["10.0.0.2", "fd00::2"]})
        a.resolver = DnsResolver(a, "10.0.0.2", timeout=1.0)
        found = [str(ipaddress.ip_address(p)) for p in await a.resolve("nas.mesh")]
        assert found == ["10.0.0.2", "fd00::2"]

        async def hello(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"hello")
            writer.close()

        await b.start_server(hello, 80)
        reader, _w = await a.open_connection("nas.mesh", 80)
        assert await reader.read() == b"hello"
        with pytest.raises(socket.gaierror):
            await a.open_connection("missing.mesh", 80)

    run(main())


def test_names_without_a_resolver_are_refused() -> None:
    async def main() -> None:
        a, _b, _, _ = stack_pair()
        with pytest.raises(socket.gaierror):
            await a.open_connection("example.org", 80)

    run(main())
