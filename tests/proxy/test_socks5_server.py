"""The SOCKS5 server (pywg.proxy) on the kernel's network: curl through it, replies, UDP, limits.

curl --socks5-hostname fetches a file by a name only the network knows (so
it was resolved remotely, by the network), and the bytes match; each
failure gets its RFC 1928 §6 reply; UDP ASSOCIATE relays datagrams with the
§7 header for the client only; garbage and silence end in a close, and the
server goes on serving.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from helpers.proxy_env import MESH_NAME, FileServer, NamedNetwork, curl, sha256, udp_echo
from pywg.proxy import Limits, Socks5Server, socks5

pytestmark = pytest.mark.time_limit(20)


@asynccontextmanager
async def serving(
    network: NamedNetwork, **kwargs: object
) -> AsyncIterator[tuple[Socks5Server, int]]:
    server = Socks5Server(network, **kwargs)  # type: ignore[arg-type]
    listener = await server.start("127.0.0.1", 0)
    try:
        yield server, listener.sockets[0].getsockname()[1]
    finally:
        await server.close()


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())  # type: ignore[arg-type]


async def negotiate(
    port: int, request: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Greet without authentication, send `request`; the reader, writer and the reply's head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(socks5.encode_greeting((socks5.NO_AUTH,)) + request)
    assert await reader.readexactly(2) == b"\x05\x00"
    return reader, writer, await reader.readexactly(4)


def test_curl_fetches_by_a_name_only_the_network_resolves() -> None:
    async def body() -> None:
        network = NamedNetwork()
        with FileServer().running() as files:
            async with serving(network) as (_, port):
                url = f"http://{MESH_NAME}:{files.port}/file"
                code, out, err = await curl("--socks5-hostname", f"127.0.0.1:{port}", url)
                assert code == 0, err
                assert sha256(out) == files.digest
        assert network.opened == [(MESH_NAME, files.port)]

    run(body)


def test_user_password_required_when_configured() -> None:
    async def body() -> None:
        with FileServer(4096).running() as files:
            async with serving(NamedNetwork(), credentials=("alice", "s3cret")) as (_, port):
                url = f"http://{MESH_NAME}:{files.port}/file"
                good = await curl("-x", f"socks5h://alice:s3cret@127.0.0.1:{port}", url)
                assert good[0] == 0 and sha256(good[1]) == files.digest, good[2]
                bad = await curl("-x", f"socks5h://alice:wrong@127.0.0.1:{port}", url)
                assert bad[0] != 0
                none = await curl("-x", f"socks5h://127.0.0.1:{port}", url)
                assert none[0] != 0
                # without credentials offered, the answer is "no acceptable method"
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(socks5.encode_greeting((socks5.NO_AUTH,)))
                assert await reader.read(10) == b"\x05\xff"
                writer.close()

    run(body)


@pytest.mark.parametrize(
    ("request_bytes", "reply"),
    [
        (socks5.encode_request(socks5.CONNECT, "no-such.mesh", 80), socks5.HOST_UNREACHABLE),
        (socks5.encode_request(socks5.BIND, "127.0.0.1", 80), socks5.COMMAND_NOT_SUPPORTED),
        (b"\x05\x01\x00\x09\x00\x00", socks5.ADDRESS_TYPE_NOT_SUPPORTED),
        (b"\x05\x01\x00\x03\x01\x00\x00\x50", socks5.HOST_UNREACHABLE),  # a NUL as the name
        (b"\x05\x09\x00\x01\x7f\x00\x00\x01\x00\x50", socks5.COMMAND_NOT_SUPPORTED),
    ],
    ids=["unknown-name", "bind", "address-type", "bad-name", "unknown-command"],
)
def test_refusals_get_their_reply_code(request_bytes: bytes, reply: int) -> None:
    async def body() -> None:
        async with serving(NamedNetwork()) as (_, port):
            _, writer, head = await negotiate(port, request_bytes)
            assert head[:2] == bytes([5, reply])
            writer.close()

    run(body)


def test_connection_refused_and_ipv6_destination() -> None:
    async def body() -> None:
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
        closed.close()
        server6 = await asyncio.start_server(lambda r, w: w.close(), "::1", 0)
        port6 = server6.sockets[0].getsockname()[1]
        async with serving(NamedNetwork()) as (_, port):
            request = socks5.encode_request(socks5.CONNECT, "127.0.0.1", dead_port)
            _, writer, head = await negotiate(port, request)
            assert head[1] == socks5.CONNECTION_REFUSED
            writer.close()
            request = socks5.encode_request(socks5.CONNECT, "::1", port6)
            reader, writer, head = await negotiate(port, request)
            assert head[1] == socks5.SUCCEEDED and head[3] == socks5.ATYP_IPV6
            await reader.readexactly(16 + 2)  # BND.ADDR, BND.PORT
            writer.close()
        server6.close()

    run(body)


async def recv(sock: socket.socket) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 2048), 2)


def test_udp_associate_relays_for_its_client_only() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        echo, echo_port = await udp_echo()
        network = NamedNetwork({"echo.mesh": "127.0.0.1"})
        async with serving(network) as (_, port):
            request = socks5.encode_request(socks5.UDP_ASSOCIATE, "0.0.0.0", 0)
            reader, writer, head = await negotiate(port, request)
            assert head[1] == socks5.SUCCEEDED and head[3] == socks5.ATYP_IPV4
            rest = await reader.readexactly(6)
            relay = (socket.inet_ntoa(rest[:4]), int.from_bytes(rest[4:], "big"))
            client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            client.bind(("127.0.0.1", 0))
            client.setblocking(False)
            stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            client.sendto(socks5.encode_udp_datagram("127.0.0.1", echo_port, b"one"), relay)
            got = socks5.parse_udp_datagram(await recv(client))
            assert (got.host, got.port, got.payload) == ("127.0.0.1", echo_port, b"echo:one")
            # by a name the network resolves; then a fragment, and a stranger: dropped
            client.sendto(socks5.encode_udp_datagram("echo.mesh", echo_port, b"two"), relay)
            got = socks5.parse_udp_datagram(await recv(client))
            assert got.payload == b"echo:two" and network.resolved == ["echo.mesh"]
            fragment = bytearray(socks5.encode_udp_datagram("127.0.0.1", echo_port, b"frag"))
            fragment[2] = 1
            client.sendto(bytes(fragment), relay)
            stranger.sendto(socks5.encode_udp_datagram("127.0.0.1", echo_port, b"x"), relay)
            client.sendto(b"\x00\x00\x00\x07garbage", relay)
            client.sendto(socks5.encode_udp_datagram("127.0.0.1", echo_port, b"three"), relay)
            got = socks5.parse_udp_datagram(await recv(client))
            assert got.payload == b"echo:three"  # neither the fragment nor the stranger's
            writer.close()  # the association ends with its control connection
            await asyncio.sleep(0.1)
            client.sendto(socks5.encode_udp_datagram("127.0.0.1", echo_port, b"late"), relay)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(loop.sock_recv(client, 2048), 0.3)
            client.close()
            stranger.close()
        echo.close()

    run(body)


def test_limits_garbage_and_silence_end_in_a_close() -> None:
    async def body() -> None:
        limits = Limits(max_connections=2, handshake_timeout=0.3)
        async with serving(NamedNetwork(), limits=limits) as (server, port):
            garbage = await asyncio.open_connection("127.0.0.1", port)
            garbage[1].write(b"GET / HTTP/1.1\r\n\r\n")
            assert await garbage[0].read(100) == b""  # not SOCKS5: closed, no reply
            silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            await asyncio.sleep(0.05)
            third = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(third[0].read(10), 1) == b""  # over the limit
            assert server.gate.refused >= 1
            for reader, _ in silent:  # the handshake timeout closes them
                assert await asyncio.wait_for(reader.read(10), 2) == b""
            request = socks5.encode_request(socks5.CONNECT, "no-such.mesh", 1)
            _, writer, head = await negotiate(port, request)  # and it still serves
            assert head[1] == socks5.HOST_UNREACHABLE
            writer.close()
            assert server.gate.active <= 1

    run(body)
