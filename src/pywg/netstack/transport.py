"""An asyncio `Transport` over a netstack TCP connection.

With it, `asyncio.StreamReader`/`StreamWriter` (and any `asyncio.Protocol`) run on the
stack unchanged: the connection calls the transport as its `TcpUser`, and the transport
calls its protocol as asyncio's own socket transports do (`connection_lost` from the
loop, never from inside a call of the protocol's).
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from pywg.netstack.tcp import TcpConnection


def socket_address(addr: bytes, port: int) -> tuple[Any, ...]:
    """A socket-style address: (host, port), or (host, port, 0, 0) for IPv6."""
    if len(addr) == 4:
        return str(ipaddress.IPv4Address(addr)), port
    return str(ipaddress.IPv6Address(addr)), port, 0, 0


class TcpTransport(asyncio.Transport):
    """The transport of one connection; also the connection's `TcpUser`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        conn: TcpConnection,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future[None] | None = None,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._conn = conn
        self._protocol = protocol
        self._waiter = waiter
        self._closing = False
        self._lost = False
        self._write_paused = False
        self._eof_written = False
        self._high = conn.config.snd_buffer
        self._low = self._high // 4
        conn.user = self

    # -- the connection's events ---------------------------------------------------------

    def established(self) -> None:
        self._protocol.connection_made(self)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def received(self, data: bytes) -> None:
        if not self._closing:
            self._protocol.data_received(data)  # type: ignore[attr-defined]

    def eof(self) -> None:
        if not self._closing and not self._protocol.eof_received():  # type: ignore[attr-defined]
            self.close()

    def closed(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc or ConnectionAbortedError("connection closed"))
            return
        if not self._lost:
            self._lost = True
            self._closing = True
            self._loop.call_soon(self._protocol.connection_lost, exc)

    def writable(self) -> None:
        if self._write_paused and self.get_write_buffer_size() <= self._low:
            self._write_paused = False
            self._protocol.resume_writing()

    # -- asyncio.Transport -----------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._closing or not data:
            return
        self._conn.send(bytes(data))
        if not self._write_paused and self.get_write_buffer_size() > self._high:
            self._write_paused = True
            self._protocol.pause_writing()

    def write_eof(self) -> None:
        if self._eof_written or self._closing:
            return
        self._eof_written = True
        self._conn.shutdown()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._conn.close(self._loop.time())

    def abort(self) -> None:
        self._closing = True
        self._conn.abort()

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return self._conn.reading and not self._closing

    def pause_reading(self) -> None:
        self._conn.set_reading(False)

    def resume_reading(self) -> None:
        self._conn.set_reading(True)

    def get_write_buffer_size(self) -> int:
        return len(self._conn.sndbuf)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = self._conn.config.snd_buffer if high is None else high
        self._low = self._high // 4 if low is None else low

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        conn = self._conn
        if name == "peername":
            return socket_address(conn.remote_addr, conn.remote_port)
        if name == "sockname":
            return socket_address(conn.local_addr, conn.local_port)
        return default
