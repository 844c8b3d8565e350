"""The HTTP proxy (pywg.proxy) on the kernel's network: curl through CONNECT and plain requests.

curl -x fetches a file by a name only the network resolves, both as a plain
http:// request (forwarded in origin-form) and through a CONNECT tunnel
(-p), and the bytes match; credentials, oversized and malformed heads,
unreachable destinations and silence each get their status or a close.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from helpers.proxy_env import MESH_NAME, FileServer, NamedNetwork, curl, sha256
from pywg.proxy import HttpProxy, Limits

pytestmark = pytest.mark.time_limit(20)


@asynccontextmanager
async def serving(network: NamedNetwork, **kwargs: object) -> AsyncIterator[tuple[HttpProxy, int]]:
    proxy = HttpProxy(network, **kwargs)  # type: ignore[arg-type]
    listener = await proxy.start("127.0.0.1", 0)
    try:
        yield proxy, listener.sockets[0].getsockname()[1]
    finally:
        await proxy.close()


async def exchange(port: int, data: bytes) -> bytes:
    """Send `data` raw, return all the proxy answered before it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    answer = await asyncio.wait_for(reader.read(), 3)
    writer.close()
    return answer


@pytest.mark.parametrize("tunnel", [False, True], ids=["absolute-uri", "connect"])
def test_curl_fetches_through_the_proxy(tunnel: bool) -> None:
    async def body() -> None:
        network = NamedNetwork()
        with FileServer().running() as files:
            async with serving(network) as (_, port):
                url = f"http://{MESH_NAME}:{files.port}/file"
                args = ["-x", f"http://127.0.0.1:{port}", "-D", "-", url]
                code, out, err = await curl(*(["-p", *args] if tunnel else args))
        assert code == 0, err
        head, _, body = out.rpartition(b"\r\n\r\n")
        assert sha256(body) == files.digest
        assert f"X-Seen-Host: {MESH_NAME}:{files.port}".encode() in head
        assert network.opened == [(MESH_NAME, files.port)]

    asyncio.run(body())


def test_credentials_required_when_configured() -> None:
    async def body() -> None:
        with FileServer(1000).running() as files:
            async with serving(NamedNetwork(), credentials=("bob", "pw")) as (_, port):
                url = f"http://{MESH_NAME}:{files.port}/file"
                good = await curl("-x", f"http://bob:pw@127.0.0.1:{port}", url)
                assert good[0] == 0 and sha256(good[1]) == files.digest, good[2]
                answer = await exchange(port, f"GET {url} HTTP/1.1\r\n\r\n".encode())
                assert answer.startswith(b"HTTP/1.1 407 ")
                assert b'Proxy-Authenticate: Basic realm="pywg"' in answer
                wrong = "Proxy-Authorization: Basic Ym9iOm5vcGU=\r\n"  # bob:nope
                answer = await exchange(port, f"GET {url} HTTP/1.1\r\n{wrong}\r\n".encode())
                assert answer.startswith(b"HTTP/1.1 407 ")

    asyncio.run(body())


def test_bad_requests_get_their_status() -> None:
    async def body() -> None:
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]
        closed.close()
        limits = Limits(max_header_bytes=4096, handshake_timeout=0.3)
        async with serving(NamedNetwork(), limits=limits) as (proxy, port):
            cases = {
                b"GARBAGE\r\n\r\n": b"400",
                b"GET / HTTP/1.1\r\n\r\n": b"400",  # origin-form: not for a proxy
                b"CONNECT files.mesh HTTP/1.1\r\n\r\n": b"400",  # no port (RFC 9110 9.3.6)
                b"GET http://a/ HTTP/2.0\r\n\r\n": b"505",
                b"GET http://a/ HTTP/1.1\r\nX : y\r\n\r\n": b"400",
                b"GET http://a/ HTTP/1.1\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n": b"431",
                f"CONNECT 127.0.0.1:{dead} HTTP/1.1\r\n\r\n".encode(): b"502",
                b"CONNECT no-such.mesh:80 HTTP/1.1\r\n\r\n": b"502",
                b"GET http://a/ HTTP/1.1\r\n": b"408",  # never finished
            }
            for request, status in cases.items():
                answer = await exchange(port, request)
                assert answer.startswith(b"HTTP/1.1 " + status + b" "), (request[:40], answer)
            assert proxy.gate.active == 0

    asyncio.run(body())
