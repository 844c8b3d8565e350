"""A tiny HTTP CONNECT proxy (RFC 9110 §9.3.6) for the relay client's tests.

`start_proxy(host, port, status)` serves on `host`:`port` (0: the kernel
picks): with status 200 it opens the target of each CONNECT and copies bytes
both ways; with any other status it answers that and closes. Run as a
program (``python -m helpers.connect_proxy HOST PORT STATUS``) it prints
``ready PORT`` and serves until killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

REASONS = {200: "Connection Established", 403: "Forbidden", 407: "Proxy Authentication Required"}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def _client(status: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
    if method != "CONNECT" or status != 200:
        extra = 'Proxy-Authenticate: Basic realm="test"\r\n' if status == 407 else ""
        writer.write(
            f"HTTP/1.1 {status} {REASONS[status]}\r\n{extra}Content-Length: 0\r\n\r\n".encode()
        )
        writer.close()
        return
    host, _, port = target.rpartition(":")
    up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
    writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def start_proxy(host: str, port: int, status: int) -> asyncio.Server:
    return await asyncio.start_server(lambda r, w: _client(status, r, w), host, port)


async def _main(host: str, port: int, status: int) -> None:
    server = await start_proxy(host, port, status)
    print("ready", server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
