"""The coordinator's listening site: aiohttp's request handler behind a count of connections
per source address (`pywg.mesh.limits.SourceGuard`).

A connection over its source's limit is reset as it is accepted, before
aiohttp reads a byte of it; a TLS handshake must end within the idle
timeout (asyncio's ``ssl_handshake_timeout``). Only public aiohttp API: a
`web.BaseSite` whose server hands each connection to `_Counted` first.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aiohttp import web

from .limits import SourceGuard, source_key


class _Counted(asyncio.Protocol):
    """aiohttp's request handler behind a count of the connections of its source: a
    connection over the limit is reset before aiohttp sees it."""

    def __init__(self, inner: asyncio.Protocol, guard: SourceGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._source: bytes | None = None
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._source = source_key(peer[0] if isinstance(peer, tuple) else None)
        if not self._guard.connection_opened(self._source):
            transport.abort()  # type: ignore[attr-defined]
            return
        self._admitted = True
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted:
            self._admitted = False
            self._guard.connection_closed(self._source)
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._admitted:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._admitted else None

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()


class GuardedSite(web.BaseSite):
    """A listening site (host and port, or a bound socket) whose connections are counted
    per source by `guard`, with TLS handshakes bounded by its idle timeout."""

    def __init__(
        self,
        runner: web.BaseRunner,
        guard: SourceGuard,
        host: str | None = None,
        port: int = 0,
        *,
        sock: socket.socket | None = None,
        ssl_context: Any = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._guard = guard
        self._host = host
        self._port = port
        self._sock = sock

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host or '*'}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        guard = self._guard

        def protocol() -> asyncio.Protocol:
            return _Counted(server(), guard)

        loop = asyncio.get_running_loop()
        handshake = guard.limits.idle_timeout if self._ssl_context is not None else None
        if self._sock is not None:
            self._server = await loop.create_server(
                protocol, sock=self._sock, ssl=self._ssl_context, ssl_handshake_timeout=handshake
            )
        else:
            self._server = await loop.create_server(
                protocol,
                self._host,
                self._port,
                ssl=self._ssl_context,
                ssl_handshake_timeout=handshake,
                reuse_address=True,
            )
