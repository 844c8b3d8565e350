"""UDP endpoints of the stack as asyncio `DatagramTransport`s."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from typing import Any

from pywg.netstack.transport import socket_address

# (remote address packed, remote port, payload) -> None
Sender = Callable[[int, bytes, int, bytes], None]


class UdpTransport(asyncio.DatagramTransport):
    """One bound UDP port; `remote` set means a connected endpoint (as `connect(2)`)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        port: int,
        protocol: asyncio.DatagramProtocol,
        send: Sender,
        release: Callable[[int], None],
        remote: tuple[bytes, int] | None = None,
    ) -> None:
        super().__init__()
        self._loop = loop
        self.port = port
        self._protocol = protocol
        self._send = send
        self._release = release
        self.remote = remote
        self._closing = False

    def deliver(self, src: bytes, sport: int, data: bytes) -> None:
        """A datagram arrived for this port."""
        if self._closing or (self.remote is not None and self.remote != (src, sport)):
            return
        self._protocol.datagram_received(data, socket_address(src, sport))

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if self._closing:
            return
        if addr is None:
            if self.remote is None:
                raise ValueError("no destination: the endpoint is not connected")
            dst, dport = self.remote
        else:
            dst, dport = ipaddress.ip_address(addr[0]).packed, int(addr[1])
        self._send(self.port, dst, dport, bytes(data))

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._release(self.port)
        self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.DatagramProtocol)
        self._protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername" and self.remote is not None:
            return socket_address(*self.remote)
        if name == "sockname":
            return ("0.0.0.0", self.port)
        return default
