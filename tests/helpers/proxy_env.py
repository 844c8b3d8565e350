"""What the proxy tests share: a file server, a network with its own names, curl, a UDP echo.

`NamedNetwork` is the kernel's network with a few names of its own (as a
mesh has): a proxy that resolves remotely must ask it, and it records what
it was asked to reach. `FileServer` serves random bytes over HTTP from a
thread, so that curl's copy can be compared by hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

from pywg.proxy import KernelNetwork

MESH_NAME = "files.mesh"  # resolvable by NamedNetwork only


class NamedNetwork(KernelNetwork):
    def __init__(self, names: dict[str, str] | None = None) -> None:
        super().__init__("127.0.0.1")
        self.names = names if names is not None else {MESH_NAME: "127.0.0.1"}
        self.opened: list[tuple[str, int]] = []
        self.resolved: list[str] = []

    async def open_connection(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.opened.append((host, port))
        (address, *_) = await self.resolve(host)
        return await super().open_connection(address, port)

    async def resolve(self, name: str) -> list[str]:
        self.resolved.append(name)
        if name in self.names:
            return [self.names[name]]
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in name else socket.AF_INET, name)
        except OSError:
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: unknown here") from None
        return [name]


class FileServer:
    """GET /file: `size` random bytes; port in `.port`, their SHA-256 in `.digest`."""

    def __init__(self, size: int = 1 << 20) -> None:
        self.body = os.urandom(size)
        self.digest = hashlib.sha256(self.body).hexdigest()
        body = self.body

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path != "/file":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Seen-Host", self.headers.get("Host", ""))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    @contextmanager
    def running(self) -> Iterator[FileServer]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


async def curl(*args: str, timeout: float = 10) -> tuple[int, bytes, str]:
    """Run curl quietly; (exit status, body, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", str(timeout), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out, err.decode(errors="replace")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class UdpEcho(asyncio.DatagramProtocol):
    """Sends every datagram back to where it came from, prefixed with b"echo:"."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"echo:" + data, addr)


async def udp_echo() -> tuple[asyncio.DatagramTransport, int]:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        UdpEcho, local_addr=("127.0.0.1", 0)
    )
    return transport, transport.get_extra_info("sockname")[1]
